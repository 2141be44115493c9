"""Object masks and the object found on a cluttered capture (issue 27, items 1 and 2): the shared rose pasted onto
real photographs, beside the rose on its own black backdrop.

Runs (:data:`VARIANTS`): the rose itself; the clutter without masks, with the object search off (as before issue
27) and on (the default); the clutter with its masks (nerfstudio's per-frame ``mask_path``). The clutter is
scikit-image's bundled photographs (astronaut, coffee, cat, rocket, motorcycle: no download), one random crop per
view, so no background colour separates the rose in any view. Its masks are the pixels whose ``world_pos`` is
non-zero, exact. The clutter scene keeps the rose's ``world_pos``, so ``clipsketch-eval`` scores it against the same
surface (precision@1 %, coverage@2 %, foreground touch: the share of ink on the object) as the rose itself.

Each run is :mod:`benchmarks.bench_sketch`'s default (seed 42, random RN101, CPU, 16 strokes, stopped once settled,
``--steps`` the cap), one after the other. ``<output>/masks.md`` holds the table and what each run's log said about
the object and its hull, ``<output>/<variant>.png`` the target, the sketch, and the sketch over training view 0 as
the camera saw it (clutter included).

Usage::

    python -m benchmarks.bench_masks --output /tmp/bench_masks
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks import bench_sketch
from nerfstudio_clipsketch.evaluation.references import read_exr

ROSE = bench_sketch.DATA / "clipasso3d" / "rose"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "stereo_motorcycle")
VARIANTS = {
    "rose": [],  # the shared scene on its black backdrop
    "clutter-off": ["--pipeline.model.object-region", "off"],  # before issue 27: no masks, nothing found
    "clutter": [],  # no masks: the object found (segmentation.py)
    "clutter-masks": [],  # the exact masks as mask_path
}
"""The runs: the scene each is trained on is the part of its name before any ``-off``, and its extra flags."""


def photographs() -> list:
    """scikit-image's bundled colour photographs ``[H, W, 3]`` uint8 (the motorcycle is a stereo pair's left)."""
    import skimage.data

    images = []
    for name in PHOTOS:
        image = getattr(skimage.data, name)()
        images.append(np.asarray(image[0] if isinstance(image, tuple) else image)[..., :3])
    return images


def cluttered_rose(out: Path, masks: bool, seed: int = 0) -> Path:
    """The rose scene with every image pasted onto a random crop of a photograph (RGB, opaque); ``world_pos`` linked;
    with ``masks``, each frame's ``mask_path`` is its exact object mask."""
    if (out / "transforms_train.json").is_file():
        return out
    rng, photos = np.random.default_rng(seed), photographs()
    out.mkdir(parents=True)
    (out / "world_pos").symlink_to(ROSE / "world_pos")
    for split in ("train", "val", "test"):
        meta = json.loads((ROSE / f"transforms_{split}.json").read_text())
        (out / "rgb" / split).mkdir(parents=True)
        (out / "masks" / split).mkdir(parents=True)
        for frame in meta["frames"]:
            name = Path(str(frame["file_path"])).name
            rgba = np.asarray(Image.open(ROSE / "rgb" / split / f"{name}.png").convert("RGBA"))
            on_object = np.any(read_exr(ROSE / "world_pos" / split / f"{name}.exr")[..., :3] != 0, axis=-1)
            photo = photos[rng.integers(len(photos))]
            size = int(rng.integers(min(photo.shape[:2]) // 3, min(photo.shape[:2])))
            top, left = rng.integers(photo.shape[0] - size + 1), rng.integers(photo.shape[1] - size + 1)
            crop = Image.fromarray(photo[top : top + size, left : left + size]).resize(rgba.shape[1::-1])
            pasted = np.where(on_object[..., None], rgba[..., :3], np.asarray(crop))
            Image.fromarray(pasted).save(out / "rgb" / split / f"{name}.png")
            if masks:
                frame["mask_path"] = f"masks/{split}/{name}.png"
                Image.fromarray(on_object.astype(np.uint8) * 255).save(out / frame["mask_path"])
        (out / f"transforms_{split}.json").write_text(json.dumps(meta))
    return out


def hull_line(log: Path) -> str:
    """What the run's log said about the object and the visual hull (found, carved, or why not)."""
    text = re.sub(r"\s+", " ", log.read_text(errors="replace"))
    said = re.findall(r"clipsketch: (object found \(.*?on average|no object found[^.]*|visual hull carved.*?"
                      r"silhouettes\)|no visual hull: [^.]*)", text)  # fmt: skip
    return "; ".join(said) if said else "(no hull line)"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--output", type=Path, default=Path("/tmp/bench_masks"))
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more ns-train flags for every run")
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    scenes = {
        "rose": ROSE,
        "clutter": cluttered_rose(args.output / "scenes" / "clutter", masks=False),
        "clutter-masks": cluttered_rose(args.output / "scenes" / "clutter-masks", masks=True),
    }
    lines, hulls = [bench_sketch.HEADER], []
    for variant in args.variants:
        scene = scenes[variant.removesuffix("-off")]
        bench_sketch.SCENES[variant] = {"data": scene, "curves": bench_sketch.SCENES["rose"]["curves"]}
        start = time.perf_counter()
        run_dir = bench_sketch.train(variant, "default", args.steps, args.output, VARIANTS[variant] + args.extra)
        seconds = time.perf_counter() - start
        report = bench_sketch.evaluate(run_dir)
        bench_sketch.picture(run_dir)
        shutil.copy(run_dir / "sketch.png", args.output / f"{variant}.png")
        lines.append(bench_sketch.row(variant, "default", report, seconds))
        hulls.append(f"- {variant}: {hull_line(args.output / f'{variant}-default.log')}")
        print(lines[-1], flush=True)
        (args.output / "masks.md").write_text("\n".join(lines + [""] + hulls) + "\n")
    print("\n".join(lines + [""] + hulls))


if __name__ == "__main__":
    main()
