"""The benchmark family (benchmarks/family): ground-truth sharp edges, the rasterizer against the project's own
projection, and a written part read back by the project's dataparser and ABC-NEF reader. Needs trimesh and manifold3d
(the test extra)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import trimesh

from benchmarks.family.ground_truth import ground_truth, normalise, sharp_edges
from benchmarks.family.parts import PARTS
from benchmarks.family.raster import render
from benchmarks.family.scene import ensure_family, write_part
from benchmarks.family.shapes import box, cylinder, to_trimesh
from benchmarks.family.views import focal_length, poses
from nerfstudio_clipsketch.cameras import get_viewmats, project_points


def _project(points: np.ndarray, camera_to_worlds: torch.Tensor, Ks: torch.Tensor) -> np.ndarray:
    """``[C, N, 2]`` pixel coordinates by the project's own pinhole projection (OpenGL c2w in)."""
    uv, depth = project_points(torch.from_numpy(points), get_viewmats(camera_to_worlds[:, :3].double()), Ks.double())
    assert (depth > 0).all()
    return uv.numpy()


def _hull_mask(corners_uv: np.ndarray, size: int) -> np.ndarray:
    """Pixels whose centre lies inside the convex hull of ``corners_uv`` [N, 2]."""
    from scipy.spatial import ConvexHull

    equations = ConvexHull(corners_uv).equations  # a u + b v + c <= 0 inside
    rows, cols = np.mgrid[:size, :size]
    centres = np.stack([cols + 0.5, rows + 0.5], -1).reshape(-1, 2)
    return ((centres @ equations[:, :2].T + equations[:, 2]) <= 0).all(1).reshape(size, size)


def _intrinsics(size: int, count: int) -> torch.Tensor:
    f = focal_length(size)
    return torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]], dtype=torch.float64).expand(count, 3, 3)


# --- ground truth -------------------------------------------------------------------------------------------------


def test_a_cubes_ground_truth_is_its_twelve_edges_densely_sampled():
    spacing = 0.02
    gt = ground_truth(normalise(to_trimesh(box((2.0, 2.0, 2.0)))), spacing)
    assert len(gt.curves) == 12 and set(gt.types) == {"Line"}
    points = gt.points
    on_face = (np.abs(points) < 1e-9) | (np.abs(points - 1) < 1e-9)
    assert (on_face.sum(1) >= 2).all(), "a ground-truth point lies off the cube's edges"
    covered = 0
    for free in range(3):  # the 4 edges along axis `free`: the other two coordinates are 0 or 1
        others = [a for a in range(3) if a != free]
        for corner in [(0, 0), (0, 1), (1, 0), (1, 1)]:
            on_edge = np.all([np.abs(points[:, a] - c) < 1e-9 for a, c in zip(others, corner)], axis=0)
            along = np.unique(points[on_edge, free])
            if len(along) and along[0] == 0 and along[-1] == 1 and np.diff(along).max() <= spacing + 1e-9:
                covered += 1
    assert covered == 12


def test_a_smooth_sphere_has_no_sharp_edge_and_a_coarse_one_has_all():
    assert len(sharp_edges(trimesh.creation.icosphere(subdivisions=3))) == 0
    icosahedron = trimesh.creation.icosphere(subdivisions=0)  # faces meet at 41.8 degrees
    assert len(sharp_edges(icosahedron)) == len(icosahedron.edges_unique) == 30


def test_a_cylinders_ground_truth_is_its_two_rims_without_a_seam():
    mesh = normalise(to_trimesh(cylinder(10.0, 30.0)))
    gt = ground_truth(mesh, spacing=0.01)
    assert len(gt.curves) == 2 and gt.types == ["Circle", "Circle"]
    assert all(curve[0] == curve[-1] for curve in gt.curves), "rims are closed loops"
    points = gt.points
    z_low, z_high = mesh.bounds[:, 2]
    assert np.all(np.isclose(points[:, 2], z_low) | np.isclose(points[:, 2], z_high)), "a point off the rims (seam?)"
    radius = np.linalg.norm(points[:, :2] - 0.5, axis=1)
    assert radius.max() == pytest.approx(1 / 3, abs=1e-6) and radius.min() > (1 / 3) * math.cos(math.pi / 24)
    for z in (z_low, z_high):
        angles = np.sort(np.arctan2(*(points[np.isclose(points[:, 2], z), :2] - 0.5).T[::-1]))
        assert np.diff(np.r_[angles, angles[0] + 2 * np.pi]).max() < 0.05, "a rim is not covered all round"


def test_every_part_is_closed_in_the_unit_cube_with_no_edge_near_the_threshold():
    kinds = set()
    assert len(PARTS) >= 24
    for name, part in PARTS.items():
        mesh = normalise(part.mesh())
        assert mesh.is_watertight, name
        low, high = mesh.bounds
        np.testing.assert_allclose((low + high) / 2, 0.5, atol=1e-8, err_msg=name)
        assert np.max(high - low) == pytest.approx(1.0, abs=1e-8), name
        angles = np.degrees(mesh.face_adjacency_angles)
        assert not np.any((angles > 20) & (angles < 40)), f"{name}: an edge within 10 degrees of the 30-degree cut"
        assert len(ground_truth(mesh).curves) > 0, name
        kinds.add(part.kind)
    assert kinds == {"flat", "thin", "round", "boxy"}


