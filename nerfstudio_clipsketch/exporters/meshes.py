"""Closed tube meshes around polylines, built in rotation-minimising frames (the strokes as solids)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from jaxtyping import Float

from nerfstudio_clipsketch.exporters import as_numpy
from nerfstudio_clipsketch.exporters.files import polyline_arrays


def _unit(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised vectors along the last axis and whether each had a usable length."""
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    ok = n[..., 0] > 1e-12
    return np.where(ok[..., None], v / np.where(ok[..., None], n, 1.0), 0.0), ok


def parallel_transport_frames(polyline: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotation-minimising frames ``(tangents, normals, binormals)``, each ``[M, 3]``, along a polyline.

    The tangent at each point is the normalised central difference (one-sided at the ends). The normal is carried
    from point to point by the double-reflection method (Wang et al., "Computation of rotation minimizing frames",
    ACM TOG 2008), so it never flips where the curvature vanishes or changes sign, as a Frenet normal does.
    ``binormal = tangent x normal``, so ``(normal, binormal, tangent)`` is right-handed. Repeated points borrow the
    neighbouring tangent; a polyline that is a single point gets the z axis.
    """
    p = as_numpy(polyline)
    if p.ndim != 2 or p.shape[1] != 3 or p.shape[0] < 2:
        raise ValueError(f"polyline must have shape [M >= 2, 3], got {p.shape}")
    m = len(p)
    diff = np.empty_like(p)
    diff[0], diff[-1] = p[1] - p[0], p[-1] - p[-2]
    diff[1:-1] = p[2:] - p[:-2]
    tangents, ok = _unit(diff)
    if not ok.any():
        tangents[:] = (0.0, 0.0, 1.0)
    else:
        # Fill zero tangents (repeated points) from the nearest usable one before them, or after the first.
        idx = np.where(ok, np.arange(m), -1)
        idx = np.maximum.accumulate(idx)
        idx[idx < 0] = np.argmax(ok)
        tangents = tangents[idx]
    t0 = tangents[0]
    seed = np.eye(3)[np.argmin(np.abs(t0))]  # the axis least aligned with t0
    normals = np.empty_like(p)
    normals[0] = _unit(seed - (seed @ t0) * t0)[0]
    for i in range(m - 1):
        r, t, t_next = normals[i], tangents[i], tangents[i + 1]
        v1 = p[i + 1] - p[i]
        c1 = v1 @ v1
        if c1 > 1e-24:
            r_l = r - (2.0 / c1) * (v1 @ r) * v1
            t_l = t - (2.0 / c1) * (v1 @ t) * v1
        else:
            r_l, t_l = r, t
        v2 = t_next - t_l
        c2 = v2 @ v2
        r_next = r_l - (2.0 / c2) * (v2 @ r_l) * v2 if c2 > 1e-24 else r_l
        # Re-orthonormalise against round-off drift over long polylines.
        normals[i + 1] = _unit(r_next - (r_next @ t_next) * t_next)[0]
    binormals = np.cross(tangents, normals)
    return tangents, normals, binormals


def tube_mesh(
    polylines: Sequence[Any], radius: float, sides: int = 8
) -> tuple[Float[np.ndarray, "num_vertices 3"], Float[np.ndarray, "num_faces 3"]]:
    """A closed tube of triangles around each polyline: ``sides``-gon rings in rotation-minimising frames (see
    :func:`parallel_transport_frames`), joined by quads split in two, with a flat triangle-fan cap at each end.

    Each polyline of ``M`` points contributes ``M * sides + 2`` vertices (rings, then the two cap centres) and
    ``2 * sides * M`` triangles; every ring vertex lies at exactly ``radius`` from its polyline point, in the plane
    normal to the tangent there. Triangles wind counter-clockwise seen from outside (outward normals). Tubes of
    different polylines are separate closed surfaces in one mesh.

    Args:
        polylines: ``[M_i, 3]`` arrays or tensors. For a sketch, ``sketch.polylines()`` (dataset coordinates)
            with ``radius = sketch.stroke_width_dataset / 2``.
        radius: Tube radius, in the polylines' units.
        sides: Vertices per ring (at least 3).

    Returns:
        ``(vertices [V, 3] float64, faces [F, 3] int64)``.
    """
    if not (radius > 0 and math.isfinite(radius)):
        raise ValueError(f"tube radius must be a positive finite number, got {radius!r}")
    if isinstance(sides, bool) or int(sides) != sides or sides < 3:
        raise ValueError(f"a tube needs at least 3 sides, got {sides!r}")
    sides = int(sides)
    angles = 2.0 * np.pi * np.arange(sides) / sides
    cos, sin = np.cos(angles), np.sin(angles)
    k = np.arange(sides)
    k_next = (k + 1) % sides
    all_vertices, all_faces = [], []
    offset = 0
    for p in polyline_arrays(polylines):
        m = len(p)
        _, normals, binormals = parallel_transport_frames(p)
        rings = p[:, None, :] + radius * (
            cos[None, :, None] * normals[:, None, :] + sin[None, :, None] * binormals[:, None, :]
        )  # [M, sides, 3]
        vertices = np.concatenate([rings.reshape(-1, 3), p[:1], p[-1:]])
        ring = np.arange(m - 1)[:, None] * sides  # start index of ring i, [M - 1, 1]
        a, b = ring + k, ring + k_next  # ring i, angle k and k + 1
        c, d = a + sides, b + sides  # ring i + 1
        side_faces = np.concatenate([np.stack([a, b, c], -1), np.stack([b, d, c], -1)], axis=1).reshape(-1, 3)
        start, end = m * sides, m * sides + 1
        last = (m - 1) * sides
        start_cap = np.stack([np.full(sides, start), k_next, k], -1)
        end_cap = np.stack([np.full(sides, end), last + k, last + k_next], -1)
        all_vertices.append(vertices)
        all_faces.append(np.concatenate([side_faces, start_cap, end_cap]) + offset)
        offset += len(vertices)
    if not all_vertices:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    return np.concatenate(all_vertices), np.concatenate(all_faces).astype(np.int64)


