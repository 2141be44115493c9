"""A time-lapse of training: the sketch from one fixed training view every N steps, as a GIF or MP4 at the end.

Each snapshot is written as a PNG as soon as it is taken (``<run>/timelapse/step_XXXXXXXXX.png``), so an
interrupted run keeps its frames; the animation (``<run>/timelapse.gif`` or ``.mp4``) is assembled from them when
training finishes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Literal

import numpy as np
import torch
from nerfstudio.utils.rich_utils import CONSOLE
from PIL import Image

if TYPE_CHECKING:
    from nerfstudio_clipsketch.model import ClipSketchModel


class TimeLapse:
    """Snapshots of one view during training, and the animation made from them."""

    def __init__(
        self,
        model: "ClipSketchModel",
        camera,
        output_dir: Path,
        every: int,
        last_step: int,
        fmt: Literal["gif", "mp4"] = "gif",
        fps: float = 10.0,
    ) -> None:
        self.model = model
        self.camera = camera
        self.frames_dir = Path(output_dir) / "timelapse"
        self.output_path = Path(output_dir) / f"timelapse.{fmt}"
        self.every = every
        self.last_step = last_step
        self.fmt = fmt
        self.fps = fps

    @torch.no_grad()
    def snapshot(self, step: int) -> None:
        """Render the fixed view now (a training callback, between steps) and save it; assemble at the end."""
        if step % self.every != 0 and step != self.last_step:
            return
        was_training = self.model.training
        self.model.eval()
        rgb = self.model.get_outputs(self.camera.to(self.model.device))["rgb"]
        self.model.train(was_training)
        self.frames_dir.mkdir(parents=True, exist_ok=True)
        pixels = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        Image.fromarray(pixels).save(self.frames_dir / f"step_{step:09d}.png")
        if step == self.last_step:
            self.write()

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
