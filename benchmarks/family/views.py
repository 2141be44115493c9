"""Cameras posed as ABC-NEF poses them, and the ``transforms_<split>.json`` that describe them.

Read from ABC-NEF's ``00000952`` (``/work/shared/data/abcnef``): ``camera_angle_x`` 0.6911 rad (39.6 degrees); every
camera centre 4.0 from the world *origin*, not from the object; every optical axis through the unit cube's centre
(0.5, 0.5, 0.5); world up +z with no roll (the camera's x axis is horizontal); elevations within about +-70 degrees.
``transform_matrix`` is the OpenGL camera-to-world (x right, y up, z backward); ``file_path`` is
``./<split>/<i>_colors`` for the image ``<split>/<i>_colors.png``.
"""

from __future__ import annotations

import math

import numpy as np

CAMERA_ANGLE_X = 0.6911110281944275
"""ABC-NEF's horizontal field of view, radians."""
CAMERA_DISTANCE = 4.0
"""Distance of every camera centre from the world origin (ABC-NEF's)."""
TARGET = np.array([0.5, 0.5, 0.5])
"""Where every camera looks: the centre of the unit cube, where the part's bbox centre is."""
UP = np.array([0.0, 0.0, 1.0])
"""World up (ABC-NEF's): +z."""
MAX_ELEVATION_DEG = 70.0
TRAIN_VIEWS, VAL_VIEWS = 50, 4
VAL_SEED = 4


def look_at(eye: np.ndarray, target: np.ndarray = TARGET, up: np.ndarray = UP) -> np.ndarray:
    """``[4, 4]`` OpenGL camera-to-world of a camera at ``eye`` looking at ``target``, its x axis horizontal."""
    back = np.asarray(eye, dtype=np.float64) - target
    back /= np.linalg.norm(back)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, np.cross(back, right), back, eye
    return c2w


def directions(count: int, seed: int = 0, spiral: bool = True) -> np.ndarray:
    """``[count, 3]`` unit vectors between elevations +-:data:`MAX_ELEVATION_DEG`: an even Fibonacci spiral (turned
    by a seeded angle), or, with ``spiral=False``, uniform at random over that band of the sphere."""
    rng = np.random.default_rng(seed)
    top = math.sin(math.radians(MAX_ELEVATION_DEG))
    if spiral:
        z = top * (1 - 2 * (np.arange(count) + 0.5) / count)
        azimuth = np.arange(count) * math.pi * (3 - math.sqrt(5)) + rng.uniform(0, 2 * math.pi)
    else:
        z = rng.uniform(-top, top, count)
        azimuth = rng.uniform(0, 2 * math.pi, count)
    ring = np.sqrt(1 - z**2)
    return np.stack([ring * np.cos(azimuth), ring * np.sin(azimuth), z], -1)


def poses(split: str, count: int) -> np.ndarray:
    """``[count, 4, 4]`` camera-to-worlds: ``train`` on a spiral, ``val`` at random (seed :data:`VAL_SEED`)."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    eyes = CAMERA_DISTANCE * directions(count, seed=0 if split == "train" else VAL_SEED, spiral=split == "train")
    return np.stack([look_at(eye) for eye in eyes])


def focal_length(width: int, camera_angle_x: float = CAMERA_ANGLE_X) -> float:
    """Focal length in pixels, as nerfstudio's Blender parser computes it."""
    return 0.5 * width / math.tan(0.5 * camera_angle_x)


def image_name(split: str, index: int) -> str:
    return f"{split}/{index}_colors.png"


def transforms(split: str, camera_to_worlds: np.ndarray, width: int) -> dict:
    """The ``transforms_<split>.json`` content. ``camera_intrinsics`` is informative (the parser derives the focal
    length from ``camera_angle_x``): its principal point is the image centre, where the renderer puts it."""
    focal = focal_length(width)
    intrinsics = [[focal, 0.0, width / 2.0], [0.0, focal, width / 2.0], [0.0, 0.0, 1.0]]
    frames: list[dict] = [
        {
            "file_path": "./" + image_name(split, i).removesuffix(".png"),
            "rotation": 0.0,
            "camera_intrinsics": intrinsics,
            "transform_matrix": c2w.tolist(),
        }
        for i, c2w in enumerate(camera_to_worlds)
    ]
    return {"camera_angle_x": CAMERA_ANGLE_X, "frames": frames}
