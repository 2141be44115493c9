"""Sketch quality of recipes side by side: ``ns-train clipsketch`` then ``clipsketch-eval`` per (scene, recipe), and a
picture of each final sketch over a training view.

Recipes are sets of ``ns-train`` flags (:data:`RECIPES`): the ancestor's (sphere start, no lifecycle, no structure
terms, no occlusion, no symmetry, the ancestor's learning rate), the default, the default with one mechanism off at a time, and
the default at the learning rate before 2026-12-04 (``lr-2e-3``). Each run is its own process, one
after the other (never two trainings at once: two cores). For every run, ``<output>/<scene>-<recipe>/`` holds the
nerfstudio run, ``eval.json`` and ``sketch.png`` (the training view, the sketch alone, and the sketch in red over the
view), and ``timelapse.gif``; ``<output>/table.md`` the main numbers.

The CLIP model is RN101 with random weights (``pretrained none``): nothing else can be had here. Geometry is
measurable with it, semantics are not.

Usage::

    python -m benchmarks.bench_sketch --scenes builtin abcnef rose duck --recipes ancestor default --steps 300
    python -m benchmarks.bench_sketch --scenes builtin --recipes default --steps 100 --output /tmp/quick
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from PIL import Image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SCENES: Dict[str, Dict] = {
    "builtin": {"data": None, "curves": 24},
    "abcnef": {"data": DATA / "abcnef" / "00000952", "curves": 32},
    "rose": {"data": DATA / "clipasso3d" / "rose", "curves": 16},
    "duck": {"data": DATA / "clipasso3d" / "duck", "curves": 16},
}
RECIPES: Dict[str, List[str]] = {
    "ancestor": [
        "--pipeline.model.init", "sphere", "--pipeline.model.edges.weight", "0",
        "--pipeline.model.lifecycle.every", "0", "--pipeline.datamanager.views-per-step", "1",
        "--pipeline.model.occlusion.density", "0", "--pipeline.model.ridges.weight", "0",
        "--pipeline.model.symmetry", "off",
        "--optimizers.control-points.optimizer.lr", "2e-3", "--optimizers.control-points.scheduler.lr-final", "2e-4",
    ],
    "default": [],
    "no-hull-start": ["--pipeline.model.init", "sphere"],
    "no-lifecycle": ["--pipeline.model.lifecycle.every", "0"],
    "no-edges": ["--pipeline.model.edges.weight", "0"],
    "no-occlusion": ["--pipeline.model.occlusion.density", "0"],
    "no-ridges": ["--pipeline.model.ridges.weight", "0"],
    "no-symmetry": ["--pipeline.model.symmetry", "off"],
    "lr-2e-3": [
        "--optimizers.control-points.optimizer.lr", "2e-3", "--optimizers.control-points.scheduler.lr-final", "2e-4",
    ],
}  # fmt: skip
SEED = 42


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def train(scene: str, recipe: str, steps: int, output: Path, extra: List[str]) -> Path:
    spec = SCENES[scene]
    data = [] if spec["data"] is None else ["--data", str(spec["data"])]
    command = [
        _tool("ns-train"), "clipsketch", *data,
        "--pipeline.model.clip.pretrained", "none",
        "--machine.device-type", "cpu", "--vis", "tensorboard",
        "--max-num-iterations", str(steps),
        "--pipeline.model.num-curves", str(spec["curves"]),
        "--pipeline.model.seed", str(SEED), "--machine.seed", str(SEED),
        "--pipeline.model.timelapse-every", str(max(1, steps // 20)),
        "--output-dir", str(output), "--experiment-name", f"{scene}-{recipe}", "--timestamp", "run",
        *RECIPES[recipe], *extra,
    ]  # fmt: skip
    run_dir = output / f"{scene}-{recipe}" / "clipsketch" / "run"
    with open(output / f"{scene}-{recipe}.log", "w") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)
    return run_dir


def evaluate(run_dir: Path) -> dict:
    path = run_dir / "eval.json"
    subprocess.run(
        [_tool("clipsketch-eval"), "--load-config", str(run_dir / "config.yml"), "--output-path", str(path)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return json.loads(path.read_text())


def picture(run_dir: Path, view: int = 0) -> None:
    """The training view, the sketch alone, and the sketch in red over the view, side by side (``sketch.png``)."""
    from nerfstudio_clipsketch.scripts.common import load_run

    draw(load_run(run_dir / "config.yml").pipeline, run_dir / "sketch.png", view)


@torch.no_grad()
def draw(pipeline, path: Path, view: int = 0) -> None:
    """:func:`picture` of a pipeline's sketch, to ``path``: the target (off the object mask painted as paper, where the
    capture has masks), the sketch, and the sketch over the photo as the camera saw it."""
    dataset = pipeline.datamanager.train_dataset
    model = pipeline.model
    data = dataset[view]
    target, photo = model.style.composite(data["image"], data.get("mask")).cpu(), model.style.composite(data["image"])
    outputs = model.get_outputs_for_camera(dataset.cameras[view : view + 1])
    sketch, alpha = outputs["rgb"].cpu(), outputs["accumulation"].cpu()
    tiles = torch.cat([target, sketch, overlay(photo.cpu(), alpha)], dim=1).clamp(0, 1)
    Image.fromarray((tiles.numpy() * 255).round().astype(np.uint8)).save(path)


def overlay(photo: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The sketch's ink (``alpha`` [H, W, 1]) in red over the photo ([H, W, 3] in [0, 1]), faded toward grey."""
    faded = photo * 0.6 + 0.4 * photo.mean(-1, keepdim=True)
    return faded * (1 - alpha) + torch.tensor([1.0, 0.0, 0.0]) * alpha


