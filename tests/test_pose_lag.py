"""Poses that lag their frames (the duck's export: frame i's matrix is frame i-1's camera) are repaired with one
warning; poses that disagree with their frames in any other way are refused with one message."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nerfstudio_clipsketch.dataparsers import ClipSketchDataError, pose_lag
from nerfstudio_clipsketch.dataparsers.clipasso3d import Clipasso3dDataParserConfig
from nerfstudio_clipsketch.dataparsers.pose_lag import look_at, repair_poses
from tests.helpers import OBJECT, camera_poses, make_clipasso3d_scene

PATH = Path("scene/transforms_train.json")


def frames_and_poses(count=12):
    """Cameras around OBJECT looking at it (z up, as Blender's), with their positions as the frames' fields."""
    poses = np.stack([look_at(p, OBJECT) for p in np.array([m[:3, 3] for m in camera_poses(count, 0)])])
    frames = [{"position": pose[:, 3].tolist()} for pose in poses]
    return frames, poses


def test_look_at_is_the_test_scenes_camera_convention():
    reference = np.asarray(camera_poses(1, 0)[0])[:3]
    np.testing.assert_allclose(look_at(reference[:, 3], OBJECT), reference, atol=1e-9)


@pytest.mark.parametrize("shift", [1, -1, 2])
def test_a_lag_is_repaired_with_one_warning(shift, monkeypatch):
    monkeypatch.setattr(pose_lag, "_warned", set())
    frames, truth = frames_and_poses()
    stored = np.roll(truth, shift, axis=0)  # frame i holds frame i - shift's camera; the wrapped ends are garbage
    repaired = repair_poses(stored, frames, PATH, OBJECT)
    np.testing.assert_allclose(repaired, truth, atol=1e-9)
    assert len(pose_lag._warned) == 1
    repair_poses(stored, frames, PATH, OBJECT)  # the next split of the same scene: no second warning
    assert len(pose_lag._warned) == 1


def test_matching_poses_and_frames_without_positions_are_untouched():
    frames, truth = frames_and_poses()
    assert repair_poses(truth, frames, PATH, OBJECT) is truth
    lagged = np.roll(truth, 1, axis=0)
    assert repair_poses(lagged, [{} for _ in frames], PATH, OBJECT) is lagged


def test_poses_that_disagree_otherwise_are_refused_naming_the_frame():
    frames, truth = frames_and_poses()
    moved = truth.copy()
    moved[5, :, 3] += 0.3  # one camera somewhere else
    with pytest.raises(ClipSketchDataError, match="frame 5's transform_matrix places its camera at .* 'position'"):
        repair_poses(moved, frames, PATH, OBJECT)
    with pytest.raises(ClipSketchDataError, match="no 'object_position' to aim them at"):
        repair_poses(np.roll(truth, 1, axis=0), frames, PATH, None)
    turned = np.roll(truth, 1, axis=0).copy()
    turned[:, :, :3] = turned[::-1, :, :3]  # positions shifted by one, but the cameras turned elsewhere
    with pytest.raises(ClipSketchDataError, match="degrees away from object_position"):
        repair_poses(turned, frames, PATH, OBJECT)


def test_the_parser_repairs_a_lagged_scene_in_every_split(tmp_path, monkeypatch):
    monkeypatch.setattr(pose_lag, "_warned", set())
    truth = make_clipasso3d_scene(tmp_path, world_pos=False)
    for split in truth:
        path = tmp_path / f"transforms_{split}.json"
        meta = json.loads(path.read_text())
        matrices = [frame["transform_matrix"] for frame in meta["frames"]]
        for i, frame in enumerate(meta["frames"]):
            frame["position"] = np.asarray(matrices[i])[:3, 3].tolist()
            frame["transform_matrix"] = matrices[i - 1] if i > 0 else np.eye(4).tolist()  # one frame late
        path.write_text(json.dumps(meta))
    parser = Clipasso3dDataParserConfig(data=tmp_path).setup()
    for split, poses in truth.items():
        cameras = parser.get_dataparser_outputs(split).cameras
        expected = np.stack([np.asarray(p)[:3, :3] for p in poses])
        np.testing.assert_allclose(cameras.camera_to_worlds[:, :, :3].numpy(), expected, atol=1e-5)
    assert len(pose_lag._warned) == 1
