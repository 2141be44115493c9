"""How good the sketch is before any training step: the initial strokes of each start (``hull`` traced along the
visual hull's rims and creases, ``sphere`` the ancestor's ball), measured by ``clipsketch-eval``'s report on the
freshly set-up pipeline, in the table of :mod:`benchmarks.bench_sketch`.

Comparing these rows with the trained ones of ``bench_sketch`` (same scenes, stroke counts and seed) separates what
the start gives from what the steps change. Seconds here: the pipeline's set-up (reading the images, carving the
hull, tracing), no training. The start's picture: ``<output>/<scene>-<init>-start.png``.

Usage::

    python -m benchmarks.bench_start --scenes builtin abcnef rose duck --inits hull sphere
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.bench_sketch import HEADER, SCENES, SEED, draw, nef_row, row


def start_report(scene: str, init: str, hull_resolution: int, output: Path) -> tuple[dict, float]:
    """``clipsketch-eval``'s report on the pipeline of ``scene`` set up with ``init``, and the set-up's seconds; the
    sketch over training view 0 in ``<output>/<scene>-<init>-start.png``."""
    from nerfstudio_clipsketch.evaluation.report import evaluate_sketch
    from nerfstudio_clipsketch.method_config import clipsketch_method

    config = clipsketch_method.config
    spec = SCENES[scene]
    config.pipeline.datamanager.data = spec["data"]  # None: the built-in scene, as ns-train without --data
    model = config.pipeline.model
    model.num_curves, model.seed, model.init, model.hull_resolution = spec["curves"], SEED, init, hull_resolution
    model.clip.pretrained = "none"
    start = time.perf_counter()
    pipeline = config.pipeline.setup(device="cpu", test_mode="val")
    seconds = time.perf_counter() - start
    draw(pipeline, output / f"{scene}-{init}-start.png")
    return evaluate_sketch(pipeline), seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", nargs="+", default=list(SCENES), choices=list(SCENES))
    parser.add_argument("--inits", nargs="+", default=["hull", "sphere"], choices=["hull", "sphere"])
    parser.add_argument("--hull-resolution", type=int, default=128)
    parser.add_argument("--output", type=Path, default=Path("/tmp/bench_start"))
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    lines = [HEADER]
    if "abcnef" in args.scenes:
        lines.append(nef_row())
    for scene in args.scenes:
        for init in args.inits:
            report, seconds = start_report(scene, init, args.hull_resolution, args.output)
            lines.append(row(scene, f"{init} start (step 0)", report, seconds))
            print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
