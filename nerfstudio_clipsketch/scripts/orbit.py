"""``clipsketch-orbit``: a fly-around camera path of a trained run, for ``ns-render camera-path``.

::

    clipsketch-orbit --load-config outputs/.../config.yml --output-path orbit.json --kind helix --seconds 8
    ns-render camera-path --load-config outputs/.../config.yml --camera-path-filename orbit.json \\
        --output-path renders/orbit.mp4

The path circles the point the training cameras look at, at their median distance
(:mod:`nerfstudio_clipsketch.orbit`), with their median vertical field of view.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import tyro
from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape

from nerfstudio_clipsketch.cameras import look_at_centre
from nerfstudio_clipsketch.orbit import OrbitKind, orbit_path, vertical_fov_degrees
from nerfstudio_clipsketch.scripts.common import ScriptError, check_config_path, cli, load_run


@dataclass
class OrbitPath:
    """Write a nerfstudio camera path (camera_path.json) that flies around a trained run's training cameras'
    centre. Render it with: ns-render camera-path --load-config CONFIG --camera-path-filename PATH."""

    load_config: Path
    """The run's config.yml (written by ns-train next to its checkpoints)."""
    output_path: Path
    """Camera path file to write (JSON); its folder is created if needed."""
    kind: OrbitKind = "orbit"
    """'orbit': a circle at the training cameras' median elevation; 'helix': the elevation rises through
    --elevation-range and comes back down while the camera circles."""
    seconds: float = 10.0
    """Video length in seconds."""
    fps: float = 30.0
    """Frames per second; the path has round(seconds * fps) cameras."""
    revolutions: float = 1.0
    """Turns around the centre over the whole video."""
    elevation_range: tuple[float, float] = (0.0, 45.0)
    """Lowest and highest elevation of the 'helix', in degrees above the horizontal plane through the centre."""
    width: int | None = None
    """Render width in pixels. Default: the training images' width, or the training aspect ratio at --height."""
    height: int | None = None
    """Render height in pixels. Default: the training images' height, or the training aspect ratio at --width."""

    def main(self) -> None:
        check_config_path(self.load_config)
        if self.output_path.is_dir():
            raise ScriptError(f"--output-path {str(self.output_path)!r} is a folder; give a file name like orbit.json.")
        for name, value in (("--width", self.width), ("--height", self.height)):
            if value is not None and value <= 0:
                raise ScriptError(f"{name} must be a positive number of pixels, got {value}")
        cameras = load_run(self.load_config).pipeline.datamanager.train_dataset.cameras
        cameras = cameras.reshape(-1).to("cpu")
        train_width, train_height = int(cameras.width[0]), int(cameras.height[0])
        width, height = self.width, self.height
        if width is None and height is None:
            width, height = train_width, train_height
        elif width is None:
            width = max(1, round(height * train_width / train_height))
        elif height is None:
            height = max(1, round(width * train_height / train_width))
        try:
            look_at_centre(cameras.camera_to_worlds)
        except ValueError as e:
            raise ScriptError(
                "The training cameras do not look at a common point (a forward-facing capture?), so there is no "
                f"centre to orbit ({e}). ns-render interpolate makes a path through the cameras themselves."
            ) from e
        try:
            path = orbit_path(
                cameras.camera_to_worlds,
                fov_degrees=vertical_fov_degrees(cameras.fy, cameras.height),
                width=width,
                height=height,
                kind=self.kind,
                seconds=self.seconds,
                fps=self.fps,
                revolutions=self.revolutions,
                elevation_range=self.elevation_range,
            )
        except ValueError as e:
            raise ScriptError(f"Cannot build the camera path: {e}") from e
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        self.output_path.write_text(json.dumps(path, indent=1) + "\n", encoding="utf-8")
        CONSOLE.print(
            f"[bold green]Wrote a camera path ({self.kind}, {len(path['camera_path'])} frames, {width}x{height}, "
            f"{self.seconds:g} s) to {escape(str(self.output_path))}",
            highlight=False,
        )


def entrypoint() -> None:
    """Entrypoint for use with pyproject scripts."""
    cli(tyro.conf.FlagConversionOff[OrbitPath])


if __name__ == "__main__":
    entrypoint()
