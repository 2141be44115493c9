"""Exporting a trained sketch: a JSON file that reloads it, polylines, tube meshes and per-camera SVG drawings.

Frames
------
A sketch is optimised in nerfstudio's *normalised* frame, into which the dataparser moved the dataset:
``x' = scale * (R x + t)`` with ``transform = [R | t]`` (3x4) and ``scale`` (see :mod:`nerfstudio_clipsketch.cameras`).
Renders and SVGs use the normalised frame, because the training cameras live there. Geometry meant for other tools
(PLY, OBJ) is written in *dataset* coordinates, the frame of the original capture (for example COLMAP's), so that
it lines up with the capture's own point cloud or mesh. Since the map is a similarity and Bézier curves are affine
invariant, the dataset-frame curve has the dataset-frame control points, and a stroke ``w`` wide in the normalised
frame is ``w / scale`` wide in the dataset frame.

The sketch JSON format (version 1)
----------------------------------
One UTF-8 JSON object::

    {
      "format": "clipsketch-sketch",        # always this string
      "version": 1,                          # bumped on any incompatible change
      "degree": 3,                           # Bézier degree n; every curve has n + 1 control points
      "num_curves": 64,
      "control_points": [[[x, y, z], ...], ...],          # [num_curves][n + 1][3], normalised frame
      "control_points_dataset": [[[x, y, z], ...], ...],  # the same points in dataset coordinates
      "dataparser_transform": [[r, r, r, t], [...], [...]],  # 3x4 [R | t], dataset -> normalised
      "dataparser_scale": 0.25,              # x' = scale * (R x + t)
      "stroke": {
        "width": 0.01,                       # full width at half opacity, normalised world units
        "width_dataset": 0.04,               # width / scale, dataset units
        "color": [0.0, 0.0, 0.0],            # RGB in [0, 1]
        "opacity": 1.0                       # peak opacity of each Gaussian, in [0, 1]
      },
      "background": [1.0, 1.0, 1.0]          # RGB in [0, 1]
    }

Numbers are written with Python's shortest round-tripping ``repr``, so float32 and float64 values reload bit for
bit. :meth:`Sketch.from_json` reads ``control_points`` (the normalised ones, which are what renders);
``control_points_dataset`` and ``width_dataset`` are derived, written for tools that want the capture's frame.

Pixels and SVG coordinates
--------------------------
As in :mod:`nerfstudio_clipsketch.rendering`, cameras are OpenCV world-to-camera matrices plus pinhole ``K``, and
the continuous pixel coordinate ``u = fx x / z + cx`` puts the centre of pixel column ``i`` at ``u = i + 0.5``. An SVG
written here has ``viewBox="0 0 width height"``, so its user coordinate *is* that continuous pixel coordinate: pixel
``(i, j)`` is the unit square ``[i, i + 1] x [j, j + 1]`` of the SVG, and a Gaussian that renders centred on pixel
``(i, j)`` is drawn at SVG ``(i + 0.5, j + 0.5)``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from xml.sax.saxutils import quoteattr

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_clipsketch.cameras import to_dataset_coordinates
from nerfstudio_clipsketch.curves import arc_length_parameters, evaluate
from nerfstudio_clipsketch.rendering import stroke_sigma

FORMAT_NAME = "clipsketch-sketch"
FORMAT_VERSION = 1

PathLike = str | os.PathLike
PlyEncoding = Literal["binary_little_endian", "ascii"]
Frame = Literal["dataset", "normalised"]


class SketchFormatError(ValueError):
    """A sketch JSON file that is not in the format this module writes (wrong tag, version or fields)."""


def _rgb(value: Sequence[float], name: str) -> tuple[float, float, float]:
    rgb = tuple(float(c) for c in value)
    if len(rgb) != 3 or not all(0.0 <= c <= 1.0 for c in rgb):
        raise ValueError(f"{name} must be three floats in [0, 1], got {value!r}")
    return rgb  # type: ignore[return-value]


def _as_numpy(array: Any) -> np.ndarray:
    """Arrays on any device, with or without autograd history, as float64 NumPy arrays."""
    if isinstance(array, Tensor):
        array = array.detach().cpu()
    return np.asarray(array, dtype=np.float64)


@dataclass(eq=False)
class Sketch:
    """A trained sketch: Bézier control points in nerfstudio's normalised frame, its stroke style, and the
    dataparser transform that relates that frame to the dataset's.

    Fields are validated and normalised on construction (tensors, floats, RGB tuples); ``==`` is identity, since
    the fields hold tensors."""

    control_points: Float[Tensor, "num_curves degree_plus_one 3"]
    """Control points in nerfstudio's normalised frame (NumPy arrays are converted to tensors)."""
    degree: int
    """Bézier degree; ``control_points.shape[1] == degree + 1``."""
    stroke_width: float
    """Full width of a stroke at half opacity, in normalised world units."""
    stroke_color: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """RGB stroke colour in [0, 1]."""
    opacity: float = 1.0
    """Peak opacity of each stroke Gaussian, in [0, 1]."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """RGB background colour in [0, 1]."""
    dataparser_transform: Float[Tensor, "3 4"] = field(default_factory=lambda: torch.eye(3, 4))
    """``[R | t]`` of the dataparser's ``x' = scale * (R x + t)``, dataset frame to normalised frame."""
    dataparser_scale: float = 1.0
    """``scale`` of the dataparser's ``x' = scale * (R x + t)``."""

    def __post_init__(self) -> None:
        self.control_points = torch.as_tensor(self.control_points)
        if not self.control_points.is_floating_point():
            self.control_points = self.control_points.float()
        self.dataparser_transform = torch.as_tensor(self.dataparser_transform, dtype=self.control_points.dtype)
        if isinstance(self.degree, bool) or int(self.degree) != self.degree or self.degree < 1:
            raise ValueError(f"Bézier degree must be an integer of at least 1, got {self.degree!r}")
        self.degree = int(self.degree)
        cp = self.control_points
        if cp.dim() != 3 or cp.shape[1:] != (self.degree + 1, 3):
            raise ValueError(
                f"control_points must have shape [num_curves, {self.degree + 1}, 3] for degree {self.degree}, "
                f"got {tuple(cp.shape)}"
            )
        if not bool(torch.isfinite(cp).all()):
            raise ValueError("control_points contain NaN or infinite values")
        if self.dataparser_transform.shape != (3, 4):
            raise ValueError(f"dataparser_transform must be 3x4, got shape {tuple(self.dataparser_transform.shape)}")
        self.stroke_width = float(self.stroke_width)
        if not (self.stroke_width > 0.0 and math.isfinite(self.stroke_width)):
            raise ValueError(f"stroke_width must be a positive finite number, got {self.stroke_width!r}")
        self.dataparser_scale = float(self.dataparser_scale)
        if not (self.dataparser_scale > 0.0 and math.isfinite(self.dataparser_scale)):
            raise ValueError(f"dataparser_scale must be a positive finite number, got {self.dataparser_scale!r}")
        self.opacity = float(self.opacity)
        if not 0.0 <= self.opacity <= 1.0:
            raise ValueError(f"opacity must be in [0, 1], got {self.opacity!r}")
        self.stroke_color = _rgb(self.stroke_color, "stroke_color")
        self.background = _rgb(self.background, "background")

    @property
    def num_curves(self) -> int:
        """Number of curves."""
        return int(self.control_points.shape[0])

    @property
    def stroke_width_dataset(self) -> float:
        """Stroke width in dataset units: ``stroke_width / dataparser_scale``."""
        return self.stroke_width / self.dataparser_scale

    @property
    def control_points_dataset(self) -> Float[Tensor, "num_curves degree_plus_one 3"]:
        """Control points in the dataset's frame."""
        return to_dataset_coordinates(self.control_points, self.dataparser_transform, self.dataparser_scale)

    def to_json(self, path: PathLike) -> None:
        """Write the sketch in the versioned JSON format described in this module's docstring."""
        data = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "degree": self.degree,
            "num_curves": self.num_curves,
            "control_points": self.control_points.detach().cpu().tolist(),
            "control_points_dataset": self.control_points_dataset.detach().cpu().tolist(),
            "dataparser_transform": self.dataparser_transform.detach().cpu().tolist(),
            "dataparser_scale": self.dataparser_scale,
            "stroke": {
                "width": self.stroke_width,
                "width_dataset": self.stroke_width_dataset,
                "color": list(self.stroke_color),
                "opacity": self.opacity,
            },
            "background": list(self.background),
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def from_json(
        cls, path: PathLike, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> Sketch:
        """Read a sketch written by :meth:`to_json`; control points come back as ``dtype`` on ``device``.

        Raises:
            SketchFormatError: the file is not JSON, not a ``clipsketch-sketch``, of another version, or a field is
                missing or malformed.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise SketchFormatError(f"{path} is not valid JSON: {e}") from e
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise SketchFormatError(f"{path} is not a {FORMAT_NAME!r} file (format: {found!r})")
        if data.get("version") != FORMAT_VERSION:
            raise SketchFormatError(
                f"{path} has {FORMAT_NAME} version {data.get('version')!r}; this reader understands version "
                f"{FORMAT_VERSION}"
            )
        try:
            stroke = data["stroke"]
            control_points = torch.tensor(data["control_points"], dtype=dtype, device=device)
            if control_points.numel() == 0:
                control_points = control_points.reshape(0, int(data["degree"]) + 1, 3)
            sketch = cls(
                control_points=control_points,
                degree=data["degree"],
                stroke_width=stroke["width"],
                stroke_color=tuple(stroke["color"]),
                opacity=stroke["opacity"],
                background=tuple(data["background"]),
                dataparser_transform=torch.tensor(data["dataparser_transform"], dtype=dtype, device=device),
                dataparser_scale=data["dataparser_scale"],
            )
        except (KeyError, TypeError, ValueError) as e:
            raise SketchFormatError(f"{path}: malformed {FORMAT_NAME} file: {e!r}") from e
        if sketch.num_curves != data.get("num_curves", sketch.num_curves):
            raise SketchFormatError(
                f"{path}: num_curves is {data['num_curves']!r} but there are {sketch.num_curves} curves"
            )
        return sketch


def sketch_polylines(
    sketch: Sketch, samples_per_curve: int = 100, frame: Frame = "dataset"
) -> Float[Tensor, "num_curves samples_per_curve 3"]:
    """Each curve sampled at ``samples_per_curve`` points evenly spaced in arc length, ends included.

    Args:
        sketch: The sketch.
        samples_per_curve: Points per polyline (at least 2).
        frame: ``"dataset"`` (the capture's coordinates, for PLY/OBJ) or ``"normalised"`` (nerfstudio's, for
            projecting into training cameras).
    """
    if frame not in ("dataset", "normalised"):
        raise ValueError(f"Unknown frame {frame!r}; expected 'dataset' or 'normalised'")
    cp = sketch.control_points.detach()
    points = evaluate(cp, arc_length_parameters(cp, samples_per_curve))
    if frame == "dataset":
        points = to_dataset_coordinates(points, sketch.dataparser_transform, sketch.dataparser_scale)
    return points


def sketch_gaussians(
    sketch: Sketch, samples_per_curve: int
) -> tuple[
    Float[Tensor, "num_gaussians 3"],
    Float[Tensor, "num_gaussians"],
    Float[Tensor, "num_gaussians"],
    Float[Tensor, "num_gaussians 3"],
]:
    """The Gaussians that draw ``sketch``, in the normalised frame, ready for :func:`rendering.render`.

    Each curve gets ``samples_per_curve`` isotropic Gaussians evenly spaced in arc length, with standard deviation
    :func:`rendering.stroke_sigma` of the stroke width, the sketch's opacity and its stroke colour.

    Returns:
        ``(means [N, 3], scales [N], opacities [N], colors [N, 3])`` with ``N = num_curves * samples_per_curve``,
        on the control points' device and dtype.
    """
    means = sketch_polylines(sketch, samples_per_curve, frame="normalised").reshape(-1, 3)
    n, like = means.shape[0], dict(device=means.device, dtype=means.dtype)
    scales = torch.full((n,), stroke_sigma(sketch.stroke_width), **like)
    opacities = torch.full((n,), sketch.opacity, **like)
    colors = torch.tensor(sketch.stroke_color, **like).expand(n, 3).contiguous()
    return means, scales, opacities, colors


def _polyline_arrays(polylines: Sequence[Any]) -> list[np.ndarray]:
    arrays = [_as_numpy(p) for p in polylines]
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
            from :func:`sketch_polylines`.
        encoding: ``"binary_little_endian"`` or ``"ascii"``.
    """
    arrays = _polyline_arrays(polylines)
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
    arrays = _polyline_arrays(polylines)
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
    p = _as_numpy(polyline)
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
        polylines: ``[M_i, 3]`` arrays or tensors. For a sketch, ``sketch_polylines(sketch)`` (dataset coordinates)
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
    for p in _polyline_arrays(polylines):
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


def _mesh_arrays(vertices: Any, faces: Any) -> tuple[np.ndarray, np.ndarray]:
    v = _as_numpy(vertices)
    f = np.asarray(faces.detach().cpu() if isinstance(faces, Tensor) else faces)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must have shape [V, 3], got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or (f.size and not np.issubdtype(f.dtype, np.integer)):
        raise ValueError(f"faces must be integer triangles [F, 3], got shape {f.shape} and dtype {f.dtype}")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"face indices must be in [0, {len(v)}), got [{f.min()}, {f.max()}]")
    return v, f.astype(np.int64)


