"""Primitives the parts are built from: 2D profiles (manifold3d ``CrossSection``) and solids (``Manifold``) placed in
millimetres, with explicit circle tessellation.

Every circle has at least :data:`MIN_SEGMENTS` segments, so neighbouring facets of a round surface meet at no more
than 360 / 24 = 15 degrees, well under the 30 degrees that make a mesh edge a ground-truth sharp edge: a cylinder's
side, a hole's wall and an (approximated) fillet are smooth; their rims are sharp.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import trimesh
from manifold3d import CrossSection, JoinType, Manifold, OpType

MIN_SEGMENTS = 24
"""Fewest segments of any circle: facets of round surfaces then meet at 15 degrees or less."""

Vec3 = tuple[float, float, float]


def segments(radius: float, per_mm: float = 1.2) -> int:
    """Circle segments for ``radius`` (mm): about ``per_mm`` per millimetre of circumference, a multiple of 4 (so a
    circle has vertices on both axes), between :data:`MIN_SEGMENTS` and 96."""
    count = math.ceil(2 * math.pi * radius * per_mm / 4.0) * 4
    return max(MIN_SEGMENTS, min(96, count))


def circle(radius: float, centre: tuple[float, float] = (0.0, 0.0)) -> CrossSection:
    return CrossSection.circle(radius, segments(radius)).translate(centre)


def rectangle(width: float, height: float, centre: tuple[float, float] = (0.0, 0.0)) -> CrossSection:
    return CrossSection.square((width, height), center=True).translate(centre)


def rounded_rectangle(width: float, height: float, radius: float) -> CrossSection:
    """A centred rectangle whose corners are quarter circles of ``radius`` (a filleted profile)."""
    inner = CrossSection.square((width - 2 * radius, height - 2 * radius), center=True)
    return inner.offset(radius, JoinType.Round, circular_segments=segments(radius))


def chamfered_rectangle(width: float, height: float, chamfer: float) -> CrossSection:
    """A centred rectangle with its four corners cut at 45 degrees by ``chamfer``."""
    w, h, c = width / 2, height / 2, chamfer
    return polygon(
        [(-w + c, -h), (w - c, -h), (w, -h + c), (w, h - c), (w - c, h), (-w + c, h), (-w, h - c), (-w, -h + c)]
    )


def slot(length: float, width: float, centre: tuple[float, float] = (0.0, 0.0), angle: float = 0.0) -> CrossSection:
    """A stadium (obround) ``length`` long end to end along x rotated by ``angle`` degrees, ``width`` wide."""
    r = width / 2
    ends = [circle(r, (-length / 2 + r, 0.0)), circle(r, (length / 2 - r, 0.0))]
    return CrossSection.batch_hull(ends).rotate(angle).translate(centre)


def regular_polygon(sides: int, circumradius: float, angle: float = 0.0) -> CrossSection:
    """A regular polygon with a vertex at ``angle`` degrees from +x."""
    phases = np.radians(angle) + np.arange(sides) * 2 * np.pi / sides
    return polygon(np.stack([np.cos(phases), np.sin(phases)], -1) * circumradius)


def polygon(points: Sequence[Sequence[float]]) -> CrossSection:
    """A simple polygon from its vertices (either orientation)."""
    contour = np.asarray(points, dtype=np.float64)
    if _signed_area(contour) < 0:
        contour = contour[::-1]
    return CrossSection([contour])


def _signed_area(contour: np.ndarray) -> float:
    x, y = contour[:, 0], contour[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def extrude(profile: CrossSection, height: float, z0: float = 0.0) -> Manifold:
    """``profile`` (in the xy plane) extruded along +z from ``z0`` to ``z0 + height``."""
    return profile.extrude(height).translate((0.0, 0.0, z0))


def box(size: Vec3, centre: Vec3 = (0.0, 0.0, 0.0)) -> Manifold:
    return Manifold.cube(size, center=True).translate(centre)


def cylinder(radius: float, height: float, centre: Vec3 = (0.0, 0.0, 0.0), axis: str = "z") -> Manifold:
    """A cylinder of ``radius`` and ``height`` centred on ``centre`` along ``axis`` ("x", "y" or "z")."""
    solid = Manifold.cylinder(height, radius, radius, segments(radius), center=True)
    return along(solid, axis).translate(centre)


def cone(radius_low: float, radius_high: float, height: float, z0: float = 0.0) -> Manifold:
    """A truncated cone along +z from ``z0``."""
    count = segments(max(radius_low, radius_high))
    return Manifold.cylinder(height, radius_low, radius_high, count).translate((0.0, 0.0, z0))


def along(solid: Manifold, axis: str) -> Manifold:
    """``solid``, built along z, turned to lie along ``axis``."""
    rotations = {"x": (0.0, 90.0, 0.0), "y": (90.0, 0.0, 0.0), "z": (0.0, 0.0, 0.0)}
    if axis not in rotations:
        raise ValueError(f"axis must be one of {sorted(rotations)}, got {axis!r}")
    return solid.rotate(rotations[axis])


def revolve(profile: Sequence[Sequence[float]]) -> Manifold:
    """A solid of revolution about z from a ``(radius, z)`` outline (radius >= 0)."""
    radius = float(np.max(np.asarray(profile)[:, 0]))
    return polygon(profile).revolve(segments(radius))


def union(*solids: Manifold) -> Manifold:
    return Manifold.batch_boolean(list(solids), OpType.Add)


def difference(solid: Manifold, *cutters: Manifold) -> Manifold:
    return solid - union(*cutters) if cutters else solid


def to_trimesh(solid: Manifold) -> trimesh.Trimesh:
    """The solid as a watertight triangle mesh without degenerate triangles.

    manifold3d can leave vertices that coincide where two cut surfaces meet exactly (a countersink's rim on a face);
    they are merged and the zero-area triangles between them dropped (an edge collapse), since a zero-area triangle has
    no normal and would make its edges look sharp.

    Raises:
        ValueError: the solid is empty, not a closed 2-manifold, or keeps a zero-area triangle (a construction to fix).
    """
    mesh = solid.to_mesh()
    vertices = np.asarray(mesh.vert_properties, dtype=np.float64)[:, :3]
    faces = np.asarray(mesh.tri_verts, dtype=np.int64)
    result = trimesh.Trimesh(vertices, faces, process=False)
    result.merge_vertices(digits_vertex=7)
    result.update_faces(result.nondegenerate_faces(height=1e-9))
    result.remove_unreferenced_vertices()
    if len(result.faces) == 0 or not result.is_watertight:
        raise ValueError(f"solid has {len(result.faces)} triangles and is not a closed surface ({solid.status()})")
    if result.area_faces.min() <= 1e-12 * result.area:
        raise ValueError(f"solid keeps {int((result.area_faces <= 1e-12 * result.area).sum())} zero-area triangles")
    return result
