"""Videos of a trained run: ``clipsketch-orbit`` + ``ns-render camera-path``, and ``ns-render interpolate`` (console
scripts, marked ``slow``); ``clipsketch-orbit``'s bad input in-process."""

from __future__ import annotations

import json
import os
import shutil
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from nerfstudio.cameras.cameras import Cameras

from nerfstudio_clipsketch.scripts import orbit as orbit_script
from tests.helpers import run_cli

av = pytest.importorskip("av")


@pytest.fixture
def ffmpeg_on_path(tmp_path, monkeypatch):
    """ns-render (through mediapy) runs the ``ffmpeg`` found on PATH. Without a system one, use the binary that the
    ``imageio-ffmpeg`` test dependency ships, linked under the name ``ffmpeg`` (run_cli passes os.environ on)."""
    if shutil.which("ffmpeg") is not None:
        return
    import imageio_ffmpeg

    bin_dir = tmp_path / "ffmpeg-bin"
    bin_dir.mkdir()
    (bin_dir / "ffmpeg").symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")


def _frames(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def _check(result) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.slow
def test_orbit_camera_path_renders_with_ns_render(trained_run, tmp_path, ffmpeg_on_path):
    path = tmp_path / "paths" / "helix.json"
    orbit = ["--kind", "helix", "--elevation-range", "10", "40", "--seconds", 1, "--fps", 4]
    _check(run_cli(["clipsketch-orbit", "--load-config", trained_run, "--output-path", path, *orbit, "--width", 48]))
    camera_path = json.loads(path.read_text())
    assert len(camera_path["camera_path"]) == 4
    # --width alone keeps the training images' aspect ratio (64x64 here).
    assert (camera_path["render_width"], camera_path["render_height"]) == (48, 48)

    video = tmp_path / "helix.mp4"
    render = ["--camera-path-filename", path, "--output-path", video]
    _check(run_cli(["ns-render", "camera-path", "--load-config", trained_run, *render]))
    frames = _frames(video)
    assert len(frames) == 4
    assert all(frame.shape == (48, 48, 3) for frame in frames)
    # Each view circles the sketch and looks at it: dark strokes on the white background in every frame.
    assert all(frame.min() < 100 and np.median(frame) > 200 for frame in frames), [f.min() for f in frames]


@pytest.mark.slow
def test_ns_render_interpolate_between_test_cameras(trained_run, tmp_path, ffmpeg_on_path):
    video = tmp_path / "interp.mp4"
    args = ["--output-path", video, "--frame-rate", 4, "--interpolation-steps", 1]
    _check(run_cli(["ns-render", "interpolate", "--load-config", trained_run, *args]))
    frames = _frames(video)
    # One frame per step from each of the 5 test cameras to the next: (5 - 1) * 1.
    assert len(frames) == 4
    assert frames[0].shape == (64, 64, 3)


def _forward_facing_cameras() -> Cameras:
    """Four cameras side by side, all looking down -z: their axes never meet."""
    c2w = torch.eye(4)[:3].repeat(4, 1, 1)
    c2w[:, 0, 3] = torch.tensor([-1.5, -0.5, 0.5, 1.5])
    return Cameras(camera_to_worlds=c2w, fx=50.0, fy=50.0, cx=32.0, cy=32.0, width=64, height=64)


@pytest.mark.parametrize("problem", ["missing config", "output path is a folder", "forward-facing"])
def test_orbit_bad_input_is_one_clear_message(problem, tmp_path, monkeypatch, capsys):
    config, output = tmp_path / "config.yml", tmp_path / "orbit.json"
    config.write_text("")
    if problem == "missing config":
        config, expected = tmp_path / "no-such-run.yml", "does not exist"
    elif problem == "output path is a folder":
        output.mkdir()
        expected = "is a folder"
    else:
        expected = "do not look at a common point (a forward-facing capture?)"
    train_dataset = SimpleNamespace(cameras=_forward_facing_cameras())
    pipeline = SimpleNamespace(datamanager=SimpleNamespace(train_dataset=train_dataset))
    monkeypatch.setattr(orbit_script, "load_run", lambda _: SimpleNamespace(pipeline=pipeline))
    monkeypatch.setattr(sys, "argv", ["clipsketch-orbit", "--load-config", str(config), "--output-path", str(output)])
    with pytest.raises(SystemExit) as exit_info:
        orbit_script.entrypoint()
    assert exit_info.value.code == 1
    out = " ".join(capsys.readouterr().out.split())
    assert expected in out and "Traceback" not in out
    assert not output.is_file()