def write_mesh_ply(path: PathLike, vertices: Any, faces: Any, encoding: PlyEncoding = "binary_little_endian") -> None:
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


def project_curves(
    points_world: Float[Tensor, "num_curves num_samples 3"],
    viewmat: Float[Tensor, "4 4"],
    K: Float[Tensor, "3 3"],
) -> tuple[Float[Tensor, "num_curves num_samples 2"], Float[Tensor, "num_curves num_samples"]]:
    """Pinhole projection of curve samples into one camera, with :mod:`rendering`'s conventions.

    Args:
        points_world: Curve samples in the camera's world frame (normalised frame for training cameras).
        viewmat: OpenCV world-to-camera matrix (:func:`cameras.get_viewmats`).
        K: Pinhole intrinsics.

    Returns:
        ``(pixels, depths)``: continuous pixel coordinates ``(u, v)``, with pixel ``(i, j)`` centred at
        ``(i + 0.5, j + 0.5)`` (= SVG coordinates, see the module docstring), and camera-space ``z``. Pixels are
        meaningful only where the depth is positive.
    """
    assert points_world.dim() == 3 and points_world.shape[-1] == 3, points_world.shape
    assert viewmat.shape == (4, 4), viewmat.shape
    assert K.shape == (3, 3), K.shape
    cam = points_world @ viewmat[:3, :3].T.to(points_world) + viewmat[:3, 3].to(points_world)
    z = cam[..., 2]
    K = K.to(points_world)
    u = K[0, 0] * cam[..., 0] / z + K[0, 2]
    v = K[1, 1] * cam[..., 1] / z + K[1, 2]
    return torch.stack([u, v], dim=-1), z


