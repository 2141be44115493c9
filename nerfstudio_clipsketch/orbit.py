"""Fly-around camera paths for ``ns-render camera-path``, built from the training cameras.

The training cameras define the path: its centre is the point they all look at
(:func:`~nerfstudio_clipsketch.cameras.look_at_centre`, the
least-squares intersection of their optical axes), its radius the median camera distance to that centre, its up
the mean camera up vector. Two kinds:

- ``"orbit"``: a circle at the training cameras' median elevation, ``revolutions`` turns;
- ``"helix"``: a semi-helical fly-around: the elevation rises from the low to the high bound of ``elevation_range``
  and comes back down (a raised cosine, so it loops smoothly) while the azimuth sweeps ``revolutions`` turns.

Both start at the azimuth of the first training camera, and every camera looks at the centre with the up vector
upright. Poses are nerfstudio camera-to-world matrices (OpenGL axes: x right, y up, looking down -z) in the same
(normalised) frame as the training cameras, which is the frame ``ns-render`` renders in.

The camera path file
--------------------
:func:`orbit_path` returns the dictionary that nerfstudio's viewer writes as ``camera_path.json``. Of it,
``ns-render camera-path`` (nerfstudio 1.1, ``scripts/render.py`` and ``cameras/camera_paths.get_path_from_json``)
reads ``seconds`` (the video's frame rate is ``len(camera_path) / seconds``), ``render_height``, ``render_width``,
``camera_type`` (optional, perspective by default), an optional ``crop``, and per frame ``camera_to_world`` (the 4x4
matrix flattened row-major) and ``fov`` (the *vertical* field of view in degrees: ``fx = fy = (H / 2) / tan(fov /
2)``, principal point at the image centre). ``fps`` and each frame's ``aspect`` are for the viewer, which also needs
``keyframes`` to load the path for editing; those are written too (a subset of the frames, as a cyclic spline).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_clipsketch.cameras import look_at_centre

OrbitKind = Literal["orbit", "helix"]

_KEYFRAMES_PER_REVOLUTION = 8


def vertical_fov_degrees(fy: Tensor | float, image_height: Tensor | float) -> float:
    """Median vertical field of view, in degrees, of cameras with focal length ``fy`` and image height (pixels):
    ``2 atan(H / (2 fy))``, the ``fov`` a camera path needs to reproduce that focal length (nerfstudio ``Cameras``
    give ``cameras.fy`` and ``cameras.height``)."""
    fy_t = torch.as_tensor(fy, dtype=torch.float64).flatten()
    h_t = torch.as_tensor(image_height, dtype=torch.float64).flatten()
    if bool((fy_t <= 0).any()) or bool((h_t <= 0).any()):
        raise ValueError(f"focal lengths and image heights must be positive, got fy={fy!r}, height={image_height!r}")
    fov = torch.rad2deg(2.0 * torch.atan(h_t / (2.0 * fy_t)))
    return float(fov.median())


def _look_at(positions: Tensor, centre: Tensor, up: Tensor) -> Tensor:
    """OpenGL camera-to-world matrices at ``positions`` looking at ``centre`` with ``up`` upright."""
    z = positions - centre
    z = z / z.norm(dim=-1, keepdim=True)
    x = torch.linalg.cross(up.expand_as(z), z)
    x = x / x.norm(dim=-1, keepdim=True)
    y = torch.linalg.cross(z, x)
    return torch.stack([x, y, z, positions], dim=-1)


def orbit_poses(
    camera_to_worlds: Float[Tensor, "num_cameras 3 4"],
    num_frames: int,
    kind: OrbitKind = "orbit",
    revolutions: float = 1.0,
    elevation_range: tuple[float, float] = (0.0, 45.0),
) -> Float[Tensor, "num_frames 3 4"]:
    """Camera-to-world matrices (OpenGL, nerfstudio) of a fly-around of the training cameras' centre.

    Frame ``i`` is at path parameter ``s = i / num_frames`` (the last frame stops one step short of the first, so a
    whole number of revolutions loops seamlessly): azimuth ``az0 + 2 pi revolutions s``, and elevation the training
    cameras' median (``"orbit"``) or ``lo + (hi - lo) (1 - cos 2 pi s) / 2`` (``"helix"``).

    Args:
        camera_to_worlds: Training cameras, nerfstudio's ``[N, 3, 4]`` OpenGL camera-to-world matrices.
        num_frames: Number of poses.
        kind: ``"orbit"`` or ``"helix"``.
        revolutions: Turns around the centre over the whole path.
        elevation_range: ``(low, high)`` elevation in degrees above the plane through the centre normal to up,
            for ``"helix"``; both within (-90, 90).
    """
    if kind not in ("orbit", "helix"):
        raise ValueError(f"Unknown camera path kind {kind!r}; expected 'orbit' or 'helix'")
    if isinstance(num_frames, bool) or int(num_frames) != num_frames or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    low, high = (float(e) for e in elevation_range)
    if not -90.0 < low <= high < 90.0:
        raise ValueError(f"elevation_range must satisfy -90 < low <= high < 90 degrees, got {elevation_range!r}")
    dtype = camera_to_worlds.dtype
    c2w = camera_to_worlds.detach().double()
    centre = look_at_centre(c2w)
    offsets = c2w[:, :3, 3] - centre
    distances = offsets.norm(dim=-1)
    radius = distances.median()
    up = c2w[:, :3, 1].mean(0)
    if up.norm() < 1e-6:
        raise ValueError("the training cameras' up vectors cancel out; there is no mean up direction")
    up = up / up.norm()

    # Azimuth 0 is the first camera's direction from the centre, projected onto the horizontal plane.
    e1 = offsets[0] - (offsets[0] @ up) * up
    if e1.norm() < 1e-6 * max(float(radius), 1e-12):
        axis = torch.eye(3, dtype=c2w.dtype, device=c2w.device)[torch.argmin(up.abs())]
        e1 = axis - (axis @ up) * up
    e1 = e1 / e1.norm()
    e2 = torch.linalg.cross(up, e1)

    s = torch.arange(int(num_frames), dtype=c2w.dtype, device=c2w.device) / num_frames
    azimuth = 2.0 * math.pi * revolutions * s
    if kind == "orbit":
        training_elevation = torch.asin((offsets @ up / distances.clamp_min(1e-12)).clamp(-1.0, 1.0)).median()
        # Straight above or below the centre the look-at frame has no defined heading.
        elevation = torch.full_like(s, float(training_elevation)).clamp(-math.radians(85.0), math.radians(85.0))
    else:
        low_r, high_r = math.radians(low), math.radians(high)
        elevation = low_r + (high_r - low_r) * 0.5 * (1.0 - torch.cos(2.0 * math.pi * s))
    horizontal = torch.cos(azimuth)[:, None] * e1 + torch.sin(azimuth)[:, None] * e2
    directions = torch.cos(elevation)[:, None] * horizontal + torch.sin(elevation)[:, None] * up
    positions = centre + radius * directions
    return _look_at(positions, centre, up).to(dtype)


def _flatten_pose(pose: Tensor) -> list[float]:
    matrix = torch.eye(4, dtype=torch.float64)
    matrix[:3] = pose.detach().cpu().double()
    return matrix.flatten().tolist()


def orbit_path(
    camera_to_worlds: Float[Tensor, "num_cameras 3 4"],
    *,
    fov_degrees: float,
    width: int,
    height: int,
    kind: OrbitKind = "orbit",
    seconds: float = 10.0,
    fps: float = 30.0,
    revolutions: float = 1.0,
    elevation_range: tuple[float, float] = (0.0, 45.0),
) -> dict[str, Any]:
    """A ``camera_path.json`` dictionary for ``ns-render camera-path`` (format in the module docstring).

    Args:
        camera_to_worlds: Training cameras, ``[N, 3, 4]`` OpenGL camera-to-world matrices (normalised frame).
        fov_degrees: Vertical field of view, e.g. :func:`vertical_fov_degrees` of the training cameras.
        width, height: Render size in pixels.
        kind: ``"orbit"`` or ``"helix"`` (see :func:`orbit_poses`).
        seconds: Video length.
        fps: Frames per second; the path has ``round(seconds * fps)`` cameras.
        revolutions: Turns around the centre.
        elevation_range: ``(low, high)`` elevation in degrees for ``"helix"``.

    Returns:
        A JSON-serialisable dict; write it with ``json.dump``.
    """
    if isinstance(width, bool) or isinstance(height, bool) or int(width) != width or int(height) != height:
        raise ValueError(f"render size must be integers, got {width!r} x {height!r}")
    if width <= 0 or height <= 0:
        raise ValueError(f"render size must be positive, got {width} x {height}")
    if not 0.0 < fov_degrees < 180.0:
        raise ValueError(f"fov_degrees must be in (0, 180), got {fov_degrees!r}")
    if not (seconds > 0 and fps > 0 and math.isfinite(seconds * fps)):
        raise ValueError(f"seconds and fps must be positive, got seconds={seconds!r}, fps={fps!r}")
    num_frames = round(seconds * fps)
    if num_frames < 1:
        raise ValueError(f"seconds * fps = {seconds * fps} gives no frames")
    poses = orbit_poses(camera_to_worlds, num_frames, kind, revolutions, elevation_range)
    aspect = width / height
    frames = [{"camera_to_world": _flatten_pose(p), "fov": float(fov_degrees), "aspect": aspect} for p in poses]
    num_keyframes = min(num_frames, max(4, math.ceil(_KEYFRAMES_PER_REVOLUTION * abs(revolutions))))
    step = num_frames / num_keyframes
    keyframes = [
        {"matrix": frames[int(k * step)]["camera_to_world"], "fov": float(fov_degrees), "aspect": aspect}
        for k in range(num_keyframes)
    ]
    return {
        "camera_type": "perspective",
        "render_height": int(height),
        "render_width": int(width),
        "fps": fps,
        "seconds": float(seconds),
        "camera_path": frames,
        "keyframes": keyframes,
        "default_fov": float(fov_degrees),
        "default_transition_sec": float(seconds) / num_keyframes,
        "is_cycle": True,
        "smoothness_value": 0.5,
    }
