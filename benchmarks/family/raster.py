"""A small z-buffer triangle rasterizer (numpy, with torch's ``scatter_reduce`` as the depth test), and Lambert shading.

Written here rather than taken from pyrender / OSMesa / EGL, which need system packages that CI machines lack.

How it works, per view: vertices go to the camera (OpenGL camera-to-world in, the pinhole model of
:mod:`nerfstudio_clipsketch.cameras`: pixel ``(row i, column j)`` has its centre at ``(j + 0.5, i + 0.5)``,
``cx = width / 2``); back faces are culled (the parts are closed); each remaining triangle's pixels are the pixel
centres inside it, found row by row from its edges (a span per row, so a long thin triangle costs its area, not its
bounding box); every candidate pixel gets ``depth << 32 | triangle`` as an int64 key and the smallest key per pixel
wins (depth as float32 bits orders like the depth itself). Shading then interpolates per-corner normals
(perspective-correct barycentrics), averaged only across edges that are not sharp, so flat faces are flat, round
surfaces look round and creases change brightness. No anti-aliasing: a pixel belongs to the object iff its centre
is inside a triangle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import trimesh

MAX_FRAGMENTS = 1 << 20
"""Candidate pixels handled at once (bounds memory: ~10 float64 arrays of this length)."""
KEY_EMPTY = np.iinfo(np.int64).max

KEY_LIGHT = np.array([-0.45, -0.6, -1.0]) / np.linalg.norm([-0.45, -0.6, -1.0])
"""Direction towards the key light in OpenCV camera axes (x right, y down, z forward): above left of the camera."""
FILL_LIGHT = np.array([0.9, 0.3, -0.5]) / np.linalg.norm([0.9, 0.3, -0.5])
"""A weaker light from the right, so faces the key light grazes still differ."""


@dataclass(frozen=True)
class Shading:
    """Lambert shading: ``albedo * (ambient + key * max(0, n.l_key) + fill * max(0, n.l_fill))``."""

    albedo: tuple = (0.82, 0.82, 0.84)
    ambient: float = 0.15
    key: float = 0.75
    fill: float = 0.25


@dataclass(frozen=True)
class Rendered:
    """One view: ``rgba`` [H, W, 4] uint8 (alpha 0 on the background), ``depth`` [H, W] float32 (OpenCV camera z,
    inf on the background) and ``face`` [H, W] int64 (the visible triangle, -1 on the background)."""

    rgba: np.ndarray
    depth: np.ndarray
    face: np.ndarray


def corner_normals(mesh: trimesh.Trimesh, angle_deg: float = 30.0) -> np.ndarray:
    """``[F, 3, 3]`` normal at each triangle corner: the area-weighted mean of the normals of the triangles around
    that vertex that differ from this triangle's by at most ``angle_deg`` (a crease keeps both sides' normals)."""
    normals, areas = mesh.face_normals, mesh.area_faces
    around = mesh.vertex_faces[mesh.faces]  # [F, 3, K] triangles around each corner's vertex, -1 padded
    valid = around >= 0
    candidates = normals[np.where(valid, around, 0)]  # [F, 3, K, 3]
    similar = np.einsum("fckd,fd->fck", candidates, normals) >= math.cos(math.radians(angle_deg)) - 1e-9
    weights = np.where(valid & similar, areas[np.where(valid, around, 0)], 0.0)
    summed = np.einsum("fck,fckd->fcd", weights, candidates)
    return summed / np.linalg.norm(summed, axis=-1, keepdims=True)


def render(
    mesh: trimesh.Trimesh,
    camera_to_world: np.ndarray,
    focal: float,
    width: int,
    height: int,
    normals: np.ndarray | None = None,
    shading: Shading = Shading(),
) -> Rendered:
    """Renders a closed mesh from one camera.

    Args:
        mesh: A closed mesh with outward normals (what :mod:`.shapes` builds).
        camera_to_world: ``[4, 4]`` (or ``[3, 4]``) OpenGL camera-to-world, as in ``transforms_*.json``.
        focal: Focal length in pixels (both axes); the principal point is the image centre.
        width, height: Image size in pixels.
        normals: :func:`corner_normals` of the mesh, to reuse them across views (computed when None).

    Raises:
        ValueError: a vertex is not in front of the camera (the camera is inside or too close to the part).
    """
    c2w = np.asarray(camera_to_world, dtype=np.float64)
    assert c2w.shape in ((4, 4), (3, 4)), c2w.shape
    rotation = c2w[:3, :3] * np.array([1.0, -1.0, -1.0])  # OpenCV camera axes in world coordinates (columns)
    origin = c2w[:3, 3]
    camera = (mesh.vertices - origin) @ rotation
    if camera[:, 2].min() <= 1e-6:
        raise ValueError(f"the mesh reaches z = {camera[:, 2].min():.3g} in front of the camera: it must be > 0")
    uv = focal * camera[:, :2] / camera[:, 2:] + np.array([width / 2.0, height / 2.0])
    to_camera = origin - mesh.triangles[:, 0]
    front = np.nonzero(np.einsum("fd,fd->f", mesh.face_normals, to_camera) > 0)[0]
    keys = _depth_test(uv[mesh.faces[front]], 1.0 / camera[mesh.faces[front], 2], front, width, height)

    face = np.full(width * height, -1, dtype=np.int64)
    depth = np.full(width * height, np.inf, dtype=np.float32)
    hit = np.nonzero(keys != KEY_EMPTY)[0]
    face[hit] = keys[hit] & 0xFFFFFFFF
    depth[hit] = (keys[hit] >> 32).astype(np.int32).view(np.float32)
    if normals is None:
        normals = corner_normals(mesh)
    rgba = np.zeros((width * height, 4), dtype=np.uint8)
    rgba[hit, :3] = _shade(mesh, normals, face[hit], hit, uv, camera[:, 2], rotation, width, shading)
    rgba[hit, 3] = 255
    return Rendered(rgba.reshape(height, width, 4), depth.reshape(height, width), face.reshape(height, width))


def _depth_test(corners: np.ndarray, inverse_z: np.ndarray, ids: np.ndarray, width: int, height: int) -> np.ndarray:
    """The winning ``depth << 32 | triangle id`` key of every pixel (``KEY_EMPTY`` where none), ``[H * W]``.

    ``corners`` [T, 3, 2] are the triangles' corners in pixels, ``inverse_z`` [T, 3] their ``1 / z``."""
    rows_low = np.clip(np.ceil(corners[..., 1].min(1) - 0.5), 0, height).astype(np.int64)
    rows_high = np.clip(np.floor(corners[..., 1].max(1) - 0.5), -1, height - 1).astype(np.int64)
    row_counts = np.maximum(rows_high - rows_low + 1, 0)
    buffer = torch.full((width * height,), KEY_EMPTY, dtype=torch.int64)
    # One (triangle, row) per entry; its span of columns is where the row's centre line crosses the triangle.
    tri = np.repeat(np.arange(len(corners)), row_counts)
    rows = rows_low[tri] + (np.arange(len(tri)) - np.repeat(np.cumsum(row_counts) - row_counts, row_counts))
    left, right = _spans(corners[tri], rows + 0.5)
    # The slack makes neighbours that share an edge both claim a pixel centre on it (never neither).
    columns_low = np.clip(np.ceil(left - 0.5 - 1e-9), 0, width).astype(np.int64)
    columns_high = np.clip(np.floor(right - 0.5 + 1e-9), -1, width - 1).astype(np.int64)
    counts = np.maximum(columns_high - columns_low + 1, 0)
    planes = _planes(corners, inverse_z)  # [T, 3]: 1/z = a u + b v + c
    ends = np.cumsum(counts)
    start = 0
    while start < len(counts):
        stop = max(int(np.searchsorted(ends, ends[start] - counts[start] + MAX_FRAGMENTS, side="right")), start + 1)
        span = slice(start, stop)
        entry = np.repeat(np.arange(start, stop), counts[span])
        first = ends[span] - counts[span] - (ends[start] - counts[start])  # each entry's first fragment in the chunk
        offsets = np.arange(len(entry)) - np.repeat(first, counts[span])
        u = columns_low[entry] + offsets + 0.5
        v = rows[entry] + 0.5
        plane = planes[tri[entry]]
        depth = 1.0 / np.maximum(plane[:, 0] * u + plane[:, 1] * v + plane[:, 2], 1e-12)
        key = (depth.astype(np.float32).view(np.int32).astype(np.int64) << 32) | ids[tri[entry]]
        pixel = (rows[entry] * width + columns_low[entry] + offsets).astype(np.int64)
        buffer.scatter_reduce_(0, torch.from_numpy(pixel), torch.from_numpy(key), reduce="amin")
        start = stop
    return buffer.numpy()