# --- rendering and cameras ----------------------------------------------------------------------------------------


def test_cameras_are_posed_like_abcnefs():
    from nerfstudio_clipsketch.cameras import look_at_centre

    for split, count in (("train", 50), ("val", 4)):
        c2w = poses(split, count)
        np.testing.assert_allclose(np.linalg.det(c2w[:, :3, :3]), 1.0, atol=1e-9)  # proper rotations, no mirror
        np.testing.assert_allclose(np.linalg.norm(c2w[:, :3, 3], axis=1), 4.0)  # 4 from the world origin
        np.testing.assert_allclose(c2w[:, 2, 0], 0.0, atol=1e-12)  # no roll: the camera's x axis is horizontal
        assert (c2w[:, 2, 1] > 0).all()  # image up points up the world's z
        centre = look_at_centre(torch.from_numpy(c2w[:, :3]))
        np.testing.assert_allclose(centre.numpy(), 0.5, atol=1e-9)


@pytest.mark.parametrize("view", [0, 1, 2, 3])
def test_a_rendered_boxs_silhouette_is_the_hull_of_its_corners_projected_by_the_project(view):
    size = 64
    mesh = normalise(to_trimesh(box((3.0, 2.0, 1.5))))
    c2w = poses("val", 4)[view]
    alpha = render(mesh, c2w, focal_length(size), size, size).rgba[..., 3] > 0
    corners = np.array(np.meshgrid(*mesh.bounds.T)).reshape(3, -1).T
    uv = _project(corners, torch.from_numpy(c2w)[None], _intrinsics(size, 1))[0]
    hull = _hull_mask(uv, size)
    assert hull.sum() > 100
    wrong = np.argwhere(alpha != hull)
    assert len(wrong) <= 2, f"{len(wrong)} pixels differ from the projected hull"


def test_a_written_part_reads_back_through_the_projects_parser_and_abcnef_reader(tmp_path):
    from PIL import Image

    from nerfstudio_clipsketch.dataparsers.auto import ClipSketchDataParserConfig, detect_layout
    from nerfstudio_clipsketch.evaluation.references import abcnef_ground_truth

    size, folder = 48, tmp_path / "plate_holes"
    written = write_part(PARTS["plate_holes"], folder, size=size)
    assert detect_layout(folder) == "blender"
    parser = ClipSketchDataParserConfig(data=folder).setup()
    train, val = parser.get_dataparser_outputs("train"), parser.get_dataparser_outputs("val")
    assert len(train.image_filenames) == 50 and len(val.image_filenames) == 4
    assert train.metadata["clipsketch_abcnef_gt"] == str(folder / "gt")

    gt = abcnef_ground_truth(train.metadata["clipsketch_abcnef_gt"])
    np.testing.assert_allclose(gt, written.points, atol=1e-8)
    assert len(gt) == json.loads((folder / "family.json").read_text())["num_gt_points"]
    surface = np.load(folder / "gt" / "surface.npy")
    assert surface.shape[1] == 3 and surface.min() >= -1e-6 and surface.max() <= 1 + 1e-6

    # The ground truth, projected by the parser's cameras, lands on the object in each image (1-pixel slack for
    # points on the silhouette) and the bbox corners' hull holds every object pixel.
    cameras = train.cameras[:8]
    Ks = cameras.get_intrinsics_matrices()
    uv = _project(gt, cameras.camera_to_worlds, Ks)
    corners = _project(np.array(np.meshgrid(*[[gt[:, a].min(), gt[:, a].max()] for a in range(3)])).reshape(3, -1).T,
                       cameras.camera_to_worlds, Ks)  # fmt: skip
    for i in range(len(cameras)):
        alpha = np.asarray(Image.open(train.image_filenames[i]))[..., 3] > 0
        grown = np.pad(alpha, 1)
        grown = np.any(
            [grown[1 + dr : 1 + dr + size, 1 + dc : 1 + dc + size] for dr in (-1, 0, 1) for dc in (-1, 0, 1)], 0
        )
        pixels = np.clip(np.floor(uv[i]).astype(int), 0, size - 1)
        assert grown[pixels[:, 1], pixels[:, 0]].mean() > 0.99, f"view {i}: ground truth off the object"
        assert not (alpha & ~_hull_mask(corners[i], size)).any(), f"view {i}: object pixels outside the bbox's hull"


def test_the_cache_generates_only_what_is_missing(tmp_path):
    (folder,) = ensure_family(tmp_path, ["washer"], size=16, log=lambda _: None)
    stamp = (folder / "family.json").stat().st_mtime_ns
    ensure_family(tmp_path, ["washer"], size=16, log=lambda _: None)
    assert (folder / "family.json").stat().st_mtime_ns == stamp
    ensure_family(tmp_path, ["washer"], size=20, log=lambda _: None)
    assert json.loads((folder / "family.json").read_text())["size"] == 20
    with pytest.raises(KeyError, match="washer"):
        ensure_family(tmp_path, ["no_such_part"], size=16)
