"""Metrics for a sketch's geometry: how close its curves lie to ground-truth curves or to the object's surface.

Everything here is a pure function of point clouds (numpy arrays or tensors, ``[M, 3]``) or images, so the same
numbers come out of a script, a notebook or a test. Distances are Euclidean, in the units of the points given;
thresholds ``tau`` are fractions of the ground truth's bounding-box diagonal, so results compare across scenes of
different sizes, and every result is keyed by the fraction (``"precision@1%"``).

Nearest-neighbour distances come from a k-d tree, so two clouds of 1e5 points each need a few megabytes, not the 40 GB
of a full distance matrix, and well under a second.

Ground-truth surfaces come from per-pixel world-position images (:func:`load_world_pos_points`): Blender writes, on
silhouettes, a blend of the surface position and the background's ``(0, 0, 0)``, so a pixel is kept only if its
position projects back onto its own pixel centre.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_clipsketch.cameras import get_viewmats

PointsLike = Union[np.ndarray, Tensor]
"""An ``[M, 3]`` point cloud, as a numpy array or a tensor (on any device; metrics run on the CPU)."""

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.005, 0.01, 0.02)
"""Distance thresholds as fractions of the ground truth's bounding-box diagonal: 0.5 %, 1 % and 2 %."""

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".exr")


def _as_points(points: PointsLike, name: str) -> Tensor:
    """A float64 CPU tensor ``[M, 3]``, or a ValueError naming ``name`` and its shape."""
    tensor = torch.as_tensor(points).detach().to("cpu", torch.float64)
    if tensor.dim() != 2 or tensor.shape[1] != 3:
        raise ValueError(f"{name} must be an [M, 3] point cloud, got shape {tuple(tensor.shape)}")
    if tensor.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(tensor.shape)}); metrics need at least one point")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} holds {int((~torch.isfinite(tensor)).any(-1).sum())} non-finite points")
    return tensor


def _check_fractions(thresholds: Sequence[float]) -> tuple[float, ...]:
    fractions = tuple(float(f) for f in thresholds)
    if not fractions or any(not (0.0 < f < 1.0) for f in fractions):
        raise ValueError(f"thresholds must be fractions of the bounding-box diagonal in (0, 1), got {thresholds!r}")
    return fractions


def threshold_label(fraction: float) -> str:
    """How a threshold is written in result keys: ``0.005 -> "0.5%"``, ``0.01 -> "1%"``."""
    return f"{100.0 * fraction:g}%"


def bbox_diagonal(points: PointsLike) -> float:
    """Length of the diagonal of the axis-aligned bounding box of ``points`` ``[M, 3]``."""
    p = _as_points(points, "points")
    return float((p.max(0).values - p.min(0).values).norm())


