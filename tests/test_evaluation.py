"""Known-answer tests for the geometry metrics and the world-position loader."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from nerfstudio.cameras.cameras import Cameras

from nerfstudio_clipsketch.evaluation.metrics import (
    absolute_thresholds,
    bbox_diagonal,
    curve_metrics,
    foreground_touch,
    nearest_distances,
    surface_metrics,
)
from nerfstudio_clipsketch.evaluation.references import load_world_pos_points, read_exr
from nerfstudio_clipsketch.evaluation.tables import format_table


def _segment(start, end, num: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, num)[:, None]
    return (1 - t) * np.asarray(start, dtype=np.float64) + t * np.asarray(end, dtype=np.float64)


# A unit segment along x: diagonal 1, so tau@1% = 0.01; samples every 0.001.
GT_LINE = _segment((0, 0, 0), (1, 0, 0), 1001)


def test_thresholds_are_fractions_of_the_bbox_diagonal():
    points = np.array([[1.0, 2.0, 3.0], [4.0, 6.0, 3.0]])  # extent (3, 4, 0): diagonal 5
    assert bbox_diagonal(points) == pytest.approx(5.0)
    assert absolute_thresholds(points) == pytest.approx({"0.5%": 0.025, "1%": 0.05, "2%": 0.1})
    with pytest.raises(ValueError, match="thresholds"):
        absolute_thresholds(points, (0.0, 0.01))
    with pytest.raises(ValueError, match=r"\[M, 3\]"):
        bbox_diagonal(np.zeros((4, 2)))


def test_nearest_distances_match_brute_force():
    # Far from the origin, as the real scenes are (around (12.8, 13.2, 5.6)); brute force is exact in float64.
    generator = torch.Generator().manual_seed(0)
    offset = torch.tensor([1000.0, -2000.0, 500.0], dtype=torch.float64)
    query = torch.rand(1300, 3, generator=generator, dtype=torch.float64) + offset
    reference = torch.rand(5000, 3, generator=generator, dtype=torch.float64) + offset
    expected = torch.cdist(query, reference, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values
    torch.testing.assert_close(nearest_distances(query, reference), expected, rtol=1e-12, atol=1e-12)


def test_curves_on_the_ground_truth_score_perfectly():
    pred = np.random.default_rng(0).permutation(GT_LINE)
    metrics = curve_metrics(pred, GT_LINE)
    assert metrics["chamfer"] == 0.0
    for label in ("0.5%", "1%", "2%"):
        assert metrics[f"precision@{label}"] == 1.0
        assert metrics[f"recall@{label}"] == 1.0
        assert metrics[f"f1@{label}"] == 1.0


def test_curves_shifted_by_two_tau_miss_at_tau():
    metrics = curve_metrics(GT_LINE + np.array([0.0, 0.02, 0.0]), GT_LINE)
    assert metrics["tau@1%"] == pytest.approx(0.01)
    assert metrics["chamfer"] == pytest.approx(0.02)
    for label in ("0.5%", "1%"):
        assert metrics[f"precision@{label}"] == 0.0
        assert metrics[f"recall@{label}"] == 0.0
        assert metrics[f"f1@{label}"] == 0.0


def test_half_a_curve_is_precise_but_recalls_half():
    pred = GT_LINE[GT_LINE[:, 0] <= 0.5]  # 501 samples, x in [0, 0.5]
    metrics = curve_metrics(pred, GT_LINE, thresholds=(0.01,))
    assert metrics["precision@1%"] == 1.0
    # GT samples within 0.01 of the half: x <= 0.51, i.e. 511 of 1001 (with float slack at the boundary).
    assert metrics["recall@1%"] == pytest.approx(511 / 1001, abs=1.5 / 1001)
    recall = metrics["recall@1%"]
    assert metrics["f1@1%"] == pytest.approx(2 * recall / (1 + recall))
    # Directed means: pred->gt is 0; gt->pred is the mean of max(0, x - 0.5) over the GT samples.
    expected = 0.5 * np.maximum(GT_LINE[:, 0] - 0.5, 0.0).mean()
    assert metrics["chamfer"] == pytest.approx(expected, rel=1e-6)


def test_curve_covering_one_of_two_surface_sheets_covers_half():
    near = _segment((0, 0, 0), (1, 0, 0), 201)
    far = _segment((0, 0.5, 0), (1, 0.5, 0), 201)
    metrics = surface_metrics(near, np.concatenate([near, far]))
    for label in ("0.5%", "1%", "2%"):
        assert metrics[f"coverage@{label}"] == 0.5
        assert metrics[f"precision@{label}"] == 1.0
    assert metrics["mean_distance"] == 0.0


def test_surface_distance_statistics_and_precision():
    # A plane z = 0 sampled on a 0.25 grid over [0, 10]^2 (diagonal ~14.14), and 100 curve samples above grid nodes
    # at heights 0, 0.001, ..., 0.099: each sample's nearest surface point is the node straight below it.
    xs = np.arange(0.0, 10.0 + 1e-9, 0.25)
    gx, gy = np.meshgrid(xs, xs, indexing="ij")
    surface = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], axis=-1)
    heights = np.arange(100) * 0.001
    curve = np.stack([np.full(100, 5.0), np.full(100, 5.0), heights], axis=-1)
    metrics = surface_metrics(curve, surface, thresholds=(0.005,))
    assert metrics["mean_distance"] == pytest.approx(heights.mean())
    assert metrics["p95_distance"] == pytest.approx(np.percentile(heights, 95))
    tau = 0.005 * math.hypot(10.0, 10.0)
    assert metrics["tau@0.5%"] == pytest.approx(tau)
    assert metrics["precision@0.5%"] == pytest.approx(np.mean(heights <= tau))
    assert metrics["coverage@0.5%"] == pytest.approx(1 / surface.shape[0])  # only the node under the curve


def test_foreground_touch_counts_foreground_within_the_dilation():
    height, width = 16, 40
    mask = np.zeros((height, width), dtype=bool)
    mask[:, 10:30] = True  # 320 foreground pixels
    alpha = np.zeros((height, width, 1), dtype=np.float32)
    alpha[:, 20] = 1.0  # a vertical stroke through the middle of the mask
    # A disc of radius 2 around a full-height line covers columns 18..22: 5 of the 20 foreground columns.
    assert foreground_touch(alpha, mask) == pytest.approx(5 / 20)
    assert foreground_touch(alpha, mask, dilation_px=0) == pytest.approx(1 / 20)
    # A stroke two columns outside the mask still touches its edge column.
    outside = np.zeros_like(alpha)
    outside[:, 8] = 1.0
    assert foreground_touch(outside, mask) == pytest.approx(1 / 20)
    # Faint ink does not count.
    assert foreground_touch(0.4 * alpha, mask) == 0.0


def test_foreground_touch_rejects_bad_inputs():
    with pytest.raises(ValueError, match="no foreground"):
        foreground_touch(np.ones((4, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="one size"):
        foreground_touch(np.ones((4, 4)), np.ones((4, 5)))


def test_format_table_puts_thresholds_in_columns():
    table = format_table({"chamfer": 0.25, "precision@1%": 0.5, "precision@2%": 0.75, "recall@1%": 1.0})
    lines = table.splitlines()
    assert lines[0].split() == ["chamfer", "0.25"]
    header = next(line for line in lines if line.startswith("metric"))
    assert header.split() == ["metric", "1%", "2%"]
    assert next(line for line in lines if line.startswith("precision")).split() == ["precision", "0.5", "0.75"]
    assert next(line for line in lines if line.startswith("recall")).split() == ["recall", "1"]


# --- world-position EXRs --------------------------------------------------------------------------------------------


def _look_at_opengl(eye: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """OpenGL camera-to-world [4, 4] (x right, y up, z backward) at ``eye`` looking at ``target``."""
    back = eye - target
    back = back / np.linalg.norm(back)
    right = np.cross(np.asarray(up), back)
    right = right / np.linalg.norm(right)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([right, np.cross(back, right), back], axis=1)
    c2w[:3, 3] = eye
    return c2w


def _write_exr(path, rgb: np.ndarray) -> None:
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    import cv2

    rgba = np.concatenate([rgb, np.ones_like(rgb[..., :1])], axis=-1).astype(np.float32)
    assert cv2.imwrite(str(path), rgba[..., [2, 1, 0, 3]], [cv2.IMWRITE_EXR_TYPE, cv2.IMWRITE_EXR_TYPE_FLOAT])


def test_read_exr_returns_rgb_order(tmp_path):
    rgb = np.zeros((3, 5, 3), dtype=np.float32)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 1.0, 2.0, 3.0
    _write_exr(tmp_path / "a.exr", rgb)
    image = read_exr(tmp_path / "a.exr")
    assert image.shape == (3, 5, 4)
    np.testing.assert_array_equal(image[..., :3], rgb)


def test_world_pos_filter_keeps_the_surface_and_drops_silhouette_blends(tmp_path):
    # A camera 6 units from a tilted plane through (12, 13, 5), far from the world origin as in the real scenes; a
    # non-square image so that swapped axes would show.
    width, height, angle_x = 24, 16, 0.7
    target = np.array([12.0, 13.0, 5.0])
    c2w = _look_at_opengl(target + np.array([4.0, -4.0, 2.0]), target)
    normal = np.array([0.3, -1.0, 0.4])
    normal /= np.linalg.norm(normal)

    fx = 0.5 * width / math.tan(0.5 * angle_x)
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    # Rays through pixel centres (OpenCV: x right, y down, z forward) turned into OpenGL camera axes, then world.
    d_cv = np.stack([(cols + 0.5 - width / 2) / fx, (rows + 0.5 - height / 2) / fx, np.ones_like(rows, float)], -1)
    d_world = (d_cv * np.array([1.0, -1.0, -1.0])) @ c2w[:3, :3].T
    eye = c2w[:3, 3]
    t = ((target - eye) @ normal) / (d_world @ normal)
    surface = eye + t[..., None] * d_world  # [H, W, 3]

    world_pos = np.zeros((height, width, 3))
    inside = (rows >= 3) & (rows < 13) & (cols >= 5) & (cols < 19)
    world_pos[inside] = surface[inside]
    # Silhouette pixels: a blend of the surface with the background's (0, 0, 0), i.e. on the line toward the origin.
    border = ((rows == 2) | (rows == 13)) & (cols >= 5) & (cols < 19) | ((cols == 4) | (cols == 19)) & (rows >= 3) & (
        rows < 13
    )
    weights = np.linspace(0.2, 0.9, int(border.sum()))
    world_pos[border] = weights[:, None] * surface[border]

    (tmp_path / "world_pos" / "test").mkdir(parents=True)
    exr = tmp_path / "world_pos" / "test" / "r_0.exr"
    _write_exr(exr, world_pos)
    camera = Cameras(
        camera_to_worlds=torch.tensor(c2w[None, :3], dtype=torch.float32),
        fx=fx, fy=fx, cx=width / 2, cy=height / 2, width=width, height=height,
    )

    points = load_world_pos_points([exr], camera)
    expected = surface[inside].astype(np.float32)
    assert points.shape == expected.shape
    np.testing.assert_allclose(np.sort(points, axis=0), np.sort(expected, axis=0), atol=1e-5)
    # Every kept point lies on the plane: no blend got through.
    assert np.abs((points - target) @ normal).max() < 1e-4

    strided = load_world_pos_points([exr], camera, stride=2)
    assert strided.shape == (int((inside[::2, ::2]).sum()), 3)

    with pytest.raises(FileNotFoundError, match="val"):
        load_world_pos_points([tmp_path / "world_pos" / "val" / "r_0.exr"], camera)


def test_world_pos_filter_works_in_the_dataparsers_normalised_frame(tmp_path):
    """Cameras normalised by a dataparser (x' = scale (R x + t)) keep the same pixels, returned in dataset units."""
    width = height = 12
    fx = 10.0
    c2w = _look_at_opengl(np.array([4.0, 0.0, 0.0]), np.zeros(3))
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    d_cv = np.stack([(cols + 0.5 - width / 2) / fx, (rows + 0.5 - height / 2) / fx, np.ones_like(rows, float)], -1)
    d_world = (d_cv * np.array([1.0, -1.0, -1.0])) @ c2w[:3, :3].T
    surface = c2w[:3, 3] + 4.0 * d_world / np.abs(d_world[..., :1])  # the plane x = 0
    _write_exr(tmp_path / "r_0.exr", surface)
    angle = 0.4
    R = np.array([[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0], [0, 0, 1.0]])
    t, scale = np.array([1.0, -2.0, 0.5]), 0.3
    normalised = np.eye(4)
    normalised[:3, :3] = R @ c2w[:3, :3]
    normalised[:3, 3] = scale * (R @ c2w[:3, 3] + t)
    camera = Cameras(
        camera_to_worlds=torch.tensor(normalised[None, :3], dtype=torch.float32),
        fx=fx, fy=fx, cx=width / 2, cy=height / 2, width=width, height=height,
    )
    transform = torch.tensor(np.concatenate([R, t[:, None]], 1), dtype=torch.float32)
    points = load_world_pos_points([tmp_path / "r_0.exr"], camera, transform, scale)
    assert points.shape == (width * height, 3)
    np.testing.assert_allclose(np.sort(points, axis=0), np.sort(surface.reshape(-1, 3), axis=0), atol=1e-4)
    # Without the normalisation the positions miss their pixels: almost none are kept.
    assert len(load_world_pos_points([tmp_path / "r_0.exr"], camera)) < 0.05 * width * height


# --- ABC-NEF ----------------------------------------------------------------------------------------------------------


def test_abcnef_reader_reproduces_nefs_normalisation(tmp_path):
    """A hand-made object: a box 4 x 2 x 1 with min corner (10, -3, 5); two sharp curves and one smooth one. NEF
    scales by 1 / (largest bbox range) and centres the box on (0.5, 0.5, 0.5); duplicates are kept."""
    from nerfstudio_clipsketch.evaluation.references import abcnef_ground_truth

    vertices = [(10, -3, 5), (14, -3, 5), (14, -1, 5), (14, -1, 6), (12, -2, 5.5)]
    (tmp_path / "part_trimesh_000.obj").write_text("".join(f"v {x} {y} {z}\n" for x, y, z in vertices) + "f 1 2 3\n")
    features = (
        "curves:\n"
        "- {sharp: true, type: Line, vert_indices: [0, 1]}\n"
        "- {sharp: false, type: Circle, vert_indices: [4]}\n"
        "- {sharp: true, type: Line, vert_indices: [1, 2, 3]}\n"
        "surfaces: []\n"
    )
    (tmp_path / "part_features_000.yml").write_text(features)
    (tmp_path / "stats.json").write_text(json.dumps({"bbox": [10, -3, 5, 14, -1, 6, 4, 2, 1]}))
    points = abcnef_ground_truth(tmp_path)
    raw = np.array([vertices[i] for i in (0, 1, 1, 2, 3)], dtype=np.float64)
    expected = raw / 4.0 + (0.5 - np.array([12.0, -2.0, 5.5]) / 4.0)
    np.testing.assert_allclose(points, expected)
    np.testing.assert_allclose((points.min(0) + points.max(0)) / 2, [0.5, 0.5, 0.5])
    assert points.max(0)[0] - points.min(0)[0] == pytest.approx(1.0)  # the largest range becomes 1


def test_nef_metrics_voxelise_the_prediction_and_score_like_nef():
    from nerfstudio_clipsketch.evaluation.metrics import nef_metrics, voxel_downsample

    gt = _segment((0, 0, 0), (1, 0, 0), 64)  # one point per voxel along x
    dense = _segment((0, 0, 0), (1, 0, 0), 5000)
    assert len(voxel_downsample(dense)) == 65  # the grid starts half a voxel below the minimum
    perfect = nef_metrics(dense, gt)
    assert perfect["f@0.01"] == 1.0 and perfect["f@0.02"] == 1.0 and perfect["iou@0.02"] == 1.0
    assert perfect["chamfer"] < 0.01
    shifted = nef_metrics(dense + np.array([0.0, 0.015, 0.0]), gt)  # 0.015 away: within 0.02, not 0.01
    assert shifted["f@0.01"] == 0.0 and shifted["f@0.02"] == 1.0
    half = nef_metrics(_segment((0, 0, 0), (0.5, 0, 0), 5000), gt)
    assert half["precision@0.02"] == 1.0 and half["recall@0.02"] == pytest.approx(0.5, abs=0.05)
    assert half["iou@0.02"] == pytest.approx(half["recall@0.02"], abs=0.05)  # = c / (N_p + N_g - c), c = N_p
