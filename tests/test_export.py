"""Exports are read back: JSON reloads to the same render, PLY/OBJ carry dataset coordinates, tubes are closed and
at the right radius, SVG paths land where the renderer draws."""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch

from nerfstudio_clipsketch import sketch as sketch_module
from nerfstudio_clipsketch.cameras import get_viewmats, project_points
from nerfstudio_clipsketch.curves import allocate_samples, curve_lengths
from nerfstudio_clipsketch.exporters.files import (
    write_mesh_obj,
    write_mesh_ply,
    write_polylines_obj,
    write_polylines_ply,
)
from nerfstudio_clipsketch.exporters.meshes import parallel_transport_frames, tube_mesh
from nerfstudio_clipsketch.exporters.svg import write_sketch_svg, write_svg
from nerfstudio_clipsketch.rendering import render
from nerfstudio_clipsketch.sketch import Sketch, SketchFormatError
from nerfstudio_clipsketch.strokes import stroke_sigma

plyfile = pytest.importorskip("plyfile")
trimesh = pytest.importorskip("trimesh")

SVG_NS = "{http://www.w3.org/2000/svg}"


def _rotation(axis, angle) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


R_DATA = _rotation([1.0, 2.0, 3.0], 0.7)
T_DATA = np.array([0.3, -1.2, 2.0])
SCALE = 0.37


def _to_dataset(points_normalised: np.ndarray) -> np.ndarray:
    """Independent inverse of x' = scale * (R x + t)."""
    return (np.asarray(points_normalised, dtype=np.float64) / SCALE - T_DATA) @ R_DATA


def _to_normalised(points_dataset: np.ndarray) -> np.ndarray:
    return SCALE * (np.asarray(points_dataset, dtype=np.float64) @ R_DATA.T + T_DATA)


def _sketch(num_curves=5, degree=3, seed=0) -> Sketch:
    g = torch.Generator().manual_seed(seed)
    cp = torch.rand(num_curves, degree + 1, 3, generator=g) - 0.5
    return Sketch(
        control_points=cp,
        degree=degree,
        stroke_width=0.03,
        stroke_color=(0.1, 0.2, 0.3),
        opacity=0.9,
        background=(1.0, 0.95, 0.9),
        dataparser_transform=torch.tensor(np.concatenate([R_DATA, T_DATA[:, None]], 1), dtype=torch.float32),
        dataparser_scale=SCALE,
    )


def _camera(position=(0.0, 0.0, 3.0), f=60.0, width=64, height=48):
    """An OpenGL (nerfstudio) camera with identity rotation: looks down -z."""
    c2w = torch.eye(4)[:3]
    c2w[:, 3] = torch.tensor(position)
    K = torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])
    return get_viewmats(c2w[None])[0], K, width, height


def _render(sketch: Sketch, samples=32):
    viewmat, K, width, height = _camera()
    means, scales, opacities, colors = sketch.gaussians(samples)
    return render(
        means,
        scales,
        opacities,
        colors,
        viewmat[None],
        K[None],
        width,
        height,
        torch.tensor(sketch.background),
        backend="torch",
    )


def test_sketch_validates_its_fields():
    cp = torch.zeros(2, 4, 3)
    with pytest.raises(ValueError, match="shape"):
        Sketch(control_points=cp, degree=2, stroke_width=0.01)
    with pytest.raises(ValueError, match="stroke_width"):
        Sketch(control_points=cp, degree=3, stroke_width=-1.0)
    with pytest.raises(ValueError, match="stroke_color"):
        Sketch(control_points=cp, degree=3, stroke_width=0.01, stroke_color=(0.0, 2.0, 0.0))
    with pytest.raises(ValueError, match="dataparser_scale"):
        Sketch(control_points=cp, degree=3, stroke_width=0.01, dataparser_scale=0.0)


def test_dataset_coordinates_undo_the_dataparser():
    sketch = _sketch()
    expected = _to_dataset(sketch.control_points.numpy())
    np.testing.assert_allclose(sketch.control_points_dataset.numpy(), expected, atol=1e-4)
    assert sketch.stroke_width_dataset == pytest.approx(0.03 / SCALE)


