"""Ctrl-C (SIGINT) and SIGTERM during training: the step under way finishes, its checkpoint and the time-lapse so far
are saved, the run says how to resume and exits with 128 + the signal's number. In this process (the signal sent from
a training callback, mid-step), and once through the console script (marked ``slow``)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import contextmanager

import pytest
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation
from PIL import Image

from nerfstudio_clipsketch.checkpoints import checkpoint_steps
from nerfstudio_clipsketch.model import ClipSketchModel
from nerfstudio_clipsketch.scripts.common import load_run
from tests.helpers import (
    cli_command,
    cli_env,
    console_text,
    run_dir,
    train_args,
    train_in_process,
    with_default_sigint,
    with_option,
)

STOP_AT = 1


def long_run_args(scene, clip_config, output_dir) -> list:
    """A run far longer than any test waits for, saving only when it ends (or is stopped); no CLIP augmentations, for
    quicker steps."""
    args = with_option(train_args(scene, clip_config, output_dir, steps=100_000), "--steps-per-save", 0)
    return with_option(args, "--pipeline.model.clip.num-augmentations", 0)


@pytest.fixture
def signal_during_step(monkeypatch):
    """``send(signum, times, where)``: the model's callbacks also send ``signum`` to this process ``times`` times at
    the start of step ``STOP_AT`` (or at ``where`` in it). Until then the signal raises here: without clipsketch's
    handler a SIGTERM would end pytest, and the test should fail instead."""
    original = ClipSketchModel.get_training_callbacks
    previous = {}

    def send(signum: int, times: int = 1, where=TrainingCallbackLocation.BEFORE_TRAIN_ITERATION) -> None:
        def kill(step: int) -> None:
            for _ in range(times):
                os.kill(os.getpid(), signum)

        def callbacks(self, attributes):
            return [*original(self, attributes), TrainingCallback([where], kill, iters=(STOP_AT,))]

        def unhandled(signum, frame):
            raise RuntimeError(f"{signal.Signals(signum).name} reached the test: nothing handled it")

        monkeypatch.setattr(ClipSketchModel, "get_training_callbacks", callbacks)
        previous[signum] = signal.signal(signum, unhandled)

    yield send
    for signum, handler in previous.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_saves_the_step_it_arrived_in_and_the_timelapse(
    signum, signal_during_step, tiny_scene, tiny_clip_config, tmp_path, capsys
):
    signal_during_step(signum)
    with pytest.raises(SystemExit) as exit_info:
        train_in_process(long_run_args(tiny_scene, tiny_clip_config, tmp_path))
    output = console_text(capsys.readouterr().out)
    assert exit_info.value.code == 128 + signum
    name, run = signal.Signals(signum).name, run_dir(tmp_path)
    assert f"stopped by {name} after step {STOP_AT}" in output and f"--load-dir {run}" in output
    assert "Traceback" not in output
    assert checkpoint_steps(run / "nerfstudio_models") == [STOP_AT]
    assert load_run(run / "config.yml").step == STOP_AT
    # The time-lapse so far (every 10 steps from 0) and its last frame.
    frames = sorted(p.name for p in (run / "timelapse").glob("step_*.png"))
    assert frames == [f"step_{s:09d}.png" for s in (0, STOP_AT)]
    with Image.open(run / "timelapse.gif") as gif:
        assert gif.n_frames == 2


def test_resuming_as_the_stopped_run_says_continues_after_its_step(
    signal_during_step, tiny_scene, tiny_clip_config, tmp_path, capsys
):
    signal_during_step(signal.SIGINT)
    with pytest.raises(SystemExit):
        train_in_process(long_run_args(tiny_scene, tiny_clip_config, tmp_path / "first"))
    capsys.readouterr()
    resumed = tmp_path / "resumed"
    load_dir = run_dir(tmp_path / "first")  # the folder the message names
    train_in_process([*train_args(tiny_scene, tiny_clip_config, resumed, steps=2), "--load-dir", load_dir])
    assert checkpoint_steps(run_dir(resumed) / "nerfstudio_models") == [STOP_AT + 2]


def test_a_second_signal_stops_at_once(signal_during_step, tiny_scene, tiny_clip_config, tmp_path, capsys):
    signal_during_step(signal.SIGINT, times=2)
    with pytest.raises(SystemExit) as exit_info:
        train_in_process(long_run_args(tiny_scene, tiny_clip_config, tmp_path))
    assert exit_info.value.code == 130
    assert checkpoint_steps(run_dir(tmp_path) / "nerfstudio_models") == []  # none saved yet, none half-written
    assert "Traceback" not in capsys.readouterr().out


def test_ctrl_c_once_training_has_ended_and_is_saved_quits_at_once(
    signal_during_step, tiny_scene, tiny_clip_config, tmp_path, capsys
):
    # Where nerfstudio's viewer waits for a Ctrl-C to quit (its AFTER_TRAIN callbacks run just before).
    signal_during_step(signal.SIGINT, where=TrainingCallbackLocation.AFTER_TRAIN)
    with pytest.raises(SystemExit) as exit_info:
        train_in_process(train_args(tiny_scene, tiny_clip_config, tmp_path, steps=STOP_AT + 1))
    assert exit_info.value.code == 0
    assert checkpoint_steps(run_dir(tmp_path) / "nerfstudio_models") == [STOP_AT]
    assert "stopped by" not in console_text(capsys.readouterr().out)


def test_ctrl_c_while_setting_up_is_one_message(tiny_scene, tiny_clip_config, tmp_path, monkeypatch, capsys):
    from nerfstudio_clipsketch.pipeline import ClipSketchPipeline

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(ClipSketchPipeline, "ensure_guidance", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        train_in_process(train_args(tiny_scene, tiny_clip_config, tmp_path, steps=2))
    output = console_text(capsys.readouterr().out)
    assert exit_info.value.code == 130
    assert "interrupted while setting up, before the first step: nothing to save" in output
    assert "Traceback" not in output


@contextmanager
def started(command, log_path):
    """A process writing its output to ``log_path``, killed if still running when the block ends."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, env=cli_env(), stdout=log, stderr=subprocess.STDOUT, preexec_fn=with_default_sigint
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.slow
def test_ctrl_c_on_ns_train_leaves_a_loadable_checkpoint(tiny_scene, tiny_clip_config, tmp_path):
    run, log = run_dir(tmp_path), tmp_path / "ns-train.log"
    with started(cli_command(["ns-train", *long_run_args(tiny_scene, tiny_clip_config, tmp_path)]), log) as process:
        first_frame, deadline = run / "timelapse" / "step_000000000.png", time.monotonic() + 300
        while not first_frame.is_file():  # written after step 0: training is under way
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        returncode = process.wait(timeout=120)
    output = console_text(log.read_text())
    assert returncode == 130, output[-3000:]
    assert "stopped by SIGINT after step" in output and "Traceback" not in output
    steps = checkpoint_steps(run / "nerfstudio_models")
    assert len(steps) == 1 and f"after step {steps[0]}" in output
    assert load_run(run / "config.yml").step == steps[0]
    assert (run / "timelapse.gif").is_file()
