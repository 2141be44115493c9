"""Where the time between ``ns-train clipsketch`` and its first step goes.

Runs ``ns-train clipsketch --max-num-iterations 1`` (the built-in scene unless ``--data``) under cProfile in a fresh
process and prints the wall time and the cumulative time of the set-up stages: imports (nerfstudio's method list,
which imports every installed plugin), the datamanager (parsing and caching the images), CLIP (building RN101 and
loading its weights; random weights here), the visual hull, the model's own set-up, and the first training step.
cProfile slows Python-heavy parts somewhat; the stages' shares are what to read. A second run without the profiler
gives the plain wall time. The last row is clipsketch's own share: the stages after nerfstudio's imports.

Usage::

    python -m benchmarks.bench_startup
    python -m benchmarks.bench_startup --data ../shared/data/abcnef/00000952
"""

from __future__ import annotations

import argparse
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = {
    "imports (nerfstudio's method list, plugins)": ("nerfstudio/configs/method_configs.py", "<module>"),
    "datamanager (parse, load and cache images)": ("nerfstudio_clipsketch/datamanager.py", "__init__"),
    "CLIP (build RN101, load weights)": ("nerfstudio_clipsketch/clip_weights.py", "create_clip"),
    "visual hull": ("nerfstudio_clipsketch/hull.py", "carve_hull"),
    "model set-up from the data (initial strokes)": ("nerfstudio_clipsketch/model.py", "setup_from_data"),
    "first training step": ("nerfstudio/engine/trainer.py", "train_iteration"),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path)
    args = parser.parse_args(argv)
    ns_train = str(Path(sys.executable).parent / "ns-train")
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            "clipsketch", *(["--data", str(args.data)] if args.data else []),
            "--max-num-iterations", "1", "--vis", "tensorboard", "--machine.device-type", "cpu",
            "--pipeline.model.clip.pretrained", "none", "--output-dir", tmp,
        ]  # fmt: skip
        start = time.perf_counter()
        subprocess.run([ns_train, *command], check=True, capture_output=True)
        plain = time.perf_counter() - start
        profile = Path(tmp) / "startup.prof"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cProfile", "-o", str(profile), ns_train, *command], check=True,
                       capture_output=True)  # fmt: skip
        profiled = time.perf_counter() - start
        stats = pstats.Stats(str(profile)).stats  # type: ignore[attr-defined]
    print(f"ns-train wall time (1 step, no profiler): {plain:.1f} s; under cProfile: {profiled:.1f} s\n")
    print("| stage | cumulative s (cProfile) |\n|---|---|")
    ours = 0.0
    for stage, (path, function) in STAGES.items():
        seconds = sum(v[3] for (file, _, name), v in stats.items() if file.endswith(path) and name == function)
        print(f"| {stage} | {seconds:.1f} |")
        ours += seconds if not stage.startswith("imports") else 0.0
    print(f"| **ours: every stage after nerfstudio's imports, to the end of the first step** | **{ours:.1f}** |")


if __name__ == "__main__":
    main()