def absolute_thresholds(
    reference_points: PointsLike, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> dict[str, float]:
    """Absolute distances ``tau = fraction * diagonal`` of ``reference_points``' bounding box, keyed by label.

    >>> absolute_thresholds(np.array([[0.0, 0, 0], [3, 4, 0]]), (0.01,))
    {'1%': 0.05}
    """
    diagonal = bbox_diagonal(reference_points)
    return {threshold_label(f): f * diagonal for f in _check_fractions(thresholds)}


def nearest_distances(query: PointsLike, reference: PointsLike) -> Float[Tensor, "num_query"]:
    """Exact Euclidean distance from every ``query`` point to its nearest ``reference`` point (float64, CPU).

    Uses a k-d tree (``scipy.spatial.cKDTree``; SciPy comes with nerfstudio through scikit-image): O((M + K) log K)
    time and O(K) memory, so 1e5 x 1e5 points take a fraction of a second, where chunked brute force
    (``torch.cdist`` in blocks) takes tens of seconds to minutes on two cores.
    """
    from scipy.spatial import cKDTree  # imported here: only evaluation needs SciPy

    x = _as_points(query, "query").numpy()
    y = _as_points(reference, "reference").numpy()
    distances, _ = cKDTree(y).query(x, k=1)
    return torch.from_numpy(distances)


def curve_metrics(
    pred_points: PointsLike, gt_points: PointsLike, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> dict[str, float]:
    """Compare points sampled along predicted curves with points sampled along ground-truth curves.

    Both clouds should be sampled densely and evenly in arc length (spacing well below the smallest ``tau``), so
    that point shares approximate length shares.

    Args:
        pred_points: ``[M, 3]`` samples of the predicted curves.
        gt_points: ``[K, 3]`` samples of the ground-truth curves; their bounding-box diagonal sets the thresholds.
        thresholds: Fractions of that diagonal.

    Returns:
        ``chamfer``: the symmetric, unsquared chamfer distance, the mean of the two directed mean nearest-neighbour
        distances, ``0.5 * (mean_p min_g |p - g| + mean_g min_p |g - p|)``, in the points' units;
        ``chamfer/diag``: the same divided by the diagonal; ``diagonal``; and, for each threshold label ``T``,
        ``tau@T`` (the absolute distance), ``precision@T`` (share of predicted samples within ``tau`` of the ground
        truth), ``recall@T`` (share of ground-truth samples within ``tau`` of the prediction) and ``f1@T`` (their
        harmonic mean, 0 when both are 0).
    """
    pred = _as_points(pred_points, "pred_points")
    gt = _as_points(gt_points, "gt_points")
    taus = absolute_thresholds(gt, thresholds)
    pred_to_gt = nearest_distances(pred, gt)
    gt_to_pred = nearest_distances(gt, pred)
    diagonal = bbox_diagonal(gt)
    chamfer = 0.5 * (pred_to_gt.mean() + gt_to_pred.mean()).item()
    result = {
        "chamfer": chamfer,
        "chamfer/diag": chamfer / diagonal if diagonal > 0 else math.nan,
        "diagonal": diagonal,
    }
    for label, tau in taus.items():
        precision = (pred_to_gt <= tau).double().mean().item()
        recall = (gt_to_pred <= tau).double().mean().item()
        f1 = 2.0 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        result.update({f"tau@{label}": tau, f"precision@{label}": precision, f"recall@{label}": recall})
        result[f"f1@{label}"] = f1
    return result


def surface_metrics(
    curve_points: PointsLike, surface_points: PointsLike, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> dict[str, float]:
    """How well a sketch's curves lie on, and spread over, an object's surface.

    Args:
        curve_points: ``[M, 3]`` samples along the sketch's curves (evenly in arc length).
        surface_points: ``[K, 3]`` samples of the visible surface, e.g. from :func:`load_world_pos_points`; their
            bounding-box diagonal sets the thresholds.
        thresholds: Fractions of that diagonal.

    Returns:
        ``mean_distance`` and ``p95_distance``: mean and 95th percentile of the curve-to-surface distance (from each
        curve sample to its nearest surface point), in the points' units; the same divided by the diagonal
        (``mean_distance/diag``, ``p95_distance/diag``); ``diagonal``; and, per threshold label ``T``, ``tau@T``,
        ``precision@T`` (share of curve samples within ``tau`` of the surface) and ``coverage@T`` (share of surface
        points within ``tau`` of some curve sample — a sketch is lines, so this stays small even for a good one;
        compare it between sketches, not with 1).
    """
    curve = _as_points(curve_points, "curve_points")
    surface = _as_points(surface_points, "surface_points")
    taus = absolute_thresholds(surface, thresholds)
    curve_to_surface = nearest_distances(curve, surface)
    surface_to_curve = nearest_distances(surface, curve)
    diagonal = bbox_diagonal(surface)
    mean = curve_to_surface.mean().item()
    p95 = float(np.percentile(curve_to_surface.numpy(), 95))  # torch.quantile refuses more than 2^24 values
    result = {
        "mean_distance": mean,
        "p95_distance": p95,
        "mean_distance/diag": mean / diagonal if diagonal > 0 else math.nan,
        "p95_distance/diag": p95 / diagonal if diagonal > 0 else math.nan,
        "diagonal": diagonal,
    }
    for label, tau in taus.items():
        result[f"tau@{label}"] = tau
        result[f"precision@{label}"] = (curve_to_surface <= tau).double().mean().item()
        result[f"coverage@{label}"] = (surface_to_curve <= tau).double().mean().item()
    return result


def read_exr(path: Union[str, Path]) -> np.ndarray:
    """A float EXR image as ``[H, W, channels]`` float32 in the file's RGB(A) order.

    Uses OpenCV (installed with nerfstudio), whose EXR codec is off unless ``OPENCV_IO_ENABLE_OPENEXR`` is set
    before the first EXR is read in the process; this sets it (keeping a value the user chose). OpenCV returns
    channels as BGR(A); they are reversed here.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No EXR image at {path}")
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    import cv2  # imported here: only the evaluation scripts need OpenCV

    try:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        raise RuntimeError(
            f"OpenCV could not read {path}: its EXR codec is disabled (OPENCV_IO_ENABLE_OPENEXR="
            f"{os.environ.get('OPENCV_IO_ENABLE_OPENEXR')!r}). Set OPENCV_IO_ENABLE_OPENEXR=1 before any EXR is read."
        ) from e
    if image is None:
        raise ValueError(f"OpenCV could not decode {path} as an image")
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] >= 3:
        image = np.concatenate([image[..., 2::-1], image[..., 3:]], axis=-1)
    return image.astype(np.float32, copy=False)


def _blender_intrinsics(meta: dict, frame: dict, width: int, height: int) -> tuple[float, float, float, float]:
    """``fx, fy, cx, cy`` of a NeRF/Blender frame: focal from ``camera_angle_x`` (and ``_y`` if given), centred."""
    angle_x = frame.get("camera_angle_x", meta.get("camera_angle_x"))
    if angle_x is None:
        raise KeyError("transforms JSON has no camera_angle_x (top level or per frame)")
    fx = 0.5 * width / math.tan(0.5 * float(angle_x))
    angle_y = frame.get("camera_angle_y", meta.get("camera_angle_y"))
    fy = 0.5 * height / math.tan(0.5 * float(angle_y)) if angle_y is not None else fx
    return fx, fy, 0.5 * width, 0.5 * height


def reprojection_errors(
    world_pos: np.ndarray, camera_to_world: np.ndarray, fx: float, fy: float, cx: float, cy: float
) -> np.ndarray:
    """Pixel distance from each pixel's centre to where its world position projects, ``[H, W]``.

    ``world_pos`` is ``[H, W, 3]``; the camera is an OpenGL camera-to-world ``[3, 4]`` (or ``[4, 4]``) with pinhole
    intrinsics. Pixel ``(row i, column j)`` has its centre at ``(j + 0.5, i + 0.5)`` (OpenCV convention). Points
    behind the camera get ``inf``.
    """
    c2w = torch.as_tensor(np.asarray(camera_to_world, dtype=np.float64)[:3, :4])
    viewmat = get_viewmats(c2w).numpy()
    height, width = world_pos.shape[:2]
    p = world_pos.reshape(-1, 3).astype(np.float64) @ viewmat[:3, :3].T + viewmat[:3, 3]
    z = p[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = fx * p[:, 0] / z + cx
        v = fy * p[:, 1] / z + cy
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    err = np.hypot(u - (cols.reshape(-1) + 0.5), v - (rows.reshape(-1) + 0.5))
    err = np.where(z > 0, err, np.inf)
    return err.reshape(height, width)


def load_world_pos_points(
    world_pos_dir: Union[str, Path],
    transforms_json: Union[str, Path],
    split: str,
    max_views: int | None = None,
    max_reproj_px: float = 1.0,
    stride: int = 1,
) -> np.ndarray:
    """Clean surface samples ``[M, 3]`` (float32, the dataset's coordinates) from per-pixel world-position EXRs.

    For every frame of ``transforms_json`` (NeRF/Blender format: ``camera_angle_x``, ``frames[].transform_matrix``
    = OpenGL camera-to-world), reads ``world_pos_dir / split / <name>.exr`` where ``<name>`` is the last part of the
    frame's ``file_path`` (less any image extension), keeps the pixels whose position is non-zero (``(0, 0, 0)`` is
    the background) and whose position projects back within ``max_reproj_px`` pixels of the pixel's own centre. That
    drops silhouette pixels, which hold a blend of the surface and the background's origin and lie far from any
    surface. The image size is the EXR's; the principal point is the image centre.

    Args:
        world_pos_dir: The scene's ``world_pos`` folder (holding one sub-folder per split).
        transforms_json: The split's ``transforms_<split>.json``.
        split: Sub-folder of ``world_pos_dir`` holding the split's EXRs (``"train"``, ``"val"``, ``"test"``).
        max_views: Use only the first this many frames (all when None).
        max_reproj_px: Largest reprojection error of a kept pixel, in pixels (true surface points miss by ~0.03 px).
        stride: Use every ``stride``-th pixel row and column (1 keeps all).
    """
    world_pos_dir, transforms_json = Path(world_pos_dir), Path(transforms_json)
    if not transforms_json.is_file():
        raise FileNotFoundError(f"No transforms JSON at {transforms_json}")
    split_dir = world_pos_dir / split
    if not split_dir.is_dir():
        raise FileNotFoundError(f"No world-position folder for split {split!r} at {split_dir}")
    if max_views is not None and max_views < 1:
        raise ValueError(f"max_views must be at least 1 (or None for all), got {max_views}")
    if stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride}")
    if not max_reproj_px > 0:
        raise ValueError(f"max_reproj_px must be positive, got {max_reproj_px}")
    meta = json.loads(transforms_json.read_text())
    frames = meta.get("frames")
    if not frames:
        raise ValueError(f"{transforms_json} has no frames")
    points = []
    for frame in frames[:max_views]:
        name = Path(frame["file_path"])
        if name.suffix.lower() in _IMAGE_SUFFIXES:
            name = name.with_suffix("")
        exr_path = split_dir / f"{name.name}.exr"
        image = read_exr(exr_path)
        if image.shape[-1] < 3:
            raise ValueError(f"{exr_path} has {image.shape[-1]} channels; world positions need 3")
        world_pos = image[..., :3]
        height, width = world_pos.shape[:2]
        fx, fy, cx, cy = _blender_intrinsics(meta, frame, width, height)
        err = reprojection_errors(world_pos, np.asarray(frame["transform_matrix"]), fx, fy, cx, cy)
        keep = np.any(world_pos != 0, axis=-1) & (err < max_reproj_px)
        if stride > 1:
            grid = np.zeros_like(keep)
            grid[::stride, ::stride] = True
            keep &= grid
        points.append(world_pos[keep])
    return np.concatenate(points, axis=0).astype(np.float32, copy=False)


def foreground_touch(
    sketch_alpha: PointsLike, target_mask: PointsLike, dilation_px: float = 2.0, alpha_threshold: float = 0.5
) -> float:
    """Share of a view's foreground pixels that lie within ``dilation_px`` of the sketch's ink.

    Ink is the set of pixels with ``sketch_alpha > alpha_threshold``. A foreground pixel (``target_mask`` true) is
    touched when some ink pixel's centre lies within Euclidean distance ``dilation_px`` of its own centre, i.e. it is
    in the ink dilated by a disc of that radius. The result is ``|touched foreground| / |foreground|`` in [0, 1]: a
    line sketch touches a band along its strokes, so compare it between sketches rather than with 1.

    Args:
        sketch_alpha: ``[H, W]`` or ``[H, W, 1]`` accumulated opacity of the sketch (e.g. ``RenderOutput.alpha[c]``).
        target_mask: ``[H, W]`` or ``[H, W, 1]`` object mask of the same view (non-zero = foreground).
        dilation_px: Radius of the dilation disc, in pixels (0 counts only foreground pixels that are ink).
        alpha_threshold: Opacity above which a sketch pixel is ink.
    """
    alpha = torch.as_tensor(sketch_alpha).detach().to("cpu", torch.float32)
    mask = torch.as_tensor(target_mask).detach().to("cpu") != 0
    if alpha.dim() == 3 and alpha.shape[-1] == 1:
        alpha = alpha[..., 0]
    if mask.dim() == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if alpha.dim() != 2 or mask.shape != alpha.shape:
        raise ValueError(
            f"sketch_alpha and target_mask must be [H, W] (or [H, W, 1]) of one size, got {tuple(sketch_alpha.shape)} "
            f"and {tuple(target_mask.shape)}"
        )
    if dilation_px < 0:
        raise ValueError(f"dilation_px must be non-negative, got {dilation_px}")
    foreground = int(mask.sum())
    if foreground == 0:
        raise ValueError("target_mask has no foreground pixels; the share of the foreground touched is undefined")
    ink = (alpha > alpha_threshold).float()
    r = int(math.floor(dilation_px))
    offsets = torch.arange(-r, r + 1, dtype=torch.float32)
    disc = ((offsets[:, None] ** 2 + offsets[None, :] ** 2) <= dilation_px**2 + 1e-9).float()
    near_ink = torch.nn.functional.conv2d(ink[None, None], disc[None, None], padding=r)[0, 0] > 0.5
    return (near_ink & mask).sum().item() / foreground


def format_table(metrics: dict[str, float], digits: int = 4) -> str:
    """A plain-text table of a metrics dict: thresholded metrics (``name@T``) in a grid, one column per ``T``.

    Metrics without ``@`` come first, one per row. Values are printed with ``digits`` significant digits.
    """
    scalars = {k: v for k, v in metrics.items() if "@" not in k}
    grid: dict[str, dict[str, float]] = {}
    labels: list[str] = []
    for key, value in metrics.items():
        if "@" in key:
            name, label = key.split("@", 1)
            grid.setdefault(name, {})[label] = value
            if label not in labels:
                labels.append(label)

    def fmt(value: float) -> str:
        return f"{value:.{digits}g}" if isinstance(value, (int, float)) else str(value)

    lines = []
    name_width = max([len(k) for k in (*scalars, *grid)] + [6])
    for key, value in scalars.items():
        lines.append(f"{key:<{name_width}}  {fmt(value)}")
    if grid:
        col_width = max([len(label) for label in labels] + [digits + 6])
        if lines:
            lines.append("")
        lines.append(f"{'metric':<{name_width}}  " + "  ".join(f"{label:>{col_width}}" for label in labels))
        lines.append("-" * name_width + "  " + "  ".join("-" * col_width for _ in labels))
        for name, row in grid.items():
            cells = [f"{fmt(row[label]):>{col_width}}" if label in row else " " * col_width for label in labels]
            lines.append(f"{name:<{name_width}}  " + "  ".join(cells))
    return "\n".join(lines)
