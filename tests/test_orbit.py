"""Fly-around paths: the centre the training cameras look at, cameras on the sphere looking at it, and a file that
nerfstudio's camera-path loader reads."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from nerfstudio.cameras.camera_paths import get_path_from_json

from nerfstudio_clipsketch.cameras import look_at_centre
from nerfstudio_clipsketch.orbit import orbit_path, orbit_poses, vertical_fov_degrees

CENTRE = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
UP = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)


def _look_at(position: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """OpenGL c2w looking at target, world z up (written independently of the module's helper)."""
    back = (position - target) / (position - target).norm()
    right = torch.tensor(np.cross(UP.numpy(), back.numpy()))
    right = right / right.norm()
    up = torch.tensor(np.cross(back.numpy(), right.numpy()))
    return torch.stack([right, up, back, position], dim=1)


def _training_cameras(n=12, seed=0) -> torch.Tensor:
    """Cameras at 2-3 units from CENTRE, elevations 10-40 degrees, all looking at it."""
    g = torch.Generator().manual_seed(seed)
    azimuth = torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi
    elevation = torch.deg2rad(10 + 30 * torch.rand(n, generator=g, dtype=torch.float64))
    distance = 2 + torch.rand(n, generator=g, dtype=torch.float64)
    direction = torch.stack(
        [torch.cos(elevation) * torch.cos(azimuth), torch.cos(elevation) * torch.sin(azimuth), torch.sin(elevation)], -1
    )
    positions = CENTRE + distance[:, None] * direction
    return torch.stack([_look_at(p, CENTRE) for p in positions]).float()


def test_look_at_centre_recovers_the_common_target():
    c2w = _training_cameras()
    torch.testing.assert_close(look_at_centre(c2w), CENTRE.float(), atol=1e-5, rtol=0)


def test_look_at_centre_is_the_least_squares_point_for_skew_axes():
    c2w = _training_cameras().double()
    g = torch.Generator().manual_seed(1)
    c2w[:, :3, 3] += 0.05 * torch.randn(c2w.shape[0], 3, generator=g, dtype=torch.float64)  # axes now skew
    centre = look_at_centre(c2w)
    assert (centre - CENTRE).norm() < 0.1

    def cost(x):
        d = -c2w[:, :3, 2]
        r = x - c2w[:, :3, 3]
        return ((r - (r * d).sum(-1, keepdim=True) * d) ** 2).sum()

    for step in torch.eye(3, dtype=torch.float64) * 1e-3:
        assert cost(centre) < cost(centre + step) and cost(centre) < cost(centre - step)


def test_look_at_centre_rejects_parallel_axes():
    c2w = torch.eye(4)[:3].repeat(4, 1, 1)
    c2w[:, 0, 3] = torch.arange(4.0)  # a row of cameras all looking down -z
    with pytest.raises(ValueError, match="parallel"):
        look_at_centre(c2w)
    with pytest.raises(ValueError, match="at least two"):
        look_at_centre(c2w[:1])


def _mean_up(c2w: torch.Tensor) -> torch.Tensor:
    up = c2w[:, :3, 1].double().mean(0)
    return up / up.norm()


def _check_looks_at(poses: torch.Tensor, centre: torch.Tensor, radius: float, up: torch.Tensor):
    poses = poses.double()
    positions = poses[:, :3, 3]
    distances = (positions - centre).norm(dim=-1)
    torch.testing.assert_close(distances, torch.full((len(poses),), radius, dtype=torch.float64))
    to_centre = (centre - positions) / (centre - positions).norm(dim=-1, keepdim=True)
    forward = -poses[:, :3, 2]  # OpenGL cameras look down -z
    torch.testing.assert_close((forward * to_centre).sum(-1), torch.ones(len(poses), dtype=torch.float64))
    rotations = poses[:, :3, :3]
    eye = torch.eye(3, dtype=torch.float64).expand_as(rotations)
    torch.testing.assert_close(rotations.transpose(1, 2) @ rotations, eye)
    torch.testing.assert_close(torch.linalg.det(rotations), torch.ones(len(poses), dtype=torch.float64))
    assert (poses[:, :3, 1] @ up > 0).all()  # upright
    torch.testing.assert_close(poses[:, :3, 0] @ up, torch.zeros(len(poses), dtype=torch.float64))  # no roll


def _elevation_degrees(poses: torch.Tensor, centre: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Elevation above the plane through the centre normal to the mean training-camera up vector."""
    offsets = poses[:, :3, 3].double() - centre
    return torch.rad2deg(torch.asin(offsets @ up / offsets.norm(dim=-1)))


def _azimuth(poses: torch.Tensor, centre: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Angle about the up vector, counter-clockwise seen from above."""
    e1 = torch.linalg.cross(up, torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    e1 = e1 / e1.norm()
    e2 = torch.linalg.cross(up, e1)
    offsets = poses[:, :3, 3].double() - centre
    return torch.atan2(offsets @ e2, offsets @ e1)


def test_orbit_circles_at_the_training_elevation():
    c2w = _training_cameras()
    poses = orbit_poses(c2w, 90, kind="orbit")
    assert poses.shape == (90, 3, 4) and poses.dtype == c2w.dtype
    centre = look_at_centre(c2w.double())
    radius = float((c2w[:, :3, 3].double() - centre).norm(dim=-1).median())
    up = _mean_up(c2w)
    _check_looks_at(poses, centre, radius, up)
    training = _elevation_degrees(c2w, centre, up).median()
    torch.testing.assert_close(_elevation_degrees(poses, centre, up), training.expand(90), atol=1e-3, rtol=0)
    # One revolution: the azimuth steps evenly all the way round.
    azimuth = _azimuth(poses, centre, up)
    steps = torch.remainder(azimuth.roll(-1) - azimuth, 2 * math.pi)
    torch.testing.assert_close(steps, torch.full((90,), 2 * math.pi / 90, dtype=torch.float64), atol=1e-4, rtol=0)


def test_helix_rises_from_low_to_high_and_back():
    c2w = _training_cameras()
    poses = orbit_poses(c2w, 120, kind="helix", revolutions=2.0, elevation_range=(-5.0, 50.0))
    centre = look_at_centre(c2w.double())
    radius = float((c2w[:, :3, 3].double() - centre).norm(dim=-1).median())
    up = _mean_up(c2w)
    _check_looks_at(poses, centre, radius, up)
    elevation = _elevation_degrees(poses, centre, up)
    assert float(elevation[0]) == pytest.approx(-5.0, abs=1e-3)
    assert float(elevation[60]) == pytest.approx(50.0, abs=1e-3)
    assert float(elevation.min()) >= -5.0 - 1e-3 and float(elevation.max()) <= 50.0 + 1e-3
    assert (elevation[1:61].diff() > 0).all() and (elevation[60:].diff() < 0).all()
    azimuth = _azimuth(poses, centre, up)
    turned = torch.remainder(azimuth.roll(-1) - azimuth, 2 * math.pi).sum()
    assert float(turned) == pytest.approx(2 * 2 * math.pi, abs=1e-3)


def test_orbit_poses_reject_bad_arguments():
    c2w = _training_cameras()
    with pytest.raises(ValueError, match="spiral"):
        orbit_poses(c2w, 10, kind="spiral")
    with pytest.raises(ValueError, match="elevation_range"):
        orbit_poses(c2w, 10, kind="helix", elevation_range=(0.0, 90.0))
    with pytest.raises(ValueError, match="num_frames"):
        orbit_poses(c2w, 0)


def test_vertical_fov_matches_the_focal_length():
    fov = vertical_fov_degrees(torch.tensor([[50.0], [50.0], [60.0]]), torch.tensor([[40], [40], [40]]))
    assert fov == pytest.approx(math.degrees(2 * math.atan(20 / 50)))
    with pytest.raises(ValueError, match="positive"):
        vertical_fov_degrees(torch.tensor([0.0]), 40)


@pytest.mark.parametrize("kind", ["orbit", "helix"])
def test_camera_path_loads_in_nerfstudio(kind):
    c2w = _training_cameras()
    fov = vertical_fov_degrees(torch.tensor([50.0]), 40)  # training cameras: fy = 50 px at 40 px high
    seconds, fps, width, height = 2.0, 15, 64, 40
    path = orbit_path(
        c2w, fov_degrees=fov, width=width, height=height, kind=kind, seconds=seconds, fps=fps, revolutions=1.0
    )
    path = json.loads(json.dumps(path))  # what a file written with json.dump reads back as
    assert path["seconds"] == seconds  # ns-render reads the length from here, fps = len(camera_path) / seconds
    assert "crop" not in path
    cameras = get_path_from_json(path)
    assert cameras.camera_to_worlds.shape == (int(seconds * fps), 3, 4)
    expected = orbit_poses(c2w, int(seconds * fps), kind=kind)
    torch.testing.assert_close(cameras.camera_to_worlds, expected, atol=1e-6, rtol=0)
    # Same vertical fov at the same image height: the path's focal length is the training cameras'.
    fifty = torch.full((30,), 50.0, dtype=torch.float64)
    torch.testing.assert_close(cameras.fy.flatten().double(), fifty, atol=1e-4, rtol=0)
    torch.testing.assert_close(cameras.fx.flatten().double(), fifty, atol=1e-4, rtol=0)
    assert int(cameras.width[0]) == width and int(cameras.height[0]) == height
    assert float(cameras.cx[0]) == width / 2 and float(cameras.cy[0]) == height / 2
    # The viewer's keyframes use the same poses, so the path also loads for editing.
    assert path["keyframes"][0]["matrix"] == path["camera_path"][0]["camera_to_world"]


def test_orbit_path_rejects_bad_arguments():
    c2w = _training_cameras()
    with pytest.raises(ValueError, match="fov_degrees"):
        orbit_path(c2w, fov_degrees=0.0, width=64, height=48)
    with pytest.raises(ValueError, match="render size"):
        orbit_path(c2w, fov_degrees=50.0, width=0, height=48)
    with pytest.raises(ValueError, match="seconds"):
        orbit_path(c2w, fov_degrees=50.0, width=64, height=48, seconds=-1.0)
