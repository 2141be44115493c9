"""A trained run on a real photo capture with no masks (issue 27, item 2): the sketch drawn over three of its photos,
and the share of its strokes that lies inside the object found in them.

The object is found again as training found it (the pipeline's ``find_object``: the same cached training photos,
cameras and sparse points). Per training view, the share of
stroke length inside the found region (the strokes' centrelines, sampled evenly in arc length and projected: the
issue's measure) and the share of ink inside it (``sum(alpha * mask) / sum(alpha)`` of the render, so a stroke along
the outline counts half outside); the report gives their mean and worst view. Nothing here knows the object's true
shape: the found region is what the issue's target is stated on, and the pictures are where a reader checks that it
is the object.

``<output>/capture.md`` holds the figures, ``<output>/sketch.png`` a row per view for three views spread over the
capture: the photo, the found region (the photo dimmed off it) and the sketch in red over the photo.

Usage::

    ns-process-data images --data photos/ --output-dir capture/ --matching-method exhaustive --no-gpu
    ns-train clipsketch --data capture/ ...        # any run
    python -m benchmarks.bench_capture --run outputs/capture/clipsketch/<timestamp> --output /tmp/bench_capture
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.bench_sketch import overlay
from nerfstudio_clipsketch.cameras import get_viewmats, project_points
from nerfstudio_clipsketch.scripts.common import load_run
from nerfstudio_clipsketch.segmentation import describe

SAMPLES = 200
"""Samples per stroke, even in arc length, for the share of stroke length in the found region."""
WIDTH = 720
"""Width of ``sketch.png``."""


@torch.no_grad()
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="the run's folder (with config.yml)")
    parser.add_argument("--output", type=Path, default=Path("/tmp/bench_capture"))
    parser.add_argument("--views", type=int, default=3, help="pictures to draw, spread over the training views")
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)

    pipeline = load_run(args.run / "config.yml").pipeline
    cameras = pipeline.datamanager.train_dataset.cameras
    seed_points = pipeline.model.kwargs.get("seed_points")
    if not pipeline.find_object(None, seed_points[0] if seed_points is not None else None):
        raise SystemExit("no object was looked for or found in the photos (the log above says why)")
    found = pipeline.found_object
    assert found is not None

    samples = pipeline.sketch().polylines(SAMPLES, frame="normalised").reshape(-1, 3).float()
    uv, depth = project_points(
        samples, get_viewmats(cameras.camera_to_worlds.float()), cameras.get_intrinsics_matrices().float()
    )
    lengths, shares, lines, rows = [], [], [], []
    drawn = set(np.linspace(0, len(found.masks) - 1, args.views).round().astype(int).tolist())
    for i, mask in enumerate(found.masks):  # the masks are at the cached photos' size, that of the cameras
        alpha = pipeline.model.get_outputs_for_camera(cameras[i : i + 1])["accumulation"].cpu()
        lengths.append(length_inside(uv[i], depth[i], mask))
        ink = float(alpha.sum())
        shares.append(float((alpha[..., 0] * mask).sum()) / ink if ink > 0 else float("nan"))
        if i in drawn:
            image = pipeline.datamanager.cached_train[i]["image"][..., :3]
            photo = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
            region = photo * (0.35 + 0.65 * mask.float()[..., None])
            tiles = torch.cat([photo, region, overlay(photo, alpha)], dim=1).clamp(0, 1)
            rows.append(Image.fromarray((tiles.numpy() * 255).round().astype(np.uint8)))
            lines.append(f"- view {i}: stroke length in the found region {lengths[-1]:.3f}, ink {shares[-1]:.3f}")
    values, length = np.array(shares, dtype=float), np.array(lengths, dtype=float)
    worst, worst_length = int(np.nanargmin(values)), int(np.argmin(length))
    report = [
        f"# {args.run}",
        "",
        f"- {describe(found)}",
        f"- share of stroke length in the found region: mean **{length.mean():.3f}**, median {np.median(length):.3f}, "
        f"worst {length[worst_length]:.3f} (view {worst_length})",
        f"- share of ink in the found region: mean **{np.nanmean(values):.3f}**, median {np.nanmedian(values):.3f}, "
        f"worst {values[worst]:.3f} (view {worst})",
        *lines,
    ]
    sheet = Image.new("RGB", (rows[0].width, sum(r.height for r in rows)))
    for k, picture in enumerate(rows):
        sheet.paste(picture, (0, sum(r.height for r in rows[:k])))
    sheet.thumbnail((WIDTH, WIDTH * 4))
    sheet.save(args.output / "sketch.png")
    (args.output / "capture.md").write_text("\n".join(report) + "\n")
    print("\n".join(report))


def length_inside(uv: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor) -> float:
    """The share of the sketch's length (samples even in arc length) in front of the camera whose centreline projects
    inside ``mask`` (the camera's size); samples off the image count as outside."""
    pixels = uv.floor().long()
    front = depth > 0
    on_image = front & (pixels[:, 0] >= 0) & (pixels[:, 0] < mask.shape[1]) & (pixels[:, 1] >= 0)
    on_image &= pixels[:, 1] < mask.shape[0]
    inside = torch.zeros_like(front)
    inside[on_image] = mask[pixels[on_image, 1], pixels[on_image, 0]].bool()
    return float(inside.sum()) / max(int(front.sum()), 1)


if __name__ == "__main__":
    main()