def test_json_round_trip_renders_identically(tmp_path):
    sketch = _sketch()
    path = tmp_path / "sketch.json"
    sketch.to_json(path)
    data = json.loads(path.read_text())
    assert data["format"] == "clipsketch-sketch" and data["version"] == 1
    assert data["degree"] == 3 and data["num_curves"] == 5
    np.testing.assert_allclose(data["control_points_dataset"], _to_dataset(data["control_points"]), atol=1e-4)
    assert data["stroke"]["width_dataset"] == pytest.approx(0.03 / SCALE)

    loaded = Sketch.from_json(path)
    assert torch.equal(loaded.control_points, sketch.control_points)
    assert torch.equal(loaded.dataparser_transform, sketch.dataparser_transform)
    assert (loaded.degree, loaded.stroke_width, loaded.stroke_color, loaded.opacity, loaded.background) == (
        sketch.degree,
        sketch.stroke_width,
        sketch.stroke_color,
        sketch.opacity,
        sketch.background,
    )
    assert loaded.dataparser_scale == sketch.dataparser_scale

    original, reloaded = _render(sketch), _render(loaded)
    assert original.alpha.max() > 0.5  # the sketch is in view, so the comparison means something
    torch.testing.assert_close(reloaded.rgb, original.rgb, rtol=0, atol=0)
    torch.testing.assert_close(reloaded.alpha, original.alpha, rtol=0, atol=0)


def test_from_json_rejects_other_files(tmp_path):
    sketch = _sketch()
    path = tmp_path / "sketch.json"
    sketch.to_json(path)
    data = json.loads(path.read_text())
    for key, value, message in [("format", "other", "not a 'clipsketch-sketch'"), ("version", 2, "version 2")]:
        bad = dict(data, **{key: value})
        bad_path = tmp_path / f"bad_{key}.json"
        bad_path.write_text(json.dumps(bad))
        with pytest.raises(SketchFormatError, match=message):
            Sketch.from_json(bad_path)
    del data["stroke"]
    (tmp_path / "missing.json").write_text(json.dumps(data))
    with pytest.raises(SketchFormatError, match="stroke"):
        Sketch.from_json(tmp_path / "missing.json")


def test_sketch_gaussians_follow_the_curves():
    sketch = _sketch()
    means, scales, opacities, colors = sketch.gaussians(16)
    assert means.shape == (5 * 16, 3)
    torch.testing.assert_close(scales, torch.full((80,), stroke_sigma(0.03)))
    torch.testing.assert_close(opacities, torch.full((80,), 0.9))
    torch.testing.assert_close(colors, torch.tensor([[0.1, 0.2, 0.3]]).expand(80, 3))
    # Shared by length, grouped by curve, each curve from its first to its last control point (where a Bézier curve
    # starts and ends): the Gaussians of each curve are where the curve is.
    counts = allocate_samples(curve_lengths(sketch.control_points), 80)
    starts = torch.cumsum(counts, 0) - counts
    torch.testing.assert_close(means[starts], sketch.control_points[:, 0])
    torch.testing.assert_close(means[starts + counts - 1], sketch.control_points[:, -1])
    assert counts.min() >= 2 and counts.max() > counts.min()  # longer curves get more


def _dataset_endpoints(sketch: Sketch) -> tuple[np.ndarray, np.ndarray]:
    cp = _to_dataset(sketch.control_points.numpy())
    return cp[:, 0], cp[:, -1]


@pytest.mark.parametrize("encoding", ["binary_little_endian", "ascii"])
def test_polylines_ply_reads_back_in_dataset_coordinates(tmp_path, encoding):
    sketch = _sketch()
    samples = 50
    polylines = sketch.polylines(samples, frame="dataset")
    path = tmp_path / "curves.ply"
    write_polylines_ply(path, polylines, encoding=encoding)
    ply = plyfile.PlyData.read(str(path))
    assert ply.text == (encoding == "ascii")
    vertex, edge = ply["vertex"], ply["edge"]
    assert vertex.count == 5 * samples and edge.count == 5 * (samples - 1)
    xyz = np.stack([vertex["x"], vertex["y"], vertex["z"]], -1).astype(np.float64).reshape(5, samples, 3)
    start, end = _dataset_endpoints(sketch)
    np.testing.assert_allclose(xyz[:, 0], start, atol=1e-4)
    np.testing.assert_allclose(xyz[:, -1], end, atol=1e-4)
    # Mapping the file's points forward lands on the normalised curve.
    normalised = sketch.polylines(samples, frame="normalised").numpy()
    np.testing.assert_allclose(_to_normalised(xyz), normalised, atol=1e-5)
    v1, v2, curve = np.asarray(edge["vertex1"]), np.asarray(edge["vertex2"]), np.asarray(vertex["curve"])
    np.testing.assert_array_equal(v2, v1 + 1)
    np.testing.assert_array_equal(curve[v1], curve[v2])
    np.testing.assert_array_equal(np.bincount(curve), [samples] * 5)


