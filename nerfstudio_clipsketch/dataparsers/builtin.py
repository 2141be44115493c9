"""The built-in scene: a wireframe house inside a ring, drawn as dark strokes, so that ``ns-train clipsketch`` runs
with no ``--data`` at all.

The ground-truth sketch is 24 cubic Bézier curves (straight edges are cubics with collinear control points). They are
rendered with :func:`nerfstudio_clipsketch.rendering.render` from 50 cameras on the upper hemisphere (40 train, 5 val,
5 test, the same every time) and written in nerfstudio's Blender layout, so that ``blender-data`` reads it::

    transforms_{train,val,test}.json   camera_angle_x and frames[].transform_matrix (OpenGL camera-to-world)
    {train,val,test}/r_<i>.png          RGB images, white background
    curves.json                         the ground truth, a sketch JSON file (:mod:`nerfstudio_clipsketch.sketch`)
                                        in dataset coordinates (identity transform), curve names in its metadata

The scene is generated once into the user's cache folder and reused.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from jaxtyping import Float
from nerfstudio.utils.rich_utils import CONSOLE
from PIL import Image
from torch import Tensor

from nerfstudio_clipsketch.cameras import get_viewmats
from nerfstudio_clipsketch.curves import arc_length_samples, curve_lengths, evaluate_at
from nerfstudio_clipsketch.dataparsers import ClipSketchDataError
from nerfstudio_clipsketch.rendering import render
from nerfstudio_clipsketch.sketch import Sketch, SketchFormatError
from nerfstudio_clipsketch.strokes import stroke_gaussians, stroke_sigma

BUILTIN_SCENE_VERSION = "v2"
"""Bump when the scene changes, so that stale caches are not reused (v2: ground truth in the sketch JSON format)."""
NUM_VIEWS = 50
CAMERA_DISTANCE = 4.0
CAMERA_ANGLE_X = 0.6911112070083618
"""Horizontal field of view in radians, as in the NeRF synthetic scenes."""
STROKE_WIDTH_PX = 1.5
"""Stroke width at the object's centre, in pixels."""
STROKE_COLOR = (0.0, 0.0, 0.0)
BACKGROUND_COLOR = (1.0, 1.0, 1.0)
MIN_IMAGE_SIZE = 16


def _segment(a: Tuple[float, float, float], b: Tuple[float, float, float]) -> List[List[float]]:
    """A straight edge as a cubic: control points at 0, 1/3, 2/3 and 1 of the way."""
    pa, pb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return [(pa + (pb - pa) * k / 3.0).tolist() for k in range(4)]


def _quarter_arc(center: np.ndarray, radius: float, start: float) -> List[List[float]]:
    """A quarter circle in the plane z = center.z, from angle ``start`` (radians) counter-clockwise."""
    k = 4.0 / 3.0 * math.tan(math.pi / 8.0) * radius  # the usual cubic approximation of a quarter circle
    end = start + math.pi / 2.0
    p0 = center + radius * np.array([math.cos(start), math.sin(start), 0.0])
    p3 = center + radius * np.array([math.cos(end), math.sin(end), 0.0])
    p1 = p0 + k * np.array([-math.sin(start), math.cos(start), 0.0])
    p2 = p3 - k * np.array([-math.sin(end), math.cos(end), 0.0])
    return [p.tolist() for p in (p0, p1, p2, p3)]


