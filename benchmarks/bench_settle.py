"""How the settle rule (:mod:`nerfstudio_clipsketch.settling`) would have ended runs that trained every step, and what
their sketches scored there.

Input: run folders trained with ``--settle.enabled False --save-only-latest-checkpoint False --logging.steps-per-log
1`` (a checkpoint every 25 steps, the loss of every step in tensorboard), e.g. ``benchmarks.bench_family`` with those
flags after ``--extra``. For each run the rule is replayed at every kept checkpoint (the curves' movement between
checkpoints ``window`` steps apart, the loss's window means from tensorboard: exactly what the rule computes at that
step during training, which may fire up to 24 steps earlier, between checkpoints), and ``clipsketch-eval
--load-step`` measures the sketch at the steps in ``--eval-steps`` (cached in ``<run>/settle_eval/``). The table: per
run the step each candidate rule fires, the F-score (or the built-in's F1, the rose's precision) there and at the
last step.

Usage::

    python -m benchmarks.bench_settle /tmp/traj/*-default/clipsketch/run
    python -m benchmarks.bench_settle RUNS... --movement 0.5 1 --loss-drop 0.01 0.02 --window 50
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import torch

from nerfstudio_clipsketch.settling import SettleSettings, curve_points, length_change, movement


def checkpoints(run: Path) -> Dict[int, Path]:
    return {int(p.stem.split("-")[1]): p for p in sorted((run / "nerfstudio_models").glob("step-*.ckpt"))}


def world_points(path: Path) -> tuple[torch.Tensor, float]:
    """The curves' fixed-parameter points in the normalised world frame, and the stroke width in world units."""
    state = torch.load(path, map_location="cpu", weights_only=False)["pipeline"]
    prefix = "_model." if any(k.startswith("_model.") for k in state) else ""
    anchor, unit = state[f"{prefix}curves.anchor"], state[f"{prefix}curves.unit"]
    control = state[f"{prefix}curves.control_points"] * unit + anchor
    width = float(state[f"{prefix}style.width_px"] * state[f"{prefix}style.world_per_px"])
    return curve_points(control), width


def losses(run: Path) -> Dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"scalars": 0}).Reload()
    return {e.step: e.value for e in events.Scalars("Train Loss")}


def score(run: Path, step: int, last: int) -> Optional[float]:
    """The run's headline figure at ``step``: F@0.02 (ABC-NEF layout), F1@1% (built-in), P@1% (clipasso3d)."""
    out = run / "settle_eval" / f"{step}.json"
    if not out.is_file():
        out.parent.mkdir(exist_ok=True)
        tool = str(Path(sys.executable).parent / "clipsketch-eval")
        command = [tool, "--load-config", str(run / "config.yml"), "--output-path", str(out), "--load-step", str(step)]
        if subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode:
            return None
    report = json.loads(out.read_text())
    for section, key in (("abcnef", "f@0.02"), ("curves", "f1@1%"), ("surface", "precision@1%")):
        value = (report.get(section) or {}).get(key)
        if value is not None:
            return float(value)
    return None


def replay(run: Path, settings: SettleSettings) -> tuple[Optional[int], List[tuple[int, float, float]]]:
    """The first kept step at which the rule fires (None: never), and (step, movement, growth, loss drop) at each."""
    kept, loss = checkpoints(run), losses(run)
    trace, fired = [], None
    for step, path in kept.items():
        earlier = step - settings.window
        if earlier not in kept or any(s not in loss for s in range(step - 2 * settings.window + 1, step + 1)):
            continue
        before, width = world_points(kept[earlier])
        after, _ = world_points(path)
        moved = movement(before, after, width, settings.quantile)
        grown = length_change(before, after)
        w = settings.window
        old = sum(loss[s] for s in range(step - 2 * w + 1, step - w + 1)) / w
        new = sum(loss[s] for s in range(step - w + 1, step + 1)) / w
        drop = (old - new) / abs(old)
        trace.append((step, moved, grown, drop))
        still = moved < settings.movement and grown < settings.growth and drop < settings.loss_drop
        if fired is None and step + 1 >= settings.min_steps and still:
            fired = step
    return fired, trace


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--window", type=int, nargs="+", default=[50])
    parser.add_argument("--movement", type=float, nargs="+", default=[SettleSettings.movement])
    parser.add_argument("--quantile", type=float, nargs="+", default=[SettleSettings.quantile])
    parser.add_argument("--growth", type=float, nargs="+", default=[SettleSettings.growth])
    parser.add_argument("--loss-drop", type=float, nargs="+", default=[SettleSettings.loss_drop])
    parser.add_argument("--min-steps", type=int, default=SettleSettings.min_steps)
    parser.add_argument("--eval-steps", type=int, nargs="*", default=[50, 100, 150, 200, 250])
    parser.add_argument("--trace", action="store_true", help="print each run's movement and loss drop per checkpoint")
    args = parser.parse_args(argv)
    candidates = [
        SettleSettings(window=w, movement=m, quantile=q, growth=g, loss_drop=d, min_steps=args.min_steps)
        for w, m, q, g, d in itertools.product(args.window, args.movement, args.quantile, args.growth, args.loss_drop)
    ]
    print(
        "| run | last step | score at "
        + " | ".join(map(str, args.eval_steps))
        + " | last | "
        + " | ".join(f"w{c.window} m{c.movement:g} q{c.quantile:g} g{c.growth:g} d{c.loss_drop:g}" for c in candidates)
        + " |"
    )
    for run in args.runs:
        kept = checkpoints(run)
        last = max(kept)
        scores = {s: score(run, s, last) for s in [*args.eval_steps, last] if s in kept}
        cells = []
        for settings in candidates:
            fired, trace = replay(run, settings)
            if args.trace and settings is candidates[0]:
                print(
                    "  ",
                    run.parts[-3],
                    [(s, round(m, 2), round(g, 3), round(d, 3)) for s, m, g, d in trace],
                    file=sys.stderr,
                )
            if fired is None:
                cells.append("never")
                continue
            if fired not in scores:
                scores[fired] = score(run, fired, last)
            at = scores.get(fired)
            cells.append(f"{fired}: {at:.3f}" if at is not None else f"{fired}: –")
        fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
        name = run.parts[-3]
        row = [name, str(last), *(fmt(scores.get(s)) for s in args.eval_steps), fmt(scores.get(last)), *cells]
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
