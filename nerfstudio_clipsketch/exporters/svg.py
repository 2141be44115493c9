"""One camera's view of a sketch as an SVG drawing.

As in :mod:`nerfstudio_clipsketch.rendering`, cameras are OpenCV world-to-camera matrices plus pinhole ``K``, and
the continuous pixel coordinate ``u = fx x / z + cx`` puts the centre of pixel column ``i`` at ``u = i + 0.5``
(:func:`nerfstudio_clipsketch.cameras.project_points`). An SVG written here has ``viewBox="0 0 width height"``, so its
user coordinate *is* that continuous pixel coordinate: pixel ``(i, j)`` is the unit square ``[i, i + 1] x [j, j + 1]``
of the SVG, and a Gaussian that renders centred on pixel ``(i, j)`` is drawn at SVG ``(i + 0.5, j + 0.5)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional
from xml.sax.saxutils import quoteattr

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from nerfstudio_clipsketch.cameras import project_points
from nerfstudio_clipsketch.exporters import as_numpy
from nerfstudio_clipsketch.sketch import PathLike, Sketch
from nerfstudio_clipsketch.strokes import check_rgb

if TYPE_CHECKING:
    from nerfstudio_clipsketch.hull import VisualHull

HiddenLines = Literal["drop", "dashed", "show"]
"""What a drawing does with the parts of strokes the object hides: leave them out, dash them, or draw them."""


def _hex(rgb: Sequence[float]) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in check_rgb(rgb, "colour"))


def _runs(points: np.ndarray) -> list[np.ndarray]:
    """Maximal runs of at least two consecutive finite points."""
    finite = np.isfinite(points).all(axis=1)
    runs, start = [], None
    for i, f in enumerate(np.append(finite, False)):
        if f and start is None:
            start = i
        elif not f and start is not None:
            if i - start >= 2:
                runs.append(points[start:i])
            start = None
    return runs


def write_svg(
    path: PathLike,
    projected_curves: Sequence[Any],
    widths_px: Sequence[float],
    width: int,
    height: int,
    stroke_color: Sequence[float] = (0.0, 0.0, 0.0),
    background: Sequence[float] = (1.0, 1.0, 1.0),
    opacity: float = 1.0,
    dashed: Optional[Sequence[bool]] = None,
) -> int:
    """Write one camera's drawing as an SVG: a background rect and one ``<path>`` per visible curve (``dashed``
    ones, e.g. hidden lines, with a dash pattern of twice their width).

    Each curve is a polyline of projected samples (``M x y L x y ...``; a perspective image of a Bézier is not a
    Bézier). Rows that are not finite lift the pen, so a curve that passes behind the camera becomes several
    subpaths of one ``<path>``. A curve is visible, and written, if it has two consecutive finite points and its
    bounding box, grown by half its stroke width, meets the image. Paths are drawn in the order given (put far
    curves first for painter's order); lines have round caps and joins.

    Args:
        path: Output file.
        projected_curves: ``[M_i, 2]`` SVG (= continuous pixel) coordinates per curve, e.g. from
            :func:`~nerfstudio_clipsketch.cameras.project_points`, with non-finite rows where a sample is not drawable.
        widths_px: Stroke width of each curve, in pixels.
        width, height: Image size in pixels; the SVG's ``viewBox`` is ``0 0 width height``.
        stroke_color, background: RGB in [0, 1].
        opacity: SVG ``stroke-opacity``.

    Returns:
        The number of ``<path>`` elements written.
    """
    if len(widths_px) != len(projected_curves):
        raise ValueError(f"got {len(projected_curves)} curves but {len(widths_px)} stroke widths")
    if width <= 0 or height <= 0:
        raise ValueError(f"SVG size must be positive, got {width}x{height}")
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity!r}")
    paths = []
    for i, (curve, w) in enumerate(zip(projected_curves, widths_px, strict=True)):
        points = as_numpy(curve)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"projected curve {i} must have shape [M, 2], got {points.shape}")
        w = float(w)
        if not (w > 0 and math.isfinite(w)):
            continue
        runs = _runs(points)
        if not runs:
            continue
        lo, hi = np.min([r.min(0) for r in runs], 0) - w / 2, np.max([r.max(0) for r in runs], 0) + w / 2
        if hi[0] < 0 or hi[1] < 0 or lo[0] > width or lo[1] > height:
            continue
        d = " ".join("M " + " L ".join(f"{x:.3f} {y:.3f}" for x, y in run.tolist()) for run in runs)
        dash = f' stroke-dasharray="{2 * w:.4g} {2 * w:.4g}"' if dashed is not None and dashed[i] else ""
        paths.append(f'  <path d="{d}" stroke-width="{w:.4g}"{dash}/>')
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill={quoteattr(_hex(background))}/>',
        f'<g fill="none" stroke={quoteattr(_hex(stroke_color))} stroke-opacity="{opacity:.4g}" '
        'stroke-linecap="round" stroke-linejoin="round">',
        *paths,
        "</g>",
        "</svg>",
    ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(paths)


def write_sketch_svg(
    path: PathLike,
    sketch: Sketch,
    viewmat: Float[Tensor, "4 4"],
    K: Float[Tensor, "3 3"],
    width: int,
    height: int,
    samples_per_curve: int = 100,
    near_plane: float = 0.01,
    hidden: Optional[Bool[Tensor, "num_curves samples_per_curve"]] = None,
    hidden_lines: HiddenLines = "drop",
) -> int:
    """Draw ``sketch`` as seen by one camera into an SVG (see :func:`write_svg`).

    ``hidden`` marks the samples the object hides from this camera (:func:`hidden_samples`); they are left out
    (``hidden_lines`` ``drop``, the pen lifts), drawn dashed and half as wide (``dashed``, as technical drawings
    show hidden edges), or drawn like the rest (``show``).

    Curves are sampled evenly in arc length in the normalised frame and projected with
    :func:`~nerfstudio_clipsketch.cameras.project_points`;
    samples closer than ``near_plane`` lift the pen (the stroke stops at the last sample in front, it is not clipped
    exactly at the plane). Each path's width is the world stroke width projected at the mean depth of its drawn
    samples, ``sqrt(fx fy) * stroke_width / depth``, and paths are written far to near.

    Args:
        path: Output file.
        sketch: The sketch.
        viewmat: OpenCV world-to-camera matrix of the camera, normalised frame (:func:`cameras.get_viewmats`).
        K: Pinhole intrinsics for a ``width`` x ``height`` image.
        width, height: Image size in pixels.
        samples_per_curve: Polyline points per curve.
        near_plane: Samples with camera depth at most this are not drawn.

    Returns:
        The number of ``<path>`` elements written.
    """
    points = sketch.polylines(samples_per_curve, frame="normalised")
    num_curves = points.shape[0]
    pixels, depths = project_points(points.reshape(-1, 3), viewmat[None].to(points), K[None].to(points), near_plane)
    pixels = as_numpy(pixels[0]).reshape(num_curves, samples_per_curve, 2)
    depths = as_numpy(depths[0]).reshape(num_curves, samples_per_curve)
    in_front = depths > near_plane
    pixels[~in_front] = np.nan
    count = in_front.sum(1)
    mean_depth = np.where(count > 0, (depths * in_front).sum(1) / np.maximum(count, 1), np.inf)
    K_np = as_numpy(K)
    widths = math.sqrt(K_np[0, 0] * K_np[1, 1]) * sketch.stroke_width / mean_depth
    order = np.argsort(-mean_depth, kind="stable")
    curves, curve_widths, dashed = [pixels[i] for i in order], [float(widths[i]) for i in order], [False] * num_curves
    if hidden is not None and hidden_lines != "show":
        behind = as_numpy(hidden).astype(bool)[order]
        seen = [np.where(~behind[k, :, None], curve, np.nan) for k, curve in enumerate(curves)]
        if hidden_lines == "dashed":  # hidden parts first (under the rest), dashed and half as wide
            unseen = [np.where(behind[k, :, None], curve, np.nan) for k, curve in enumerate(curves)]
            seen, curve_widths = unseen + seen, [0.5 * w for w in curve_widths] + curve_widths
            dashed = [True] * num_curves + dashed
        curves = seen
    return write_svg(
        path, curves, curve_widths, width, height, sketch.stroke_color, sketch.background, sketch.opacity, dashed
    )


def hidden_samples(
    sketch: Sketch,
    hull: "VisualHull",
    camera_to_world: Float[Tensor, "3 4"],
    samples_per_curve: int = 100,
    thickness: int = 4,
) -> Bool[Tensor, "num_curves samples_per_curve"]:
    """Which of the sketch's samples (as :func:`write_sketch_svg` draws them) the object hides from a camera: at
    least ``thickness`` of the visual hull's voxels lie on their way to it
    (:meth:`~nerfstudio_clipsketch.hull.VisualHull.visible`). A wire, or the hull of a wireframe drawing, is thinner
    than that and hides nothing; a solid's far side is hidden."""
    from nerfstudio.cameras.cameras import Cameras

    points = sketch.polylines(samples_per_curve, frame="normalised").reshape(-1, 3).float()
    one = Cameras(camera_to_worlds=camera_to_world[None].float(), fx=1.0, fy=1.0, cx=0.5, cy=0.5, width=1, height=1)
    return ~hull.visible(points, one, thickness=thickness)[0].reshape(sketch.num_curves, samples_per_curve)


def hidden_by_strokes(
    sketch: Sketch,
    viewmat: Float[Tensor, "4 4"],
    K: Float[Tensor, "3 3"],
    samples_per_curve: int = 100,
    near_plane: float = 0.01,
    chunk: int = 1024,
) -> Bool[Tensor, "num_curves samples_per_curve"]:
    """Which of the sketch's samples the other strokes hide from a camera, the strokes taken as tubes of the stroke
    width: what a drawing can hide when there is no visual hull. A sample is hidden when, in the image, it lies within
    half a stroke width (projected at the occluder's depth) of a segment of another stroke that is more than a stroke
    width nearer the camera there. Strokes that cross at one depth hide nothing of each other."""
    points = sketch.polylines(samples_per_curve, frame="normalised").float()
    num_curves = points.shape[0]
    uv, depth = project_points(points.reshape(-1, 3), viewmat[None].float(), K[None].float(), near_plane)
    uv, depth = uv[0].reshape(num_curves, -1, 2), depth[0].reshape(num_curves, -1)
    a, b = uv[:, :-1].reshape(-1, 2), uv[:, 1:].reshape(-1, 2)  # the occluding segments
    za, zb = depth[:, :-1].reshape(-1), depth[:, 1:].reshape(-1)
    owner = torch.arange(num_curves).repeat_interleave(samples_per_curve - 1)
    front = (za > near_plane) & (zb > near_plane)
    focal, width = float(torch.sqrt(K[0, 0] * K[1, 1])), sketch.stroke_width
    flat_uv, flat_z = uv.reshape(-1, 2), depth.reshape(-1)
    flat_owner = torch.arange(num_curves).repeat_interleave(samples_per_curve)
    hidden = torch.zeros(len(flat_uv), dtype=torch.bool)
    ab = b - a
    for start in range(0, len(flat_uv), chunk):
        p, z, who = flat_uv[start : start + chunk], flat_z[start : start + chunk], flat_owner[start : start + chunk]
        t = (((p[:, None] - a[None]) * ab[None]).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-12)[None]).clamp(0, 1)
        gap = (p[:, None] - (a[None] + t[..., None] * ab[None])).norm(dim=-1)
        z_there = za[None] + t * (zb - za)[None]  # the occluder's depth at its closest point
        covers = gap < 0.5 * focal * width / z_there.clamp_min(near_plane)
        nearer = z_there < z[:, None] - width
        hidden[start : start + chunk] = (covers & nearer & front[None] & (owner[None] != who[:, None])).any(1)
    return (hidden & (flat_z > near_plane)).reshape(num_curves, samples_per_curve)
