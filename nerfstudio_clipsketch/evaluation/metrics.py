"""Metrics of a sketch's geometry: how close its curves lie to ground-truth curves or to the object's surface, and
how much of each view's object its ink touches.

Everything here is a pure function of point clouds (numpy arrays or tensors, ``[M, 3]``) or images, so the same
numbers come out of a script, a notebook or a test. Distances are Euclidean, in the units of the points given;
thresholds ``tau`` are fractions of the ground truth's bounding-box diagonal, so results compare across scenes of
different sizes, and every result is keyed by the fraction (``"precision@1%"``).

Nearest-neighbour distances come from a k-d tree, so two clouds of 1e5 points each need a few megabytes, not the 40 GB
of a full distance matrix, and well under a second.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Union

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

PointsLike = Union[np.ndarray, Tensor]
"""An ``[M, 3]`` point cloud, as a numpy array or a tensor (on any device; metrics run on the CPU)."""

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.005, 0.01, 0.02)
"""Distance thresholds as fractions of the ground truth's bounding-box diagonal: 0.5 %, 1 % and 2 %."""

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


def _both_ways(
    points: PointsLike, points_name: str, reference: PointsLike, reference_name: str, thresholds: Sequence[float]
) -> tuple[Tensor, Tensor, dict[str, float], float]:
    """Nearest distances from ``points`` to ``reference`` and back, the absolute thresholds and the reference's
    bounding-box diagonal (which sets them)."""
    p = _as_points(points, points_name)
    r = _as_points(reference, reference_name)
    return nearest_distances(p, r), nearest_distances(r, p), absolute_thresholds(r, thresholds), bbox_diagonal(r)


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
    pred_to_gt, gt_to_pred, taus, diagonal = _both_ways(pred_points, "pred_points", gt_points, "gt_points", thresholds)
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
    curve_to_surface, surface_to_curve, taus, diagonal = _both_ways(
        curve_points, "curve_points", surface_points, "surface_points", thresholds
    )
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


NEF_VOXEL = 1.0 / 64.0
"""Voxel size of NEF's downsampling, in the ABC-NEF unit cube."""
NEF_THRESHOLDS: tuple[float, ...] = (0.01, 0.02)
"""ABC-NEF's absolute distance thresholds (the object spans the unit cube)."""


def voxel_downsample(points: PointsLike, voxel: float = NEF_VOXEL) -> Tensor:
    """One point per occupied voxel, the mean of its points, on the grid that point-cloud-utils uses by default (and
    so NEF's evaluation): cells of ``voxel`` from half a voxel below the points' minimum corner."""
    p = _as_points(points, "points")
    keys = torch.floor((p - (p.min(0).values - 0.5 * voxel)) / voxel).long()
    _, inverse = torch.unique(keys, dim=0, return_inverse=True)
    sums = torch.zeros(int(inverse.max()) + 1, 3, dtype=p.dtype).index_add_(0, inverse, p)
    return sums / torch.bincount(inverse).to(p.dtype)[:, None]


def nef_metrics(
    pred_points: PointsLike, gt_points: PointsLike, thresholds: Sequence[float] = NEF_THRESHOLDS
) -> dict[str, float]:
    """ABC-NEF's curve metrics, as NEF's evaluation computes them: the prediction voxel-downsampled
    (:func:`voxel_downsample`), then ``chamfer`` (the *sum* of the two mean nearest distances), and per absolute
    threshold ``T`` (strict ``<``) ``precision@T``, ``recall@T``, ``f@T`` and ``iou@T`` = ``min(c_p, c_g) / (N_p +
    N_g - max(c_p, c_g))`` with ``c_p``, ``c_g`` the correct predicted and ground-truth points."""
    pred = voxel_downsample(pred_points)
    gt = _as_points(gt_points, "gt_points")
    pred_to_gt, gt_to_pred = nearest_distances(pred, gt), nearest_distances(gt, pred)
    result = {"chamfer": float(pred_to_gt.mean() + gt_to_pred.mean()), "num_pred_voxels": float(len(pred))}
    for tau in thresholds:
        correct_pred, correct_gt = int((pred_to_gt < tau).sum()), int((gt_to_pred < tau).sum())
        precision, recall = correct_pred / len(pred), correct_gt / len(gt)
        label = f"{tau:g}"
        result[f"precision@{label}"] = precision
        result[f"recall@{label}"] = recall
        result[f"f@{label}"] = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        union = len(pred) + len(gt) - max(correct_pred, correct_gt)
        result[f"iou@{label}"] = min(correct_pred, correct_gt) / union
    return result