def builtin_curves() -> Tuple[Float[Tensor, "num_curves 4 3"], List[str]]:
    """Control points (dataset coordinates, z up) and names of the built-in sketch's curves."""
    w, floor, eaves, ridge = 0.6, -0.7, 0.2, 0.75
    corners = {(sx, sy): (sx * w, sy * w) for sx in (-1, 1) for sy in (-1, 1)}
    curves, names = [], []
    square = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    for level, z in (("floor", floor), ("eaves", eaves)):
        for a, b in zip(square, square[1:] + square[:1]):
            curves.append(_segment((*corners[a], z), (*corners[b], z)))
            names.append(f"{level} edge {a}-{b}")
    for corner in square:
        curves.append(_segment((*corners[corner], floor), (*corners[corner], eaves)))
        names.append(f"wall edge {corner}")
    curves.append(_segment((-w, 0.0, ridge), (w, 0.0, ridge)))
    names.append("ridge")
    for sx in (-1, 1):
        for sy in (-1, 1):
            curves.append(_segment((sx * w, 0.0, ridge), (*corners[(sx, sy)], eaves)))
            names.append(f"roof edge {(sx, sy)}")
    door_x, door_top = 0.15, -0.2
    curves.append(_segment((-door_x, -w, floor), (-door_x, -w, door_top)))
    curves.append(_segment((-door_x, -w, door_top), (door_x, -w, door_top)))
    curves.append(_segment((door_x, -w, door_top), (door_x, -w, floor)))
    names += ["door left", "door top", "door right"]
    for i in range(4):
        curves.append(_quarter_arc(np.array([0.0, 0.0, floor]), 1.0, i * math.pi / 2.0))
        names.append(f"ring arc {i}")
    return torch.tensor(curves, dtype=torch.float32), names


def builtin_camera_to_worlds() -> Tuple[Float[Tensor, "num_views 3 4"], List[str]]:
    """OpenGL camera-to-world matrices of the scene's views, on a golden-angle spiral over the upper hemisphere,
    looking at the origin, and the split of each view (every tenth view from the fifth is val, from the tenth test)."""
    golden_angle = math.pi * (3.0 - math.sqrt(5.0))
    low, high = math.sin(math.radians(10.0)), math.sin(math.radians(70.0))
    poses, splits = [], []
    for i in range(NUM_VIEWS):
        elevation = math.asin(low + (high - low) * (i + 0.5) / NUM_VIEWS)
        azimuth = i * golden_angle
        position = CAMERA_DISTANCE * np.array(
            [math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation)]
        )
        backward = position / np.linalg.norm(position)  # OpenGL cameras look down -z
        right = np.cross([0.0, 0.0, 1.0], backward)
        right /= np.linalg.norm(right)
        up = np.cross(backward, right)
        poses.append(np.stack([right, up, backward, position], axis=1))
        splits.append("val" if i % 10 == 4 else "test" if i % 10 == 9 else "train")
    return torch.tensor(np.stack(poses), dtype=torch.float32), splits


def focal_length(image_size: int) -> float:
    """Focal length in pixels of the scene's square images."""
    return 0.5 * image_size / math.tan(0.5 * CAMERA_ANGLE_X)


def stroke_width(image_size: int) -> float:
    """Stroke width in world units: :data:`STROKE_WIDTH_PX` pixels at the camera distance."""
    return STROKE_WIDTH_PX * CAMERA_DISTANCE / focal_length(image_size)


def render_builtin_views(
    camera_to_worlds: Float[Tensor, "num_views 3 4"], image_size: int, chunk: int = 10
) -> Float[Tensor, "num_views height width 3"]:
    """Render the ground-truth sketch from the given cameras (CPU rasterizer, a few views at a time)."""
    control_points, _ = builtin_curves()
    sigma = stroke_sigma(stroke_width(image_size))
    # Gaussians one standard deviation apart along each curve: their sum is then uniform along the stroke to well
    # under a percent, and short curves get proportionally fewer of them.
    counts = (curve_lengths(control_points) / sigma).ceil().long().clamp_min(1) + 1
    means = evaluate_at(control_points, *arc_length_samples(control_points, counts))
    means, scales, opacities, colors = stroke_gaussians(means, sigma, 1.0, STROKE_COLOR)
    f = focal_length(image_size)
    K = torch.tensor([[f, 0.0, image_size / 2.0], [0.0, f, image_size / 2.0], [0.0, 0.0, 1.0]])
    images = []
    for start in range(0, camera_to_worlds.shape[0], chunk):
        viewmats = get_viewmats(camera_to_worlds[start : start + chunk])
        out = render(
            means,
            scales,
            opacities,
            colors,
            viewmats,
            K.expand(viewmats.shape[0], 3, 3),
            image_size,
            image_size,
            torch.tensor(BACKGROUND_COLOR),
            backend="torch",
        )
        images.append(out.rgb)
    return torch.cat(images).clamp(0.0, 1.0)