def _hex(rgb: Sequence[float]) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in _rgb(rgb, "colour"))


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
) -> int:
    """Write one camera's drawing as an SVG: a background rect and one ``<path>`` per visible curve.

    Each curve is a polyline of projected samples (``M x y L x y ...``; a perspective image of a Bézier is not a
    Bézier). Rows that are not finite lift the pen, so a curve that passes behind the camera becomes several
    subpaths of one ``<path>``. A curve is visible, and written, if it has two consecutive finite points and its
    bounding box, grown by half its stroke width, meets the image. Paths are drawn in the order given (put far
    curves first for painter's order); lines have round caps and joins.

    Args:
        path: Output file.
        projected_curves: ``[M_i, 2]`` SVG (= continuous pixel) coordinates per curve, e.g. from
            :func:`project_curves`, with non-finite rows where a sample is not drawable.
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
        points = _as_numpy(curve)
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
        paths.append(f'  <path d="{d}" stroke-width="{w:.4g}"/>')
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
) -> int:
    """Draw ``sketch`` as seen by one camera into an SVG (see :func:`write_svg`).

    Curves are sampled evenly in arc length in the normalised frame and projected with :func:`project_curves`;
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
    points = sketch_polylines(sketch, samples_per_curve, frame="normalised")
    pixels, depths = project_curves(points, viewmat.to(points), K.to(points))
    pixels, depths = _as_numpy(pixels), _as_numpy(depths)
    in_front = depths > near_plane
    pixels[~in_front] = np.nan
    count = in_front.sum(1)
    mean_depth = np.where(count > 0, (depths * in_front).sum(1) / np.maximum(count, 1), np.inf)
    K_np = _as_numpy(K)
    widths = math.sqrt(K_np[0, 0] * K_np[1, 1]) * sketch.stroke_width / mean_depth
    order = np.argsort(-mean_depth, kind="stable")
    return write_svg(
        path,
        [pixels[i] for i in order],
        [float(widths[i]) for i in order],
        width,
        height,
        sketch.stroke_color,
        sketch.background,
        opacity=sketch.opacity,
    )