def _spans(triangles: np.ndarray, y: np.ndarray):
    """Where the horizontal line ``v = y`` enters and leaves each triangle ``[N, 3, 2]``: ``(left, right)`` in ``u``
    (left > right when it misses)."""
    a, b = triangles, np.roll(triangles, -1, axis=1)  # the three edges a -> b
    dy = b[..., 1] - a[..., 1]
    low, high = np.minimum(a[..., 1], b[..., 1]), np.maximum(a[..., 1], b[..., 1])
    crosses = (low <= y[:, None]) & (y[:, None] <= high)
    crosses &= dy != 0
    t = np.where(crosses, (y[:, None] - a[..., 1]) / np.where(dy == 0, 1.0, dy), 0.0)
    x = a[..., 0] + t * (b[..., 0] - a[..., 0])
    left = np.where(crosses, x, np.inf).min(1)
    right = np.where(crosses, x, -np.inf).max(1)
    return left, right


def _planes(corners: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``[T, 3]`` coefficients ``(a, b, c)`` of the affine function ``a u + b v + c`` that takes ``values`` [T, 3] at
    the triangles' ``corners`` [T, 3, 2] (0 for triangles seen edge-on)."""
    system = np.concatenate([corners, np.ones(corners.shape[:2] + (1,))], axis=-1)  # [T, 3, 3]
    determinant = np.linalg.det(system)
    usable = np.abs(determinant) > 1e-12
    solution = np.zeros((len(corners), 3))
    solution[usable] = np.linalg.solve(system[usable], values[usable][..., None])[..., 0]
    return solution


def _shade(mesh, normals, face, pixel, uv, z, rotation, width, shading: Shading) -> np.ndarray:
    """Lambert colours ``[P, 3]`` uint8 of the visible pixels ``pixel`` (flat indices) showing triangles ``face``."""
    corners = uv[mesh.faces[face]]  # [P, 3, 2]
    centre = np.stack([pixel % width + 0.5, pixel // width + 0.5], -1)
    # Barycentrics in the image, then weighted by 1/z for the surface's own (perspective-correct) ones.
    edges = np.roll(corners, -1, axis=1) - corners
    to_pixel = centre[:, None, :] - corners
    opposite = edges[:, [1, 2, 0]]
    area = edges[:, 0, 0] * (-edges[:, 2, 1]) - edges[:, 0, 1] * (-edges[:, 2, 0])
    sub = opposite[..., 0] * to_pixel[:, [1, 2, 0], 1] - opposite[..., 1] * to_pixel[:, [1, 2, 0], 0]
    weights = np.clip(sub / area[:, None], 0.0, 1.0) / z[mesh.faces[face]]
    weights /= weights.sum(1, keepdims=True)
    n = np.einsum("pc,pcd->pd", weights, normals[face])
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    key = np.clip(n @ (rotation @ KEY_LIGHT), 0.0, None)
    fill = np.clip(n @ (rotation @ FILL_LIGHT), 0.0, None)
    light = shading.ambient + shading.key * key + shading.fill * fill
    colour = np.asarray(shading.albedo)[None] * light[:, None]
    return np.clip(np.round(colour * 255.0), 0, 255).astype(np.uint8)
