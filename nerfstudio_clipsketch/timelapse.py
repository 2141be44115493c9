"""A time-lapse of training: the sketch from one fixed view every N steps, as a GIF or MP4 at the end.

Each snapshot is written as a PNG as soon as it is taken (``<run>/timelapse/step_XXXXXXXXX.png``), so an
interrupted run keeps its frames; the animation (``<run>/timelapse.gif`` or ``.mp4``) is assembled from them when
training finishes or is stopped by Ctrl-C. MP4 needs an ffmpeg binary: the one on PATH, else the one the
``imageio-ffmpeg`` package ships; without either the animation is a GIF. :class:`TimeLapse` knows the sketch only
through a function that renders the view.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Literal

import numpy as np
import torch
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation
from nerfstudio.utils.rich_utils import CONSOLE
from PIL import Image
from rich.markup import escape
from torch import Tensor

from nerfstudio_clipsketch.model_config import ClipSketchConfigError


class TimeLapse:
    """Snapshots of one view during training, and the animation made from them.

    Args:
        render: renders the view now, RGB ``[H, W, 3]`` in [0, 1].
        output_dir: the run's folder; frames go to ``timelapse/`` in it, the animation beside.
        every: take a snapshot every this many steps (and at the last one).
        fmt: ``"gif"`` or ``"mp4"`` (mp4 needs an ffmpeg binary).
        fps: frames per second of the animation.
    """

    def __init__(
        self,
        render: Callable[[], Tensor],
        output_dir: Path,
        every: int,
        fmt: Literal["gif", "mp4"] = "gif",
        fps: float = 10.0,
    ) -> None:
        if every < 1:
            raise ValueError(f"time-lapse interval must be at least 1 step, got {every}")
        self.render = render
        self.frames_dir = Path(output_dir) / "timelapse"
        self.output_path = Path(output_dir) / f"timelapse.{fmt}"
        self.every = every
        self.fmt = fmt
        self.fps = fps

    @classmethod
    def for_model(cls, model, output_dir: Path) -> "TimeLapse":
        """The time-lapse a clipsketch model's settings ask for (``timelapse_every``, ``timelapse_view``,
        ``timelapse_format``): one of its training cameras, drawn as the viewer shows it (evaluation mode)."""
        config, cameras = model.config, model.train_cameras
        view = config.timelapse_view
        if not 0 <= view < len(cameras):
            raise ClipSketchConfigError(
                f"timelapse_view {view} is not a training camera index (0 to {len(cameras) - 1})"
            )
        camera = cameras[view : view + 1]

        @torch.no_grad()
        def render() -> Tensor:
            was_training = model.training
            model.eval()
            try:
                return model.get_outputs_for_camera(camera)["rgb"]
            finally:
                model.train(was_training)

        return cls(render, output_dir, config.timelapse_every, config.timelapse_format)

    def frame_path(self, step: int) -> Path:
        return self.frames_dir / f"step_{step:09d}.png"

    @torch.no_grad()
    def snapshot(self, step: int) -> None:
        """Render the view now (a training callback, between steps) and save it as the frame of ``step``."""
        pixels = (self.render().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        self.frames_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(self.frame_path(step))

    def finish(self, step: int) -> None:
        """The last step's frame (unless it was just taken), then the animation."""
        if not self.frame_path(step).is_file():
            self.snapshot(step)
        self.write()

    def training_callbacks(self) -> List[TrainingCallback]:
        """A snapshot every ``every`` steps, and the last frame and the animation when training ends."""
        return [
            TrainingCallback(
                [TrainingCallbackLocation.AFTER_TRAIN_ITERATION], self.snapshot, update_every_num_iters=self.every
            ),
            TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN], self.finish),
        ]

    def frames(self) -> List[np.ndarray]:
        return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(self.frames_dir.glob("step_*.png"))]

    def write(self) -> Path:
        """Assemble every saved snapshot into the animation; returns its path. An MP4 that cannot be written (no
        ffmpeg) becomes a GIF, with a warning: the time-lapse never ends a run."""
        frames = self.frames()
        if not frames:
            raise RuntimeError(f"No time-lapse frames in {self.frames_dir}")
        path = self.output_path
        if self.fmt == "mp4":
            try:
                self._write_mp4(frames)
            except (RuntimeError, OSError) as error:  # mediapy's errors when ffmpeg is missing or fails
                self.output_path.unlink(missing_ok=True)  # what ffmpeg wrote before it failed
                path = self.output_path.with_suffix(".gif")
                CONSOLE.print(
                    f"[yellow]Time-lapse: cannot write {escape(self.output_path.name)} ({escape(str(error))}); "
                    f"writing {escape(path.name)} instead (frames in {escape(str(self.frames_dir))}). MP4 needs an "
                    "ffmpeg binary on PATH, or the imageio-ffmpeg package.",
                    highlight=False,
                )
        if path.suffix == ".gif":
            images = [Image.fromarray(f) for f in frames]
            images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / self.fps), loop=0)
        CONSOLE.log(f"Time-lapse of {len(frames)} frames written to {path}")
        return path

    def _write_mp4(self, frames: List[np.ndarray]) -> None:
        import mediapy

        if not use_available_ffmpeg():
            raise RuntimeError("no ffmpeg binary on PATH and no imageio-ffmpeg package")
        mediapy.write_video(self.output_path, frames, fps=self.fps)


def use_available_ffmpeg() -> bool:
    """Whether mediapy can write videos: with the ffmpeg on PATH, or else with the binary the ``imageio-ffmpeg``
    package ships (mediapy is then pointed at it)."""
    import mediapy

    if mediapy.video_is_available():
        return True
    try:
        import imageio_ffmpeg

        mediapy.set_ffmpeg(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):  # not installed; or installed without its binary
        return False
    return mediapy.video_is_available()