def test_polylines_obj_reads_back_in_dataset_coordinates(tmp_path):
    sketch = _sketch()
    samples = 20
    path = tmp_path / "curves.obj"
    write_polylines_obj(path, sketch.polylines(samples))
    vertices, lines = [], []
    for line in path.read_text().splitlines():
        if line.startswith("v "):
            vertices.append([float(x) for x in line.split()[1:]])
        elif line.startswith("l "):
            lines.append([int(i) - 1 for i in line.split()[1:]])
    vertices = np.array(vertices)
    assert vertices.shape == (5 * samples, 3)
    assert len(lines) == 5 and all(len(indices) == samples for indices in lines)
    start, end = _dataset_endpoints(sketch)
    np.testing.assert_allclose(vertices[[indices[0] for indices in lines]], start, atol=1e-4)
    np.testing.assert_allclose(vertices[[indices[-1] for indices in lines]], end, atol=1e-4)


def test_polyline_writers_reject_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match="polyline 1"):
        write_polylines_obj(tmp_path / "x.obj", [np.zeros((3, 3)), np.zeros((1, 3))])
    with pytest.raises(ValueError, match="encoding"):
        write_polylines_ply(tmp_path / "x.ply", [np.zeros((3, 3))], encoding="binary_big_endian")


def _s_curve(m=80) -> np.ndarray:
    """A planar curve whose curvature changes sign (a Frenet frame flips at the inflection)."""
    x = np.linspace(-1.0, 1.0, m)
    return np.stack([x, 0.3 * np.sin(np.pi * x), np.zeros_like(x)], -1)


def _helix(m=120) -> np.ndarray:
    t = np.linspace(0.0, 3.0 * np.pi, m)
    return np.stack([np.cos(t), np.sin(t), 0.2 * t], -1)


def test_parallel_transport_frames_do_not_flip():
    for polyline in (_s_curve(), _helix()):
        tangents, normals, binormals = parallel_transport_frames(polyline)
        np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-9)
        np.testing.assert_allclose((tangents * normals).sum(-1), 0.0, atol=1e-9)
        np.testing.assert_allclose(np.cross(normals, binormals), tangents, atol=1e-9)
        assert ((normals[1:] * normals[:-1]).sum(-1) > 0.95).all()
    # On a planar curve the transported frame keeps its orientation relative to the plane, through the inflection.
    tangents, normals, binormals = parallel_transport_frames(_s_curve())
    np.testing.assert_allclose(np.abs(normals[:, 2]), np.abs(normals[0, 2]), atol=1e-6)


def test_tube_of_a_straight_line_is_a_closed_prism():
    radius, sides, length = 0.1, 8, 2.0
    polyline = np.stack([np.zeros(11), np.zeros(11), np.linspace(0.0, length, 11)], -1)
    vertices, faces = tube_mesh([polyline], radius, sides)
    assert vertices.shape == (11 * sides + 2, 3) and faces.shape == (2 * sides * 11, 3)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    polygon_area = 0.5 * sides * radius**2 * math.sin(2 * math.pi / sides)
    assert mesh.volume == pytest.approx(polygon_area * length, rel=1e-9)  # positive: normals point outward