def row(scene: str, recipe: str, report: dict, seconds: float) -> str:
    def fmt(value, digits=3):
        return "–" if value is None else f"{value:.{digits}g}"

    curves, abc, surface = report.get("curves") or {}, report.get("abcnef") or {}, report.get("surface") or {}
    alive = report.get("strokes_alive")
    touch = (report.get("foreground_touch") or {}).get("mean")
    cells = [
        scene,
        recipe,
        f"{alive['count']}/{alive['of']}" if alive else f"–/{report['num_curves']}",
        fmt(curves.get("f1@1%")),
        fmt(curves.get("chamfer/diag")),
        fmt(abc.get("f@0.02")),
        fmt(abc.get("f@0.01")),
        fmt(abc.get("chamfer")),
        fmt(surface.get("precision@1%")),
        fmt(surface.get("coverage@2%")),
        fmt(touch),
        f"{seconds:.0f}",
    ]
    return "| " + " | ".join(cells) + " |"


def nef_row() -> str:
    """NEF's own curves (``gt/nef_result_cubic.json``) under the same protocol: the edge method's reference row."""
    from nerfstudio_clipsketch.curves import sample_curves
    from nerfstudio_clipsketch.evaluation.metrics import nef_metrics
    from nerfstudio_clipsketch.evaluation.references import abcnef_ground_truth, nef_curves
    from nerfstudio_clipsketch.evaluation.report import NEF_SAMPLES

    gt_dir = SCENES["abcnef"]["data"] / "gt"
    control = nef_curves(gt_dir / "nef_result_cubic.json")
    metrics = nef_metrics(sample_curves(control, NEF_SAMPLES), abcnef_ground_truth(gt_dir))
    report = {"num_curves": len(control), "abcnef": metrics}
    return row("abcnef", f"NEF's curves ({len(control)})", report, float("nan")).replace("nan", "–")


HEADER = (
    "| scene | recipe | strokes alive | F1@1% (GT curves) | chamfer/diag | ABC F@0.02 | ABC F@0.01 | ABC chamfer "
    "| surface P@1% | coverage@2% | fg touch | train s |\n|" + "---|" * 12
)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", nargs="+", default=list(SCENES), choices=list(SCENES))
    parser.add_argument("--recipes", nargs="+", default=["ancestor", "default"], choices=list(RECIPES))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--output", type=Path, default=Path("/tmp/bench_sketch"))
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more ns-train flags for every run")
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    lines = [HEADER]
    if "abcnef" in args.scenes and "default" in args.recipes:
        lines.append(nef_row())
    for scene in args.scenes:
        for recipe in args.recipes:
            start = time.perf_counter()
            run_dir = train(scene, recipe, args.steps, args.output, args.extra)
            seconds = time.perf_counter() - start
            report = evaluate(run_dir)
            picture(run_dir)
            if (run_dir / "timelapse.gif").is_file():
                shutil.copy(run_dir / "timelapse.gif", args.output / f"{scene}-{recipe}.gif")
            shutil.copy(run_dir / "sketch.png", args.output / f"{scene}-{recipe}.png")
            lines.append(row(scene, recipe, report, seconds))
            print(lines[-1], flush=True)
            (args.output / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
