"""``clipsketch-batch`` on a local Ray instance limited to 2 CPUs, as a user runs it: a 2x2 sweep (two captures, two
settings) of real ns-train runs with the tiny random CLIP, stopped with Ctrl-C once a run has finished, then rerun
with a bad setting added. Minutes on two cores: marked ``slow``. Skipped only where Ray cannot be imported."""

from __future__ import annotations

import importlib.util
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nerfstudio_clipsketch.batch.contact_sheet import COLOURS
from tests.helpers import cli_env, console_text, with_default_sigint

pytestmark = pytest.mark.slow
if importlib.util.find_spec("ray") is None:  # found, not imported: importing Ray costs seconds at every collection
    pytest.skip("clipsketch-batch runs on Ray, which cannot be installed on this platform", allow_module_level=True)

STEPS = 2
BAD = "num_curves must be at least 1, got 0"


def batch_command(captures, sweep: str, clip_config: Path, cache: Path, output_dir: Path) -> list:
    """``clipsketch-batch`` over ``captures`` sweeping the number of curves: 2-step CPU runs with the tiny CLIP."""
    return [
        sys.executable, "-m", "nerfstudio_clipsketch.scripts.batch",
        "--captures", *map(str, captures),
        "--sweep", f"pipeline.model.num-curves={sweep}",
        "--set",
        f"max-num-iterations={STEPS}", "steps-per-save=1", "logging.steps-per-log=1",
        "pipeline.model.gaussians-per-curve=24", "pipeline.model.stroke-width=3.0",
        f"pipeline.model.clip.model-name={clip_config.stem}", f"pipeline.model.clip.model-config={clip_config}",
        "pipeline.model.clip.pretrained=none", "pipeline.model.clip.layer-weights=0 1 1 1 0",
        "pipeline.datamanager.dataparser.builtin-image-size=32",
        f"pipeline.datamanager.dataparser.builtin-cache-dir={cache}",
        "--output-dir", str(output_dir), "--num-cpus", "2", "--tile-size", "64",
    ]  # fmt: skip


def records(output_dir: Path) -> dict:
    return {
        p.parent.name + "@" + p.parents[2].name: json.loads(p.read_text())
        for p in output_dir.glob("*/*/*/batch_run.json")
    }


def children_left(output_dir: Path) -> list:
    """Processes still running with the batch folder on their command line (ns-train, clipsketch-eval)."""
    left = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(output_dir).encode() in cmdline.read_bytes():
                left.append(cmdline.parent.name)
        except OSError:
            pass
    return left


