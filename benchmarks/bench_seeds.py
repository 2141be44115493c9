"""The best of 4 seeds with ``clipsketch-batch --keep-best 1`` (Ray Tune's ASHA) against the same 4 seeds run fully,
and one full run on the whole machine (issue 25, item 3): wall time of each, and whether the seed ASHA keeps is the one
whose final loss is the lowest of the four run fully.

Each of the three is one ``clipsketch-batch`` on the built-in scene (default settings, random RN101: no weights can be
downloaded here) into its own folder, run one after the other:

- ``one``: 1 seed, ``--cpus-per-run`` = every core (a user's single run);
- ``full``: 4 seeds, 1 CPU each (as many at once as there are cores), every seed trained to the end;
- ``asha``: the same 4 seeds with ``--keep-best 1``.

Usage::

    python -m benchmarks.bench_seeds --output /tmp/seeds --steps 300
    python -m benchmarks.bench_seeds --output /tmp/seeds150 --steps 150 --set settle.enabled=False   # equal lengths
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def batch(output: Path, seeds: int, cpus: float, steps: int, fixed=(), extra=()) -> dict:
    command = [sys.executable, "-m", "nerfstudio_clipsketch.scripts.batch", "--captures", "builtin"]
    command += ["--set", f"max-num-iterations={steps}", "pipeline.model.clip.pretrained=none", *fixed]
    command += ["--seeds", str(seeds), "--cpus-per-run", f"{cpus:g}"]
    command += ["--output-dir", str(output), *extra]
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.monotonic() - start
    (output / "bench.log").write_text(done.stdout + done.stderr)
    rows = json.loads((output / "results.json").read_text())["runs"]
    return {"wall_s": round(wall, 1), "returncode": done.returncode, "runs": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--set", nargs="*", default=[], help="more KEY=VALUE flags for every run")
    parser.add_argument("--prune-after", type=float, default=0.25)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    results = {
        "one": batch(args.output / "one", 1, cores, args.steps, args.set),
        "full": batch(args.output / "full", args.seeds, 1, args.steps, args.set),
        "asha": batch(
            args.output / "asha",
            args.seeds,
            1,
            args.steps,
            args.set,
            ["--keep-best", "1", "--prune-after", str(args.prune_after)],
        ),  # fmt: skip
    }
    (args.output / "seeds.json").write_text(json.dumps(results, indent=2))
    print(f"{'batch':6s} {'wall s':>8s}  runs (seed: status, steps, final loss, F1@1%)")
    for name, result in results.items():
        runs = "; ".join(
            f"{r['seed']}: {r['status']}, {r['steps']}, {r.get('loss', float('nan')):.5f}, "
            f"{r.get('eval.curves.f1@1%', float('nan')):.3f}" + (" (best)" if r["best"] else "")
            for r in result["runs"]
        )
        print(f"{name:6s} {result['wall_s']:8.1f}  {runs}")
    full = {r["seed"]: r["loss"] for r in results["full"]["runs"]}
    kept = [r["seed"] for r in results["asha"]["runs"] if r["best"]]
    lowest = min(full, key=full.get)
    ratio = results["asha"]["wall_s"] / results["one"]["wall_s"]
    print(f"ASHA / one run: {ratio:.2f}x; kept seed {kept}, lowest final loss run fully: seed {lowest}")


if __name__ == "__main__":
    main()
