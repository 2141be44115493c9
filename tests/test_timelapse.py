"""The time-lapse's animation: MP4 with the ffmpeg on PATH or imageio-ffmpeg's, else a GIF with a warning, and never
at the cost of the run's checkpoint or frames."""

from __future__ import annotations

import sys

import pytest
import torch
from PIL import Image

from nerfstudio_clipsketch.checkpoints import checkpoint_steps
from nerfstudio_clipsketch.timelapse import TimeLapse
from tests.helpers import console_text, run_dir, train_args, train_in_process

NUM_FRAMES = 3


@pytest.fixture
def no_ffmpeg_on_path(tmp_path, monkeypatch):
    """No ``ffmpeg`` on PATH, and mediapy looking for it there (as in a fresh process)."""
    import mediapy

    monkeypatch.setenv("PATH", str(tmp_path / "no-programs-here"))
    monkeypatch.setattr(mediapy._config, "ffmpeg_name_or_path", "ffmpeg")


@pytest.fixture
def no_imageio_ffmpeg(monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import imageio_ffmpeg raises ImportError


def snapshots(tmp_path, fmt: str) -> TimeLapse:
    """A time-lapse of NUM_FRAMES grey frames, each lighter than the last."""
    shades = iter(torch.linspace(0.2, 0.8, NUM_FRAMES))
    timelapse = TimeLapse(lambda: torch.full((32, 32, 3), float(next(shades))), tmp_path, every=1, fmt=fmt, fps=4)
    for step in range(NUM_FRAMES):
        timelapse.snapshot(step)
    return timelapse


def test_mp4_uses_imageio_ffmpegs_binary_when_none_is_on_path(no_ffmpeg_on_path, tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    av = pytest.importorskip("av")
    path = snapshots(tmp_path, "mp4").write()
    assert path == tmp_path / "timelapse.mp4"
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == NUM_FRAMES and frames[0].mean() < frames[-1].mean()


def test_without_any_ffmpeg_an_mp4_timelapse_is_written_as_a_gif(
    no_ffmpeg_on_path, no_imageio_ffmpeg, tmp_path, capsys
):
    path = snapshots(tmp_path, "mp4").write()
    assert path == tmp_path / "timelapse.gif" and not (tmp_path / "timelapse.mp4").exists()
    with Image.open(path) as gif:
        assert gif.n_frames == NUM_FRAMES
    assert len(list((tmp_path / "timelapse").glob("step_*.png"))) == NUM_FRAMES
    output = console_text(capsys.readouterr().out)
    assert "cannot write timelapse.mp4" in output and "writing timelapse.gif instead" in output


def test_without_ffmpeg_training_keeps_its_checkpoint_and_frames(
    no_ffmpeg_on_path, no_imageio_ffmpeg, tiny_scene, tiny_clip_config, tmp_path, capsys
):
    args = train_args(tiny_scene, tiny_clip_config, tmp_path, steps=3)
    train_in_process([*args, "--pipeline.model.timelapse-format", "mp4"])
    run = run_dir(tmp_path)
    assert checkpoint_steps(run / "nerfstudio_models") == [2]
    frames = sorted(p.name for p in (run / "timelapse").glob("step_*.png"))
    assert frames == ["step_000000000.png", "step_000000002.png"]
    assert (run / "timelapse.gif").is_file() and not (run / "timelapse.mp4").exists()
    assert "Traceback" not in capsys.readouterr().out