def test_a_sweep_stopped_and_rerun_skips_finished_runs_and_a_bad_setting_fails_alone(
    tiny_scene, tiny_clip_config, tmp_path
):
    out, cache = tmp_path / "batch", tmp_path / "cache"
    captures = ["builtin", tiny_scene]

    # 1. The 2x2 sweep, stopped with Ctrl-C as soon as one run has finished.
    batch = subprocess.Popen(
        batch_command(captures, "3,4", tiny_clip_config, cache, out),
        env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=with_default_sigint,
    )  # fmt: skip
    deadline = time.monotonic() + 900
    while not any(r["status"] == "finished" for r in records(out).values()):
        assert batch.poll() is None and time.monotonic() < deadline, batch.communicate()[0][-3000:]
        time.sleep(1)
    batch.send_signal(signal.SIGINT)
    output = console_text(batch.communicate(timeout=300)[0])
    assert batch.returncode == 130, output[-3000:]
    assert "Stopping" in output and "Traceback" not in output
    if Path("/proc").is_dir():
        assert not children_left(out)
    stopped = json.loads((out / "results.json").read_text())
    assert len(stopped["runs"]) == 4 and len(stopped["contact_sheet"]["tiles"]) == 4
    finished = {f"{r['run']}@{r['capture']}" for r in stopped["runs"] if r["status"] == "finished"}
    assert finished and {r["status"] for r in stopped["runs"]} <= {"finished", "stopped"}, stopped["runs"]
    before = records(out)

    # 2. The same sweep with a bad third value: finished runs are skipped, the others trained, the bad ones fail alone.
    rerun = subprocess.run(
        batch_command(captures, "3,4,0", tiny_clip_config, cache, out),
        env=cli_env(), capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    output = console_text(rerun.stdout + rerun.stderr)
    assert rerun.returncode == 1, output[-3000:]  # a run failed
    assert f"6 runs in {out}: {len(finished)} finished (skipped)" in output
    after = records(out)
    for run in finished:
        assert after[run]["attempts"] == before[run]["attempts"], run

    document = json.loads((out / "results.json").read_text())
    rows = document["runs"]
    assert [(r["capture"], r["pipeline.model.num-curves"]) for r in rows] == [
        (capture, n) for capture in ("builtin", tiny_scene.name) for n in ("3", "4", "0")
    ]
    for row in rows:
        if row["pipeline.model.num-curves"] == "0":
            assert row["status"] == "failed" and BAD in row["error"] and row["steps"] == 0, row
            assert BAD in output
        else:
            assert row["status"] == "finished" and row["steps"] == STEPS and row["best"], row
            assert math.isfinite(row["loss"]) and row["wall_time_s"] > 0
            assert 0 <= row["eval.curves.f1@1%"] <= 1 and "eval.clip.similarity" in row  # ground-truth curves
    assert (out / "results.csv").read_text().count("\n") == 1 + 6

    sheet = document["contact_sheet"]
    assert sheet["rows"] == ["builtin", tiny_scene.name] and len(sheet["columns"]) == 3 and len(sheet["tiles"]) == 6
    pixels = np.asarray(Image.open(out / "contact_sheet.png").convert("RGB"))
    for tile, row in zip(sheet["tiles"], rows):
        left, top, right, bottom = tile["box"]
        shown = pixels[top:bottom, left:right]
        if row["status"] == "finished":  # the run's final frame, enlarged pixel for pixel to the tile
            frame = Image.open(row["image"]).convert("RGB").resize((right - left, bottom - top), Image.NEAREST)
            assert row["image"].endswith(f"step_{STEPS - 1:09d}.png") and (shown == np.asarray(frame)).all()
        else:
            assert tuple(shown[-1, -1]) == COLOURS.empty


def test_keep_best_stops_poor_seeds_early_and_a_rerun_leaves_them_stopped(tiny_clip_config, tmp_path):
    """4 seeds, the best kept: one run at a time (--num-cpus 1), so seeds meet the first rung (30 of 300 steps) in turn
    and each after the first goes on only if it is ahead of those before it."""
    out, cache = tmp_path / "seeds", tmp_path / "cache"
    command = batch_command(["builtin"], "3", tiny_clip_config, cache, out)
    command[command.index(f"max-num-iterations={STEPS}")] = "max-num-iterations=300"  # ~30 ms a step: 1 s polls
    command[command.index("steps-per-save=1")] = "steps-per-save=100"
    command.insert(command.index("--set") + 1, "settle.enabled=False")  # every seed kept trains all 300 steps
    command[command.index("--num-cpus") + 1] = "1"
    command += ["--seeds", "4", "--keep-best", "1", "--prune-after", "0.1"]
    first = subprocess.run(command, env=cli_env(), capture_output=True, text=True, timeout=900)
    output = console_text(first.stdout + first.stderr)
    assert first.returncode == 0, output[-3000:]
    rows = json.loads((out / "results.json").read_text())["runs"]
    assert {r["status"] for r in rows} <= {"finished", "pruned"} and rows[0]["status"] == "finished", rows
    pruned = [r for r in rows if r["status"] == "pruned"]
    assert pruned, [(r["run"], r["loss"]) for r in rows]  # fixed seeds: the same losses on every run of the test
    for row in pruned:
        at = json.loads((Path(row["run_dir"]) / "pruned.json").read_text())
        # at a rung (30, then 30 x 4 steps), with the loss logged there; the trainer waited near it for the answer
        assert at["step"] in (30, 120) and row["steps"] < 300 and "eval.curves.f1@1%" not in row and not row["best"]
        assert f"pruned builtin {row['run']} at step {at['step']}" in output
    (best,) = [r for r in rows if r["best"]]
    assert best["status"] == "finished" and best["steps"] == 300
    rerun = subprocess.run(command, env=cli_env(), capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0 and "4 runs in" in rerun.stdout and "4 finished (skipped)" in rerun.stdout
    assert json.loads((out / "results.json").read_text())["runs"] == rows