def write_builtin_scene(out_dir: Path, image_size: int = 224) -> None:
    """Render the built-in scene into ``out_dir`` (which must exist), in nerfstudio's Blender layout."""
    with torch.no_grad():
        camera_to_worlds, splits = builtin_camera_to_worlds()
        images = render_builtin_views(camera_to_worlds, image_size)
    pixels = (images * 255.0).round().to(torch.uint8).numpy()
    frames: Dict[str, List[Dict[str, Any]]] = {"train": [], "val": [], "test": []}
    for pose, split, image in zip(camera_to_worlds, splits, pixels):
        name = f"{split}/r_{len(frames[split])}"
        (out_dir / split).mkdir(exist_ok=True)
        Image.fromarray(image).save(out_dir / f"{name}.png")
        matrix = torch.cat([pose, torch.tensor([[0.0, 0.0, 0.0, 1.0]])]).tolist()
        frames[split].append({"file_path": f"./{name}", "transform_matrix": matrix})
    for split, split_frames in frames.items():
        meta = {"camera_angle_x": CAMERA_ANGLE_X, "frames": split_frames}
        (out_dir / f"transforms_{split}.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    control_points, names = builtin_curves()
    ground_truth = Sketch(
        control_points=control_points,
        degree=control_points.shape[1] - 1,
        stroke_width=stroke_width(image_size),
        stroke_color=STROKE_COLOR,
        background=BACKGROUND_COLOR,
        metadata={"names": names, "coordinates": "dataset"},
    )
    ground_truth.to_json(out_dir / "curves.json")


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/nerfstudio-clipsketch``, or ``~/.cache/nerfstudio-clipsketch``."""
    cache_home = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache_home) if cache_home else Path.home() / ".cache"
    return base / "nerfstudio-clipsketch"


def ensure_builtin_scene(root: Optional[Path] = None, image_size: int = 224) -> Path:
    """The built-in scene's folder, generated first if it is not cached yet.

    Generation writes into a temporary folder next to the final one and renames it, so an interrupted or concurrent
    run never leaves a half-written scene behind.

    Args:
        root: Cache folder that holds the scenes; :func:`default_cache_root` by default.
        image_size: Width and height of the images in pixels.

    Returns:
        ``root / "builtin-<version>-<image_size>px"``.
    """
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"The built-in scene's image size must be at least {MIN_IMAGE_SIZE} pixels, got {image_size}.")
    root = Path(root) if root is not None else default_cache_root()
    scene_dir = root / f"builtin-{BUILTIN_SCENE_VERSION}-{image_size}px"
    if scene_dir.is_dir():
        return scene_dir
    root.mkdir(parents=True, exist_ok=True)
    CONSOLE.log(f"Generating the built-in scene ({NUM_VIEWS} views, {image_size}x{image_size}) in {scene_dir}")
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{scene_dir.name}-", dir=root))
    try:
        write_builtin_scene(tmp_dir, image_size)
        tmp_dir.chmod(0o755)
        try:
            tmp_dir.rename(scene_dir)
        except OSError:
            if not scene_dir.is_dir():  # not a concurrent run that finished first
                raise
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return scene_dir


def load_ground_truth_curves(path: Path) -> Sketch:
    """A scene's ground-truth sketch: ``curves.json`` in ``path`` (or the file itself), whose control points are in
    dataset coordinates.

    Raises:
        ClipSketchDataError: the file is missing or not a sketch JSON file.
    """
    path = Path(path)
    path = path / "curves.json" if path.is_dir() else path
    if not path.is_file():
        raise ClipSketchDataError(f"Ground-truth curves file {path} does not exist.")
    try:
        return Sketch.from_json(path)
    except SketchFormatError as e:
        raise ClipSketchDataError(f"Ground-truth curves file {path}: {e}") from e
