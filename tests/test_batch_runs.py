"""``clipsketch-batch``'s runs: their state read from their folders, their commands, and the process that runs their
stages as children (stopping them with SIGTERM, also when their worker dies), all without Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nerfstudio_clipsketch.batch.grid import BatchConfigError, BatchGrid, parse_sweep
from nerfstudio_clipsketch.batch.runs import (
    RunJob,
    Stage,
    mark_pruned,
    new_record,
    plan_runs,
    prepare,
    read_record,
    record_finished,
    run_state,
    stages,
    train_command,
    write_record,
)
from nerfstudio_clipsketch.batch.trial import RunFailed, RunProcess, error_message, settle

STEPS = 5


def specs(sweep=("pipeline.model.num-curves=8,16",), **fixed):
    """Runs on the built-in scene; ``fixed`` flags are given with dots as double underscores (a__b=1: --a.b 1)."""
    flags = {"max-num-iterations": (str(STEPS),)}
    flags.update({k.replace("__", ".").replace("_", "-"): (v,) for k, v in fixed.items()})
    return BatchGrid(["builtin"], parse_sweep(list(sweep)), flags).runs()


def fake_run(folder: Path, checkpoint=None, evaluated=None) -> Path:
    """A run folder as ns-train and clipsketch-eval leave it: an (empty) checkpoint, an eval report."""
    (folder / "nerfstudio_models").mkdir(parents=True, exist_ok=True)
    if checkpoint is not None:
        (folder / "nerfstudio_models" / f"step-{checkpoint:09d}.ckpt").write_bytes(b"")
    if evaluated is not None:
        (folder / "eval_metrics.json").write_text(json.dumps({"step": evaluated}))
    return folder


def test_state_comes_from_the_checkpoints_and_the_eval_report(tmp_path):
    assert run_state(tmp_path / "none", STEPS, evaluate=True) == "new"
    assert run_state(fake_run(tmp_path / "a", checkpoint=2), STEPS, evaluate=True) == "stopped"
    assert run_state(fake_run(tmp_path / "b", checkpoint=STEPS - 1), STEPS, evaluate=True) == "trained"
    assert run_state(fake_run(tmp_path / "b", evaluated=2), STEPS, evaluate=True) == "trained"  # an older report
    assert run_state(fake_run(tmp_path / "b", evaluated=STEPS - 1), STEPS, evaluate=True) == "finished"
    assert run_state(fake_run(tmp_path / "c", checkpoint=STEPS - 1), STEPS, evaluate=False) == "finished"
    assert run_state(fake_run(tmp_path / "c"), STEPS + 10, evaluate=False) == "stopped"  # more steps asked: resumed
    (tmp_path / "a" / "nerfstudio_models" / ".step-000000004.ckpt.tmp").write_bytes(b"")  # ignored
    assert run_state(tmp_path / "a", STEPS, evaluate=True) == "stopped"


def test_a_new_run_trains_in_the_batch_folder_with_the_batch_owned_flags(tmp_path):
    spec = specs(sweep=("pipeline.model.num-curves=8", "pipeline.datamanager.dataparser.builtin-image-size=32"))[0]
    (plan,) = plan_runs(tmp_path, [spec], evaluate=True)
    assert plan.run_dir == tmp_path / "builtin" / "clipsketch" / "num-curves=8,builtin-image-size=32,seed=0"
    command = train_command(plan, tmp_path, cpu_only=True)
    assert command[:4] == [sys.executable, "-m", "nerfstudio.scripts.train", "clipsketch"]
    args = " ".join(command[4:])
    assert f"--output-dir {tmp_path} --experiment-name builtin --timestamp {spec.name} --vis tensorboard" in args
    assert "--machine.seed 0 --pipeline.model.seed 0 --machine.device-type cpu" in args
    assert f"--pipeline.model.timelapse-every {STEPS}" in args
    assert "--load-dir" not in args and "--data" not in args
    assert args.endswith(
        f"--pipeline.model.num-curves 8 --max-num-iterations {STEPS} clipsketch-data --builtin-image-size 32"
    )
    assert [s.kind for s in stages(plan, tmp_path, evaluate=True, cpu_only=True)] == ["train", "eval"]
    gpu = " ".join(train_command(plan, tmp_path, cpu_only=False))
    assert "--machine.device-type" not in gpu


def test_a_stopped_run_resumes_from_its_checkpoint_for_the_steps_left(tmp_path):
    spec = specs(pipeline__model__timelapse_every="2")[0]
    fake_run(tmp_path / "builtin" / "clipsketch" / spec.name, checkpoint=1)
    (plan,) = plan_runs(tmp_path, [spec], evaluate=False)
    assert (plan.state, plan.checkpoint) == ("stopped", 1)
    args = " ".join(train_command(plan, tmp_path, cpu_only=True))
    assert f"--max-num-iterations {STEPS - 2} --load-dir {plan.run_dir / 'nerfstudio_models'} --load-step 1" in args
    assert args.count("timelapse-every") == 1  # the run's own setting wins
    (stage,) = stages(plan, tmp_path, evaluate=False, cpu_only=True)
    assert (stage.kind, stage.from_step) == ("resume", 2)


def test_a_trained_run_is_only_evaluated_and_a_finished_one_has_nothing_left(tmp_path):
    spec = specs()[0]
    folder = fake_run(tmp_path / "builtin" / "clipsketch" / spec.name, checkpoint=STEPS - 1)
    (plan,) = plan_runs(tmp_path, [spec], evaluate=True)
    (stage,) = stages(plan, tmp_path, evaluate=True, cpu_only=True)
    assert stage.kind == "eval" and stage.command[-2:] == ["--load-config", str(folder / "config.yml")]
    fake_run(folder, evaluated=STEPS - 1)
    (plan,) = plan_runs(tmp_path, [spec], evaluate=True)
    assert plan.state == "finished" and stages(plan, tmp_path, evaluate=True, cpu_only=True) == []


def test_a_run_stopped_just_as_its_last_stage_ended_is_recorded_as_finished(tmp_path):
    """Ctrl-C can reach a task after its evaluation wrote its report: the files say finished, so the table must too
    (a rerun skips it), while a run stopped mid-training stays stopped."""
    done, cut = specs()
    done_dir = fake_run(tmp_path / "builtin" / "clipsketch" / done.name, checkpoint=STEPS - 1, evaluated=STEPS - 1)
    cut_dir = fake_run(tmp_path / "builtin" / "clipsketch" / cut.name, checkpoint=2)
    for spec, folder in ((done, done_dir), (cut, cut_dir)):
        write_record(folder, {**new_record(spec, {}), "status": "stopped"})
    record_finished(plan_runs(tmp_path, [done, cut], evaluate=True), evaluate=True)
    assert read_record(done_dir)["status"] == "finished" and read_record(cut_dir)["status"] == "stopped"


def test_a_checkpoint_trained_with_other_flags_is_neither_resumed_nor_skipped(tmp_path):
    old, new = specs(pipeline__model__stroke_width="2")[0], specs(pipeline__model__stroke_width="3")[0]
    folder = fake_run(tmp_path / "builtin" / "clipsketch" / old.name, checkpoint=1)
    write_record(folder, new_record(old, {}))
    assert plan_runs(tmp_path, [old], evaluate=True)[0].state == "stopped"
    with pytest.raises(BatchConfigError, match="trained with other flags"):
        plan_runs(tmp_path, [new], evaluate=True)
    (folder / "nerfstudio_models" / "step-000000001.ckpt").unlink()  # no checkpoint: nothing to mix up
    assert plan_runs(tmp_path, [new], evaluate=True)[0].state == "new"


def test_a_new_run_starts_from_an_empty_folder_and_a_resumed_one_keeps_its_attempts(tmp_path):
    spec = specs()[0]
    folder = tmp_path / "builtin" / "clipsketch" / spec.name
    folder.mkdir(parents=True)
    (folder / "train.log").write_text("a failed attempt")
    (plan,) = plan_runs(tmp_path, [spec], evaluate=True)
    prepare(plan)
    assert sorted(p.name for p in folder.iterdir()) == ["batch_run.json"]
    assert read_record(folder)["status"] == "queued"
    fake_run(folder, checkpoint=1)
    write_record(folder, {**read_record(folder), "attempts": [{"stage": "train", "wall_time_s": 3.0}]})
    (plan,) = plan_runs(tmp_path, [spec], evaluate=True)
    prepare(plan)
    assert read_record(folder)["attempts"] == [{"stage": "train", "wall_time_s": 3.0}]


# ----------------------------------------------------------------------------------------------------------------------
# The task


def python_stage(tmp_path: Path, code: str, kind="train") -> Stage:
    return Stage(kind, [sys.executable, "-c", code], tmp_path / f"{kind}.log", 0)


def finish(process: RunProcess) -> str:
    while (kind := process.poll()) != "finished":
        time.sleep(0.05)
    return kind


def test_stages_run_in_order_and_the_first_failure_ends_the_run_with_its_message(tmp_path):
    write_record(tmp_path, new_record(specs()[0], {}))
    ok = python_stage(tmp_path, "print('trained')")
    bad = python_stage(tmp_path, "import sys; print('clipsketch: num_curves must be at least 1, got 0'); sys.exit(2)")
    never = python_stage(tmp_path, "open('ran', 'w')", kind="eval")
    process = RunProcess(RunJob("r", tmp_path, [ok, bad, never], tmp_path))
    assert read_record(tmp_path)["status"] == "running"
    with pytest.raises(RunFailed) as failure:
        finish(process)
    assert str(failure.value) == "train: clipsketch: num_curves must be at least 1, got 0"
    record = read_record(tmp_path)
    assert (record["status"], record["error"]) == ("failed", str(failure.value))
    assert [a["returncode"] for a in record["attempts"]] == [0, 2]
    assert not (tmp_path / "ran").exists()
    assert "trained" in (tmp_path / "train.log").read_text()
    assert finish(RunProcess(RunJob("r", tmp_path, [ok], tmp_path))) == "finished"
    assert (read_record(tmp_path)["status"], read_record(tmp_path)["error"]) == ("finished", None)


CHILD = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: (open("saved", "w").write("checkpoint"), sys.exit(143)))
print([line for line in open("/proc/self/status") if line.startswith("SigBlk")][0], flush=True)
open("started", "w").close()
time.sleep(60)
"""


def wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the signal mask from /proc")
def test_a_stopped_run_sends_sigterm_to_its_child_which_starts_with_no_signal_blocked(tmp_path):
    """Tune stops a trial by calling its cleanup, in a worker that blocks SIGINT (as Ray's workers do)."""
    stage = Stage("train", [sys.executable, "-c", CHILD], tmp_path / "train.log", 0)
    write_record(tmp_path, new_record(specs()[0], {}))
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        process = RunProcess(RunJob("r", tmp_path, [stage], tmp_path, stop_timeout=30))
        assert process.poll() == "train"
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    wait_for(tmp_path / "started")
    process.stop()
    record = read_record(tmp_path)
    assert record["status"] == "stopped" and record["attempts"][-1]["returncode"] == 143
    assert record["attempts"][-1]["interrupted"] and record["attempts"][-1]["wall_time_s"] < 30
    assert (tmp_path / "saved").read_text() == "checkpoint"
    assert "SigBlk:\t0000000000000000" in (tmp_path / "train.log").read_text()
    assert not settle([tmp_path], timeout=1) or read_record(tmp_path)["status"] == "stopped"


def test_a_pruned_run_is_recorded_as_pruned_and_not_resumed(tmp_path):
    spec = specs()[0]
    folder = fake_run(tmp_path / "builtin" / "clipsketch" / spec.name, checkpoint=1)
    stage = python_stage(folder, "import time; time.sleep(60)")
    write_record(folder, new_record(spec, {}))
    process = RunProcess(RunJob("r", folder, [stage], folder, stop_timeout=5))
    assert process.poll() == "train"
    mark_pruned(folder, step=2, loss=0.5)
    process.stop()
    assert read_record(folder)["status"] == "pruned"
    (plan,) = plan_runs(tmp_path, [spec], evaluate=True)
    assert plan.state == "pruned" and stages(plan, tmp_path, evaluate=True, cpu_only=True) == []


