"""The hull start on every family part (and the shared ABC-NEF part), with no training and no CLIP: the visual hull
carved as training carves it (its alpha silhouettes, 128 voxels, images at most 448 pixels), its surface scored on
the training views' edges, strokes traced along the ridges (32, seed 42), and NEF's F-scores of those strokes.

``--edges`` compares the edges the hull's surface is scored on: ``thin`` (Canny's one-pixel edges,
:func:`nerfstudio_clipsketch.edge_maps.thin_edges`, the default since this session's commit) and ``soft`` (the
structure term's gradient map thresholded at 0.3, :func:`nerfstudio_clipsketch.edge_maps.edge_map`, before). A few
seconds per part; this is the ``F@0.02 step 0`` column of :mod:`benchmarks.bench_family` for every part at once.

Usage::

    python -m benchmarks.bench_starts --edges soft thin --output /tmp/starts.md
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.bench_sketch import DATA, SEED
from benchmarks.family import PARTS, default_output, ensure_family

MAX_SIZE = 448
"""As the datamanager's ``max_image_size``."""


def start_scores(folder: Path, edges: str, curves: int = 32) -> dict:
    """NEF's metrics of the hull start of the ABC-NEF-layout scene in ``folder``, with the hull scored on ``edges``."""
    from nerfstudio_clipsketch import curves as bezier
    from nerfstudio_clipsketch.cameras import camera_axes_centre, to_dataset_coordinates
    from nerfstudio_clipsketch.dataparsers.auto import ClipSketchDataParserConfig
    from nerfstudio_clipsketch.edge_maps import edge_map, thin_edges
    from nerfstudio_clipsketch.evaluation.metrics import nef_metrics
    from nerfstudio_clipsketch.evaluation.references import abcnef_ground_truth
    from nerfstudio_clipsketch.hull import carve_hull
    from nerfstudio_clipsketch.initialisation import hull_init

    outputs = ClipSketchDataParserConfig(data=folder).setup().get_dataparser_outputs("train")
    images = []
    for name in outputs.image_filenames:
        with Image.open(name) as image:
            image = image.convert("RGBA")
            scale = min(1.0, MAX_SIZE / max(image.size))
            if scale < 1.0:
                image = image.resize((int(image.size[0] * scale), int(image.size[1] * scale)), Image.BILINEAR)
            images.append(torch.from_numpy(np.asarray(image)).float() / 255.0)
    cameras = outputs.cameras.reshape(-1)
    cameras.rescale_output_resolution(images[0].shape[0] / float(cameras.height[0]))
    rgb = [image[..., :3] * image[..., 3:] + (1 - image[..., 3:]) for image in images]
    masks = [image[..., 3] > 0.5 for image in images]
    detector = thin_edges if edges == "thin" else edge_map
    hull, why = carve_hull(cameras, rgb, torch.ones(3), 128, masks=masks, edges=detector)
    if hull is None:
        raise RuntimeError(f"{folder}: no hull ({why})")
    c2w = cameras.camera_to_worlds.float()
    distance = float((c2w[:, :3, 3] - camera_axes_centre(c2w)).norm(dim=-1).median())
    control = hull_init(hull, curves, 3, 0.1 * distance, torch.Generator().manual_seed(SEED))
    world = to_dataset_coordinates(control, outputs.dataparser_transform, outputs.dataparser_scale)
    metrics = nef_metrics(bezier.sample_curves(world, 100).reshape(-1, 3), abcnef_ground_truth(folder / "gt"))
    return {"f@0.02": metrics["f@0.02"], "f@0.01": metrics["f@0.01"], "ridge_points": len(hull.points)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edges", nargs="+", default=["soft", "thin"], choices=["soft", "thin"])
    parser.add_argument("--parts", nargs="+", default=list(PARTS))
    parser.add_argument("--output", type=Path, default=Path("/tmp/starts.md"))
    args = parser.parse_args(argv)
    family = ensure_family(default_output(), args.parts)
    folders = {"abcnef 00000952": DATA / "abcnef" / "00000952", **dict(zip(args.parts, family))}
    table = {name: {edges: start_scores(folder, edges) for edges in args.edges} for name, folder in folders.items()}
    header = " | ".join(f"F@0.02 {e} | F@0.01 {e} | ridge points {e}" for e in args.edges)
    lines = [f"| part | {header} |", "|---|" + "---|" * 3 * len(args.edges)]
    for name, row in table.items():
        cells = " | ".join(
            f"{row[e]['f@0.02']:.3f} | {row[e]['f@0.01']:.3f} | {row[e]['ridge_points']}" for e in args.edges
        )
        lines.append(f"| {name} | {cells} |")
    parts = [name for name in table if not name.startswith("abcnef")]
    for label, reduce in (("mean", statistics.mean), ("median", statistics.median), ("worst", min)):
        cells = []
        for e in args.edges:
            f2, f1 = (reduce([table[p][e][key] for p in parts]) for key in ("f@0.02", "f@0.01"))
            cells += [f"{f2:.3f}", f"{f1:.3f}", ""]
        lines.append(f"| **{label}** ({len(parts)} family parts) | {' | '.join(cells)} |")
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
