"""Hidden lines in the SVG drawings (issue 25, item 2), on a trained run: which stroke samples ``clipsketch-export svg
--hidden drop`` leaves out from one camera, split by depth (the object's near and far thirds along the camera's
axis), and a picture of the three modes side by side.

The SVGs are those the exporter writes (:func:`nerfstudio_clipsketch.exporters.svg.write_sketch_svg` with the hull
carved as ``clipsketch-export`` carves it); the picture draws their paths with PIL (dashes as drawn segments), since no
SVG renderer is installed here.

``--by-strokes`` measures the drawing a capture without a hull gets instead (the strokes as tubes hide each other,
:func:`~nerfstudio_clipsketch.exporters.svg.hidden_by_strokes`), and how it agrees with the hull's.

Usage::

    python -m benchmarks.bench_hidden --load-config outputs/.../config.yml --view 0 --output /tmp/hidden
    python -m benchmarks.bench_hidden --load-config outputs/.../config.yml --view 0 --by-strokes
"""

from __future__ import annotations

import argparse
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

SAMPLES = 100
SVG_NS = "{http://www.w3.org/2000/svg}"


def draw_svg(path: Path, scale: int = 2) -> Image.Image:
    """A raster of an SVG written by the exporter (paths of M/L polylines, widths, dashes)."""
    root = ET.parse(path).getroot()
    width, height = int(float(root.get("width"))), int(float(root.get("height")))
    image = Image.new("RGB", (width * scale, height * scale), "white")
    pen = ImageDraw.Draw(image)
    for element in root.iter(f"{SVG_NS}path"):
        stroke = float(element.get("stroke-width")) * scale
        dash = element.get("stroke-dasharray")
        colour = (150, 150, 150) if dash else (0, 0, 0)
        for run in re.split(r"M ", element.get("d"))[1:]:
            points = [tuple(float(v) * scale for v in pair.split()) for pair in run.strip().split(" L ")]
            segments = zip(points[:-1], points[1:])
            for k, (a, b) in enumerate(segments):
                if dash is None or k % 2 == 0:
                    pen.line([a, b], fill=colour, width=max(1, round(stroke)))
    return image


def main(argv=None) -> None:
    from nerfstudio_clipsketch.cameras import get_viewmats
    from nerfstudio_clipsketch.exporters.svg import hidden_by_strokes, hidden_samples, write_sketch_svg
    from nerfstudio_clipsketch.scripts.common import load_run

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load-config", type=Path, required=True)
    parser.add_argument("--view", type=int, default=0, help="test camera")
    parser.add_argument("--output", type=Path, default=Path("/tmp/bench_hidden"))
    parser.add_argument("--by-strokes", action="store_true", help="what the strokes hide, as without a hull")
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    pipeline = load_run(args.load_config).pipeline
    sketch, (hull, why) = pipeline.sketch(), pipeline.visual_hull()
    if hull is None:
        raise SystemExit(f"no visual hull: {why}")
    cameras = pipeline.datamanager.eval_dataset.cameras.reshape(-1)[args.view : args.view + 1]
    c2w = cameras.camera_to_worlds[0]
    hidden = hidden_samples(sketch, hull, c2w, SAMPLES)
    viewmat, K = get_viewmats(cameras.camera_to_worlds)[0], cameras.get_intrinsics_matrices()[0]
    extra = []
    if args.by_strokes:
        start = time.perf_counter()
        by_hull, hidden = hidden, hidden_by_strokes(sketch, viewmat, K, SAMPLES)
        seconds = time.perf_counter() - start
        both = int((hidden & by_hull).sum())
        extra = [
            f"- by the strokes (no hull), in {seconds:.2f} s: {int(hidden.sum())} hidden, {both} of them also behind "
            f"the hull; they are {both / max(int(by_hull.sum()), 1):.0%} of the {int(by_hull.sum())} the hull hides"
        ]
    points = sketch.polylines(SAMPLES, frame="normalised").reshape(-1, 3)
    depth = ((points - c2w[:3, 3]) @ -c2w[:3, 2]).reshape(sketch.num_curves, SAMPLES)
    centres = hull.occupancy.nonzero().float() * hull.voxel_size + hull.origin
    along = (centres - c2w[:3, 3]) @ -c2w[:3, 2]
    near, far = torch.quantile(along, 1 / 3), torch.quantile(along, 2 / 3)
    lines = [f"view {args.view}: {int(hidden.sum())} of {hidden.numel()} samples hidden"]
    for name, part in (
        ("near third", depth < near),
        ("middle", (depth >= near) & (depth <= far)),
        ("far third", depth > far),
    ):
        share = float(hidden[part].float().mean()) if bool(part.any()) else float("nan")
        lines.append(f"- {name} of the object: {int(part.sum())} samples, {share:.0%} dropped")
    lines += extra
    tiles = []
    for mode in ("show", "dashed", "drop"):
        path = args.output / f"view_{args.view:04d}_{mode}.svg"
        w, h = int(cameras.width[0]), int(cameras.height[0])
        write_sketch_svg(path, sketch, viewmat, K, w, h, SAMPLES, hidden=hidden, hidden_lines=mode)
        tiles.append(draw_svg(path))
    sheet = Image.new("RGB", (sum(t.width for t in tiles), tiles[0].height), "white")
    for k, tile in enumerate(tiles):
        sheet.paste(tile, (k * tiles[0].width, 0))
    sheet.save(args.output / "hidden.png")
    (args.output / "hidden.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(np.round(float(hidden.float().mean()), 3))


if __name__ == "__main__":
    main()
