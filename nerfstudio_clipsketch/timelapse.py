"""A time-lapse of training: the sketch from one fixed view every N steps, as a GIF or MP4 at the end.

Each snapshot is written as a PNG as soon as it is taken (``<run>/timelapse/step_XXXXXXXXX.png``), so an
interrupted run keeps its frames; the animation (``<run>/timelapse.gif`` or ``.mp4``) is assembled from them when
training finishes. :class:`TimeLapse` knows the sketch only through a function that renders the view.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Literal

import numpy as np
import torch
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation
from nerfstudio.utils.rich_utils import CONSOLE
from PIL import Image
from torch import Tensor


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
        """Assemble every saved snapshot into the animation."""
        frames = self.frames()
        if not frames:
            raise RuntimeError(f"No time-lapse frames in {self.frames_dir}")
        if self.fmt == "gif":
            images = [Image.fromarray(f) for f in frames]
            images[0].save(
                self.output_path, save_all=True, append_images=images[1:], duration=int(1000 / self.fps), loop=0
            )
        else:
            import mediapy

            try:
                mediapy.write_video(self.output_path, frames, fps=self.fps)
            except RuntimeError as error:  # mediapy's message when there is no ffmpeg binary
                CONSOLE.print(f"[bold red]Time-lapse: cannot write MP4 ({error}); frames are in {self.frames_dir}")
                raise
        CONSOLE.log(f"Time-lapse of {len(frames)} frames written to {self.output_path}")
        return self.output_path