def test_tube_vertices_lie_at_the_radius():
    radius, sides = 0.02, 6
    polylines = [_s_curve(), _helix()]
    vertices, faces = tube_mesh(polylines, radius, sides)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    assert len(mesh.split(only_watertight=True)) == 2
    offset = 0
    for polyline in polylines:
        m = len(polyline)
        rings = vertices[offset : offset + m * sides].reshape(m, sides, 3)
        tangents, _, _ = parallel_transport_frames(polyline)
        spokes = rings - polyline[:, None]
        np.testing.assert_allclose(np.linalg.norm(spokes, axis=-1), radius, rtol=1e-9)
        np.testing.assert_allclose((spokes * tangents[:, None]).sum(-1), 0.0, atol=1e-12)
        # Distance to the polyline itself (nearest point on any segment), not just to the ring's centre.
        a, b = polyline[:-1], polyline[1:]
        p = rings.reshape(-1, 1, 3)
        t = np.clip(((p - a) * (b - a)).sum(-1) / ((b - a) ** 2).sum(-1), 0.0, 1.0)
        distance = np.linalg.norm(p - (a + t[..., None] * (b - a)), axis=-1).min(-1)
        np.testing.assert_allclose(distance, radius, rtol=0.02)
        np.testing.assert_allclose(vertices[offset + m * sides], polyline[0])  # cap centres
        np.testing.assert_allclose(vertices[offset + m * sides + 1], polyline[-1])
        offset += m * sides + 2


def test_tube_mesh_rejects_bad_arguments():
    with pytest.raises(ValueError, match="radius"):
        tube_mesh([_s_curve()], 0.0)
    with pytest.raises(ValueError, match="sides"):
        tube_mesh([_s_curve()], 0.1, sides=2)


@pytest.mark.parametrize("encoding", ["binary_little_endian", "ascii"])
def test_sketch_tube_mesh_files_read_back(tmp_path, encoding):
    sketch = _sketch(num_curves=3)
    samples, sides = 30, 8
    polylines = sketch.polylines(samples)
    vertices, faces = tube_mesh(polylines, sketch.stroke_width_dataset / 2, sides)
    assert vertices.shape == (3 * (samples * sides + 2), 3) and faces.shape == (3 * 2 * sides * samples, 3)

    write_mesh_ply(tmp_path / "tubes.ply", vertices, faces, encoding=encoding)
    ply = plyfile.PlyData.read(str(tmp_path / "tubes.ply"))
    xyz = np.stack([ply["vertex"]["x"], ply["vertex"]["y"], ply["vertex"]["z"]], -1)
    np.testing.assert_allclose(xyz, vertices, atol=1e-5)
    np.testing.assert_array_equal(np.stack(ply["face"]["vertex_indices"]), faces)

    write_mesh_obj(tmp_path / "tubes.obj", vertices, faces)
    mesh = trimesh.load(str(tmp_path / "tubes.obj"), process=False, force="mesh")
    np.testing.assert_allclose(mesh.vertices, vertices, atol=1e-12)
    np.testing.assert_array_equal(mesh.faces, faces)
    assert mesh.is_watertight
    # The tubes surround the curves in dataset coordinates: every curve's dataset end point is a cap centre.
    start, end = _dataset_endpoints(sketch)
    per_curve = samples * sides + 2
    np.testing.assert_allclose(vertices[samples * sides :: per_curve], start, atol=1e-4)
    np.testing.assert_allclose(vertices[samples * sides + 1 :: per_curve], end, atol=1e-4)


def test_projection_lands_where_the_renderer_draws():
    # Camera at the origin looking down -z (OpenGL); the point is 2 units in front.
    viewmat, K, width, height = _camera(position=(0.0, 0.0, 0.0), f=100.0)
    point = torch.tensor([[[0.09, 0.19, -2.0]]])
    pixels, depths = project_points(point[0], viewmat[None], K[None])
    # u = fx x / z + cx = 100 * 0.045 + 32; v = fy y / z + cy with OpenCV y = -0.19 (image y points down).
    torch.testing.assert_close(pixels[0, 0], torch.tensor([36.5, 14.5]))
    torch.testing.assert_close(depths[0, 0], torch.tensor(2.0))
    out = render(
        point[0],
        torch.tensor([0.01]),
        torch.tensor([1.0]),
        torch.ones(1, 3),
        viewmat[None],
        K[None],
        width,
        height,
        torch.zeros(3),
        backend="torch",
    )
    row, col = divmod(int(out.alpha[0, ..., 0].argmax()), width)
    assert (row, col) == (14, 36)  # the pixel whose centre is (36.5, 14.5)