PARENT = """
import sys
from pathlib import Path
from nerfstudio_clipsketch.batch.runs import RunJob, Stage
from nerfstudio_clipsketch.batch.trial import RunProcess
folder = Path(sys.argv[1])
stage = Stage("train", [sys.executable, "-c", sys.argv[2]], folder / "log", 0)
process = RunProcess(RunJob("r", folder, [stage], folder))
process.poll()
print(process.child.pid, flush=True)
import time; time.sleep(60)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_whose_worker_dies_gets_sigterm_and_settle_waits_for_it(tmp_path):
    write_record(tmp_path, new_record(specs()[0], {}))
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path), CHILD], cwd=tmp_path, stdout=subprocess.PIPE
    )
    child = int(parent.stdout.readline())
    wait_for(tmp_path / "started")
    parent.kill()  # as Ray kills a worker that does not stop in time
    parent.wait()
    assert settle([tmp_path], timeout=30)  # the run was stopped, and its child is gone
    assert (tmp_path / "saved").read_text() == "checkpoint" and read_record(tmp_path)["status"] == "stopped"
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


@pytest.mark.parametrize(
    "output, message",
    [
        (
            "[17:05:23] log line\nclipsketch: a long message that the console\nwrapped over two lines\n",
            "clipsketch: a long message that the console wrapped over two lines",
        ),
        ("Error: --load-config 'x' does not exist.\n", "Error: --load-config 'x' does not exist."),
        (
            "warn\n╭─ Unrecognized options ──────╮\n│ Unrecognized options: --foo │\n│ ─────────── │\n"
            "│ For full helptext, run ... │\n╰─────────────╯\n",
            "Unrecognized options: --foo",
        ),
        (
            "╭─ Parsing error ─────╮\n│ Argument --x: expected INT │\n╰──────╯\n",
            "Parsing error: Argument --x: expected INT",
        ),
        (
            'Traceback (most recent call last):\n  File "x.py", line 1\nRuntimeError: CUDA out of memory\n'
            "Printing profiling stats\n",
            "RuntimeError: CUDA out of memory",
        ),
        ("something\nKilled\n", "Killed"),
        ("", "exit status -9"),
    ],
)
def test_error_messages_are_one_line_from_what_the_child_printed(output, message):
    assert error_message(output, -9) == message
