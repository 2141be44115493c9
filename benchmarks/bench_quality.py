"""Sketch quality before and after training: ``ns-train clipsketch`` on three scenes, then ``clipsketch-eval``.

For each scene, one seeded training run (``--pipeline.model.seed`` and ``--machine.seed``), then ``clipsketch-eval``
twice on it: ``--initial`` (the seeded initial sketch, step 0: the run set up without its checkpoint) and on the final
checkpoint. The scenes run one after the other, each command in its own process, and the table of the main metrics
is printed as Markdown (and written to ``--markdown``):

- built-in scene (ground-truth curves): chamfer distance, precision / recall / F1 at 1 % of the diagonal;
- clipasso3d scenes (world positions): precision at 1 %, mean curve-to-surface distance, coverage at 1 %;
- every scene: CLIP similarity of sketch and test image (next to a blank canvas's), foreground touch.

The CLIP model is RN101 with random weights (``--pipeline.model.clip.pretrained none``): no weights can be
downloaded here. Its loss still pulls the curves toward the object, but its similarities mean little.

Usage::

    python -m benchmarks.bench_quality --markdown /tmp/bench_quality.md
    python -m benchmarks.bench_quality --scenes rose --steps rose=50     # a quick look
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Dict, List, Optional

SCENES = ("builtin", "rose", "duck")
DEFAULT_STEPS = {"builtin": 100, "rose": 250, "duck": 80}
NUM_CURVES = 16
SEED = 42


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def train_command(scene: str, data_root: Path, output_dir: Path, steps: int, timelapse_every: int) -> List[str]:
    data = [] if scene == "builtin" else ["--data", str(data_root / scene)]
    return [
        _tool("ns-train"), "clipsketch", *data,
        "--pipeline.model.clip.pretrained", "none",
        "--machine.device-type", "cpu",
        "--vis", "tensorboard",
        "--max-num-iterations", str(steps),
        "--pipeline.model.num-curves", str(NUM_CURVES),
        "--pipeline.model.seed", str(SEED),
        "--machine.seed", str(SEED),
        "--pipeline.model.timelapse-every", str(timelapse_every),
        "--output-dir", str(output_dir),
        "--experiment-name", scene,
        "--timestamp", "quality",
    ]  # fmt: skip


def eval_command(config: Path, output: Path, initial: bool, max_views: Optional[int]) -> List[str]:
    command = [_tool("clipsketch-eval"), "--load-config", str(config), "--output-path", str(output)]
    if initial:
        command.append("--initial")
    if max_views is not None:
        command += ["--max-views", str(max_views)]
    return command


def show(command: List[str]) -> str:
    """The command as typed in the virtual environment (the tool's name without the environment's folder)."""
    return " ".join(shlex.quote(c) for c in [Path(command[0]).name, *command[1:]])


def run_logged(command: List[str], log: Path) -> float:
    """Run ``command`` with its output in ``log``; returns the wall time in seconds, or exits on failure."""
    print("$", show(command), flush=True)
    start = time.perf_counter()
    with log.open("w") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"Failed ({result.returncode}) after {seconds:.0f} s; see {log}")
    return seconds


def _fmt(value: Optional[float], digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def table_rows(scene: str, initial: Dict, trained: Dict) -> List[str]:
    rows = []
    for label, report in (("initial (step 0)", initial), (f"trained ({trained['step'] + 1} steps)", trained)):
        curves, surface = report.get("curves"), report.get("surface")
        touch = report.get("foreground_touch")
        if surface is not None and surface.get("skipped"):
            surface_cells = [f"skipped ({surface['num_surface_points']} pts)", "–", "–"]
        elif surface is not None:
            surface_cells = [
                _fmt(surface["precision@1%"]),
                f"{_fmt(surface['mean_distance'])} ({_fmt(surface['mean_distance/diag'])})",
                _fmt(surface["coverage@1%"]),
            ]
        else:
            surface_cells = ["–"] * 3
        curve_cells = ["–"] * 4
        if curves is not None:
            curve_cells = [
                f"{_fmt(curves['chamfer'])} ({_fmt(curves['chamfer/diag'])})",
                *(_fmt(curves[f"{name}@1%"]) for name in ("precision", "recall", "f1")),
            ]
        clip = report["clip"]
        cells = [
            scene,
            label,
            *curve_cells,
            *surface_cells,
            f"{clip['similarity']:.5f} ({clip['similarity_blank']:.5f})",
            _fmt(touch["mean"] if touch else None),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


HEADER = (
    "| scene | sketch | chamfer (/diag) | P@1% | R@1% | F1@1% | surface P@1% | mean dist (/diag) | coverage@1% "
    "| CLIP sim (blank) | fg touch |\n|---|---|---|---|---|---|---|---|---|---|---|"
)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", nargs="+", choices=SCENES, default=list(SCENES))
    parser.add_argument(
        "--steps", nargs="+", default=[], metavar="SCENE=N", help=f"training steps per scene (default {DEFAULT_STEPS})"
    )
    parser.add_argument("--data-root", type=Path, default=Path("/work/shared/data/clipasso3d"))
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/bench_quality"))
    parser.add_argument("--max-views", type=int, default=None, help="test views per evaluation (default: all)")
    parser.add_argument("--timelapse-every", type=int, default=50)
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table and commands here")
    parser.add_argument(
        "--eval-only", action="store_true", help="re-evaluate the runs already in --output-dir (no training)"
    )
    args = parser.parse_args(argv)
    steps = dict(DEFAULT_STEPS)
    for item in args.steps:
        scene, _, count = item.partition("=")
        if scene not in SCENES or not count.isdigit() or int(count) < 1:
            parser.error(f"--steps takes SCENE=N with SCENE in {SCENES} and N >= 1, got {item!r}")
        steps[scene] = int(count)

    args.output_dir.mkdir(parents=True, exist_ok=True)
    rows, lines = [], []
    total_start = time.perf_counter()
    for scene in args.scenes:
        train = train_command(scene, args.data_root, args.output_dir, steps[scene], args.timelapse_every)
        train_s = None if args.eval_only else run_logged(train, args.output_dir / f"{scene}_train.log")
        run_dir = args.output_dir / scene / "clipsketch" / "quality"
        reports, eval_s = {}, {}
        for initial in (True, False):
            name = "initial" if initial else "trained"
            output = args.output_dir / f"{scene}_{name}.json"
            command = eval_command(run_dir / "config.yml", output, initial, args.max_views)
            eval_s[name] = run_logged(command, args.output_dir / f"{scene}_{name}_eval.log")
            reports[name] = json.loads(output.read_text())
            lines.append(f"  - `{show(command)}`: {eval_s[name]:.0f} s")
        timing = "trained earlier" if train_s is None else f"{train_s:.0f} s ({train_s / steps[scene]:.2f} s/step"
        timing += "" if train_s is None else " including start-up)"
        lines.insert(len(lines) - 2, f"- {scene}: `{show(train)}`: {steps[scene]} steps, {timing}")
        rows += table_rows(scene, reports["initial"], reports["trained"])
    total = time.perf_counter() - total_start
    text = "\n".join(
        [HEADER, *rows, "", f"Date {date.today().isoformat()}, total wall time {total / 60:.1f} min. Commands:", *lines]
    )
    print(text)
    if args.markdown is not None:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