def _svg_paths(path):
    root = ET.parse(path).getroot()
    assert root.tag == SVG_NS + "svg"
    return root, root.findall(f".//{SVG_NS}path")


def _path_points(d: str) -> list[list[tuple[float, float]]]:
    subpaths = []
    for chunk in re.split(r"M\s*", d.strip())[1:]:
        subpaths.append([tuple(float(v) for v in pair.split()) for pair in chunk.split("L")])
    return subpaths


def test_sketch_svg_draws_visible_curves_at_their_projections(tmp_path):
    def line(a, b):
        a, b = torch.tensor(a), torch.tensor(b)
        return torch.stack([a + (b - a) * k / 3 for k in range(4)])

    cp = torch.stack(
        [
            line([-0.2, 0.1, -2.0], [0.3, -0.1, -2.0]),  # in view, at depth 2
            line([-0.2, 0.1, 2.0], [0.3, -0.1, 2.0]),  # behind the camera
            line([10.0, 0.0, -2.0], [11.0, 0.0, -2.0]),  # in front but far outside the image
            line([0.0, 0.0, -1.0], [0.0, 0.1, 1.0]),  # crosses the camera plane: drawn up to the near plane
        ]
    )
    sketch = Sketch(control_points=cp, degree=3, stroke_width=0.02, stroke_color=(1.0, 0.0, 0.0))
    viewmat, K, width, height = _camera(position=(0.0, 0.0, 0.0), f=100.0)
    count = write_sketch_svg(tmp_path / "view.svg", sketch, viewmat, K, width, height, samples_per_curve=40)
    root, paths = _svg_paths(tmp_path / "view.svg")
    assert count == len(paths) == 2
    assert root.get("viewBox") == f"0 0 {width} {height}"
    rect = root.find(f"{SVG_NS}rect")
    assert rect is not None and rect.get("fill") == "#ffffff"
    group = root.find(f"{SVG_NS}g")
    assert group.get("stroke-linecap") == "round" and group.get("stroke") == "#ff0000"

    widths = sorted(float(p.get("stroke-width")) for p in paths)
    # Painter's order: the far curve (depth 2) comes first.
    first = _path_points(paths[0].get("d"))
    assert len(first) == 1 and len(first[0]) == 40
    # (-0.2, 0.1, -2) -> (100 * -0.1 + 32, 100 * -0.05 + 24); (0.3, -0.1, -2) -> (47, 29).
    assert first[0][0] == pytest.approx((22.0, 19.0), abs=1e-3)
    assert first[0][-1] == pytest.approx((47.0, 29.0), abs=1e-3)
    assert float(paths[0].get("stroke-width")) == pytest.approx(100 * 0.02 / 2.0, rel=1e-3)
    assert widths[1] > widths[0]  # the crossing curve is nearer, so drawn wider
    crossing = _path_points(paths[1].get("d"))
    assert len(crossing) == 1 and 10 <= len(crossing[0]) < 40


def test_write_svg_lifts_the_pen_at_non_finite_points(tmp_path):
    curve = np.array([[1.0, 1.0], [5.0, 5.0], [np.nan, np.nan], [10.0, 10.0], [12.0, 8.0], [np.inf, 0.0], [3.0, 3.0]])
    count = write_svg(tmp_path / "a.svg", [curve, np.full((3, 2), np.nan)], [2.0, 2.0], 20, 16)
    _, paths = _svg_paths(tmp_path / "a.svg")
    assert count == len(paths) == 1
    assert _path_points(paths[0].get("d")) == [[(1.0, 1.0), (5.0, 5.0)], [(10.0, 10.0), (12.0, 8.0)]]
    with pytest.raises(ValueError, match="stroke widths"):
        write_svg(tmp_path / "b.svg", [curve], [1.0, 2.0], 20, 16)


def test_module_docstring_documents_every_json_key(tmp_path):
    _sketch().to_json(tmp_path / "sketch.json")
    data = json.loads((tmp_path / "sketch.json").read_text())
    for key in [*data, *data["stroke"]]:
        assert f'"{key}"' in sketch_module.__doc__, key
