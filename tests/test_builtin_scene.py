"""The built-in scene: generated once, readable by nerfstudio's Blender parser, and drawn where its curves are."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig
from PIL import Image

from nerfstudio_clipsketch.cameras import get_viewmats
from nerfstudio_clipsketch.curves import evaluate
from nerfstudio_clipsketch.dataparsers import ClipSketchDataError
from nerfstudio_clipsketch.dataparsers import builtin as builtin_scene
from nerfstudio_clipsketch.dataparsers.builtin import (
    builtin_curves,
    default_cache_root,
    ensure_builtin_scene,
    load_ground_truth_curves,
)

SIZE = 64


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return ensure_builtin_scene(tmp_path_factory.mktemp("cache"), image_size=SIZE)


def test_layout_splits_and_images(scene: Path):
    assert scene.name == f"builtin-{builtin_scene.BUILTIN_SCENE_VERSION}-{SIZE}px"
    assert not [p for p in scene.parent.iterdir() if p != scene]  # no temporary folder left behind
    for split, count in {"train": 40, "val": 5, "test": 5}.items():
        meta = json.loads((scene / f"transforms_{split}.json").read_text())
        assert len(meta["frames"]) == count
        for frame in meta["frames"]:
            with Image.open(scene / (frame["file_path"].removeprefix("./") + ".png")) as image:
                assert (image.mode, image.size) == ("RGB", (SIZE, SIZE))


def test_ground_truth_curves(scene: Path):
    curves = load_ground_truth_curves(scene)
    control_points, names = builtin_curves()
    assert 12 <= control_points.shape[0] <= 30 and len(names) == control_points.shape[0]
    torch.testing.assert_close(curves.control_points_dataset, control_points)
    assert curves.degree == 3 and curves.stroke_width > 0
    assert curves.metadata["names"] == names


def test_straight_edges_are_cubics_with_collinear_control_points():
    control_points, names = builtin_curves()
    edges = control_points[[i for i, name in enumerate(names) if "arc" not in name]]
    direction = edges[:, 3] - edges[:, 0]
    offsets = edges - edges[:, :1]
    cross = torch.linalg.cross(offsets, direction[:, None].expand_as(offsets))
    assert cross.abs().max().item() < 1e-6


def test_strokes_are_drawn_where_the_curves_project(scene: Path):
    """Read with nerfstudio's Blender parser: every curve point in view lands on a dark pixel, the rest is white."""
    outputs = BlenderDataParserConfig(data=scene).setup().get_dataparser_outputs("train")
    cameras = outputs.cameras
    points = evaluate(load_ground_truth_curves(scene).control_points_dataset, torch.linspace(0, 1, 100)).reshape(-1, 3)
    viewmats = get_viewmats(cameras.camera_to_worlds)
    camera_points = points @ viewmats[:, :3, :3].transpose(1, 2) + viewmats[:, None, :3, 3]  # [C, P, 3]
    u = cameras.fx * camera_points[..., 0] / camera_points[..., 2] + cameras.cx
    v = cameras.fy * camera_points[..., 1] / camera_points[..., 2] + cameras.cy
    inside = (u >= 0) & (u < SIZE) & (v >= 0) & (v < SIZE) & (camera_points[..., 2] > 0)
    assert inside.all()  # the whole object is in every view
    rows, cols = np.mgrid[:SIZE, :SIZE] + 0.5  # pixel centres
    for i, filename in enumerate(outputs.image_filenames[:8]):
        gray = np.asarray(Image.open(filename).convert("L"), dtype=np.float32) / 255.0
        ui, vi = u[i].numpy(), v[i].numpy()
        assert (gray[vi.astype(int), ui.astype(int)] < 0.3).mean() > 0.98, filename
        distance = np.sqrt((cols[..., None] - ui) ** 2 + (rows[..., None] - vi) ** 2).min(-1)  # to the nearest curve
        assert (gray[distance > 5.0] > 0.95).all(), filename
        assert (gray < 0.5).mean() < 0.3, filename  # a wireframe, not a filled shape


def test_cached_scene_is_reused(scene: Path, monkeypatch: pytest.MonkeyPatch):
    def fail(*args, **kwargs):
        raise AssertionError("the scene was generated again")

    monkeypatch.setattr(builtin_scene, "write_builtin_scene", fail)
    assert ensure_builtin_scene(scene.parent, image_size=SIZE) == scene


def test_generation_is_deterministic(scene: Path, tmp_path: Path):
    again = ensure_builtin_scene(tmp_path, image_size=SIZE)
    assert again != scene
    for name in ("transforms_val.json", "curves.json"):
        assert (again / name).read_text() == (scene / name).read_text()
    for image in ("val/r_2.png", "train/r_17.png"):
        np.testing.assert_array_equal(np.asarray(Image.open(again / image)), np.asarray(Image.open(scene / image)))


def test_failed_generation_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def interrupted(out_dir: Path, image_size: int):
        (out_dir / "transforms_train.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(builtin_scene, "write_builtin_scene", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ensure_builtin_scene(tmp_path, image_size=SIZE)
    assert list(tmp_path.iterdir()) == []


def test_cache_root_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_root() == tmp_path / "nerfstudio-clipsketch"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_root() == Path.home() / ".cache" / "nerfstudio-clipsketch"


def test_bad_arguments(tmp_path: Path):
    with pytest.raises(ValueError, match="at least 16 pixels, got 8"):
        ensure_builtin_scene(tmp_path, image_size=8)
    with pytest.raises(ClipSketchDataError, match="curves.json does not exist"):
        load_ground_truth_curves(tmp_path)
    (tmp_path / "curves.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ClipSketchDataError, match="not a 'clipsketch-sketch' file"):
        load_ground_truth_curves(tmp_path / "curves.json")


def test_ground_truth_of_the_legacy_format_still_loads(tmp_path: Path, caplog):
    control_points, names = builtin_curves()
    legacy = {
        "format": "nerfstudio-clipsketch-curves",
        "version": "v1",
        "coordinates": "dataset",
        "degree": 3,
        "stroke_width": 0.02,
        "names": names,
        "control_points": control_points.tolist(),
    }
    (tmp_path / "curves.json").write_text(json.dumps(legacy))
    with caplog.at_level("WARNING"):
        curves = load_ground_truth_curves(tmp_path)
    assert "deprecated" in caplog.text
    torch.testing.assert_close(curves.control_points_dataset, control_points)
    assert curves.stroke_width == 0.02 and curves.metadata["names"] == names
