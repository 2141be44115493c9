"""Polylines and triangle meshes as PLY (binary little-endian or ASCII) and Wavefront OBJ files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch import Tensor

from nerfstudio_clipsketch.exporters import as_numpy
from nerfstudio_clipsketch.sketch import PathLike

PlyEncoding = Literal["binary_little_endian", "ascii"]


def polyline_arrays(polylines: Sequence[Any]) -> list[np.ndarray]:
    arrays = [as_numpy(p) for p in polylines]
    for i, p in enumerate(arrays):
        if p.ndim != 2 or p.shape[1] != 3 or p.shape[0] < 2:
            raise ValueError(f"polyline {i} must have shape [M >= 2, 3], got {p.shape}")
    return arrays


def _write_ply(
    path: PathLike,
    elements: list[tuple[str, np.ndarray, list[str]]],
    encoding: PlyEncoding,
    comment: str,
) -> None:
    """Write PLY elements given as ``(name, structured array, header property lines)``."""
    if encoding not in ("binary_little_endian", "ascii"):
        raise ValueError(f"Unknown PLY encoding {encoding!r}; expected 'binary_little_endian' or 'ascii'")
    header = ["ply", f"format {encoding} 1.0", f"comment {comment}"]
    for name, data, properties in elements:
        header.append(f"element {name} {len(data)}")
        header.extend(properties)
    header.append("end_header")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        for _, data, _ in elements:
            if encoding == "binary_little_endian":
                f.write(data.tobytes())
            else:
                for row in data.tolist():
                    f.write((" ".join(repr(v) for v in row) + "\n").encode("ascii"))


def write_polylines_ply(
    path: PathLike, polylines: Sequence[Any], encoding: PlyEncoding = "binary_little_endian"
) -> None:
    """Write polylines as a PLY file of vertices and edges (the format's standard ``vertex1``/``vertex2`` edges).

    Vertices are ``float`` (float32) ``x, y, z`` with an ``int`` ``curve`` index; edge ``k`` joins consecutive
    samples of one polyline, so a polyline of ``M`` points has ``M - 1`` edges. Binary little-endian by default,
    ASCII on request.

    Args:
        path: Output file.
        polylines: ``[M_i, 3]`` arrays or tensors (a ``[C, M, 3]`` array works too), usually dataset coordinates
            from :meth:`Sketch.polylines <nerfstudio_clipsketch.sketch.Sketch.polylines>`.
        encoding: ``"binary_little_endian"`` or ``"ascii"``.
    """
    arrays = polyline_arrays(polylines)
    counts = [len(p) for p in arrays]
    vertex = np.zeros(sum(counts), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("curve", "<i4")])
    edges = np.zeros(sum(counts) - len(counts), dtype=[("vertex1", "<i4"), ("vertex2", "<i4")])
    offset, edge_offset = 0, 0
    for i, p in enumerate(arrays):
        m = len(p)
        rows = slice(offset, offset + m)
        vertex["x"][rows], vertex["y"][rows], vertex["z"][rows] = p[:, 0], p[:, 1], p[:, 2]
        vertex["curve"][rows] = i
        edges["vertex1"][edge_offset : edge_offset + m - 1] = np.arange(offset, offset + m - 1)
        edges["vertex2"][edge_offset : edge_offset + m - 1] = np.arange(offset + 1, offset + m)
        offset, edge_offset = offset + m, edge_offset + m - 1
    _write_ply(
        path,
        [
            ("vertex", vertex, ["property float x", "property float y", "property float z", "property int curve"]),
            ("edge", edges, ["property int vertex1", "property int vertex2"]),
        ],
        encoding,
        "clipsketch curves as polylines",
    )


def write_polylines_obj(path: PathLike, polylines: Sequence[Any]) -> None:
    """Write polylines as a Wavefront OBJ: one object ``curve_<i>`` per polyline, its ``v`` lines, and one ``l``
    line through all of its vertices (1-based indices)."""
    arrays = polyline_arrays(polylines)
    lines = ["# clipsketch curves as polylines"]
    offset = 1
    for i, p in enumerate(arrays):
        lines.append(f"o curve_{i:04d}")
        lines.extend(f"v {x!r} {y!r} {z!r}" for x, y, z in p.tolist())
        lines.append("l " + " ".join(str(k) for k in range(offset, offset + len(p))))
        offset += len(p)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="ascii")


def _mesh_arrays(vertices: Any, faces: Any) -> tuple[np.ndarray, np.ndarray]:
    v = as_numpy(vertices)
    f = np.asarray(faces.detach().cpu() if isinstance(faces, Tensor) else faces)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must have shape [V, 3], got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or (f.size and not np.issubdtype(f.dtype, np.integer)):
        raise ValueError(f"faces must be integer triangles [F, 3], got shape {f.shape} and dtype {f.dtype}")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"face indices must be in [0, {len(v)}), got [{f.min()}, {f.max()}]")
    return v, f.astype(np.int64)


def write_mesh_ply(
    path: PathLike, vertices: Any, faces: Any, encoding: PlyEncoding = "binary_little_endian"
) -> None:
    """Write a triangle mesh as PLY: ``float`` (float32) vertex ``x, y, z`` and ``uchar``-counted ``int``
    ``vertex_indices`` face lists. Binary little-endian by default, ASCII on request."""
    v, f = _mesh_arrays(vertices, faces)
    vertex = np.zeros(len(v), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    vertex["x"], vertex["y"], vertex["z"] = v[:, 0], v[:, 1], v[:, 2]
    face = np.zeros(len(f), dtype=[("n", "u1"), ("i0", "<i4"), ("i1", "<i4"), ("i2", "<i4")])
    face["n"], face["i0"], face["i1"], face["i2"] = 3, f[:, 0], f[:, 1], f[:, 2]
    _write_ply(
        path,
        [
            ("vertex", vertex, ["property float x", "property float y", "property float z"]),
            ("face", face, ["property list uchar int vertex_indices"]),
        ],
        encoding,
        "clipsketch curves as tubes",
    )


def write_mesh_obj(path: PathLike, vertices: Any, faces: Any) -> None:
    """Write a triangle mesh as a Wavefront OBJ (``v`` and 1-based ``f`` lines)."""
    v, f = _mesh_arrays(vertices, faces)
    lines = ["# clipsketch curves as tubes"]
    lines.extend(f"v {x!r} {y!r} {z!r}" for x, y, z in v.tolist())
    lines.extend(f"f {a} {b} {c}" for a, b, c in (f + 1).tolist())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="ascii")


