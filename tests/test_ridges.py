"""The 3D structure term: strokes off the hull's ridges are pulled back onto them, strokes on them are free, and a
hull that does not fit its silhouettes holds nothing."""

from __future__ import annotations

import pytest
import torch
from nerfstudio.cameras.cameras import Cameras

from nerfstudio_clipsketch.hull import VisualHull, carve_hull
from nerfstudio_clipsketch.model_config import ClipSketchConfigError
from nerfstudio_clipsketch.terms.base import TermContext
from nerfstudio_clipsketch.terms.ridges import RidgeField, RidgeTerm, RidgeTermConfig
from tests.helpers import make_model, ring_cameras
from tests.test_hull import sphere_cameras, sphere_images


def line_hull(resolution: int = 32) -> VisualHull:
    """A hull whose only ridge is the segment x in [-0.5, 0.5] on the x axis, in a grid over [-1, 1]^3."""
    voxel = 2.0 / (resolution - 1)
    ridge = torch.linspace(-0.5, 0.5, 40)[:, None] * torch.tensor([1.0, 0.0, 0.0])
    occupancy = torch.zeros(resolution, resolution, resolution, dtype=torch.bool)
    occupancy[8:24, 14:18, 14:18] = True
    return VisualHull(occupancy, torch.full((3,), -1.0), voxel, ridge, torch.ones(40), ridge, torch.ones(40))


def test_the_ridge_point_found_is_at_most_two_voxel_diagonals_further_than_the_nearest():
    hull = line_hull()
    generator = torch.Generator().manual_seed(0)
    hull.points = torch.rand(200, 3, generator=generator) * 1.6 - 0.8
    field = RidgeField(hull)
    queries = torch.rand(500, 3, generator=generator) * 1.8 - 0.9
    found = (queries - field.nearest_points(queries)).norm(dim=-1)
    exact = torch.cdist(queries, hull.points, compute_mode="donot_use_mm_for_euclid_dist").amin(1)
    assert bool((found >= exact - 1e-6).all())
    assert bool((found <= exact + 2 * 3**0.5 * hull.voxel_size).all())
    assert float((found - exact).mean()) < 0.2 * hull.voxel_size  # and almost always the nearest itself


def test_a_stroke_off_the_ridge_is_pulled_back_onto_it_and_one_on_it_is_free():
    field = RidgeField(line_hull(), radius=1.0)
    off = torch.linspace(-0.4, 0.4, 16)[:, None] * torch.tensor([1.0, 0.0, 0.0]) + torch.tensor([0.0, 0.3, 0.1])
    points = off.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([points], lr=0.01)
    for _ in range(100):
        optimizer.zero_grad()
        field.loss(points).backward()
        optimizer.step()
    distance = torch.cdist(points.detach(), field.points).amin(1)
    assert float(distance.max()) <= 1.5 * field.voxel_size  # back on the ridge (within the free radius)
    on = torch.linspace(-0.4, 0.4, 16)[:, None] * torch.tensor([1.0, 0.0, 0.0])
    on = (on + torch.tensor([0.0, 0.25, 0.0]) * field.voxel_size).requires_grad_(True)
    loss = field.loss(on)
    loss.backward()
    assert float(loss.detach()) == 0.0 and float(on.grad.abs().max()) == 0.0


def test_a_hull_without_ridges_is_refused():
    hull = line_hull()
    hull.points = torch.zeros(0, 3)
    with pytest.raises(ValueError, match="ridge"):
        RidgeField(hull)


@pytest.mark.parametrize(
    "setting, value, name",
    [
        ("weight", -1.0, "weight"),
        ("radius", -0.5, "radius"),
        ("weight", float("nan"), "weight"),
        ("min_fit", 1.5, "min-fit"),
    ],  # fmt: skip
)
def test_bad_ridge_settings_are_refused_naming_the_setting(setting, value, name):
    with pytest.raises(ClipSketchConfigError, match=f"ridges.{name}"):
        make_model(ridges=RidgeTermConfig(**{setting: value}))


STEPS = 60


def distance_from_ridge_after_training(guidance, weight: float) -> float:
    """A stroke beside the hull's ridge trained for 30 steps on CLIP's terms, the structure terms, and with
    ``weight`` the ridge term: its mean distance from the ridge, in voxels."""
    hull, cameras = line_hull(), ring_cameras()
    model = make_model(guidance, num_curves=1, ridges=RidgeTermConfig(weight=weight))
    model.setup_from_data(cameras, background=torch.ones(3), hull=hull)
    beside = torch.linspace(-0.4, 0.4, 4)[:, None] * torch.tensor([1.0, 0.0, 0.0]) + torch.tensor([0.0, 0.25, 0.0])
    with torch.no_grad():
        model.control_points.copy_(((beside - model.curves.anchor) / model.curves.unit)[None])
        model.resample_gaussians()
    images = torch.rand(len(cameras), 48, 48, 4, generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.Adam([model.control_points], lr=5e-3)
    for step in range(STEPS):
        i = step % len(cameras)
        batch = {"image": images[i : i + 1], "image_idx": [i]}
        losses = model.get_loss_dict(model.get_outputs(cameras[i : i + 1]), batch)
        assert ("ridges" in losses) == (weight > 0)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    samples = model.gaussians()[0].detach()
    return float(torch.cdist(samples, hull.points).amin(1).mean()) / hull.voxel_size


def test_training_pulls_a_stroke_beside_the_ridges_back_onto_them(tiny_guidance):
    start = 0.25 / line_hull().voxel_size
    held = distance_from_ridge_after_training(tiny_guidance, 0.5)
    free = distance_from_ridge_after_training(tiny_guidance, 0.0)
    assert held < 0.5 * start and held < 0.5 * free, (start, held, free)


def test_a_hull_from_cameras_that_disagree_with_the_images_is_not_used_to_hold_strokes():
    """The duck's case: carving from images whose cameras are off keeps only what the wrong cones share, which
    covers a fraction of each silhouette; its ridges are not the object's, and the ridge term stays off."""
    cameras = sphere_cameras()
    good, why = carve_hull(cameras, list(sphere_images(cameras, 0.8)), torch.zeros(3), resolution=32)
    assert good is not None, why
    generator = torch.Generator().manual_seed(3)
    moved = cameras.camera_to_worlds.clone()
    moved[:, :3, 3] += 0.5 * torch.nn.functional.normalize(torch.randn(len(cameras), 3, generator=generator), dim=-1)
    seen_from_elsewhere = Cameras(
        camera_to_worlds=moved, fx=cameras.fx, fy=cameras.fy, cx=cameras.cx, cy=cameras.cy,
        width=cameras.width, height=cameras.height,
    )  # fmt: skip
    bad, why = carve_hull(cameras, list(sphere_images(seen_from_elsewhere, 0.8)), torch.zeros(3), resolution=32)
    assert bad is not None, why
    assert good.fit > 0.9 and bad.fit < 0.5, (good.fit, bad.fit)
    assert RidgeTerm(RidgeTermConfig(), TermContext(hull=good)).enabled
    assert not RidgeTerm(RidgeTermConfig(), TermContext(hull=bad)).enabled
    assert RidgeTerm(RidgeTermConfig(min_fit=0.0), TermContext(hull=bad)).enabled  # the user can insist
