"""Occlusion in training: ink behind the visual hull fades, and a stroke hidden in the object earns nothing."""

from __future__ import annotations

import pytest
import torch

from nerfstudio_clipsketch.hull import carve_hull
from nerfstudio_clipsketch.occlusion import HullOcclusion, OcclusionSettings
from tests.helpers import make_model
from tests.test_hull import sphere_cameras, sphere_images


@pytest.fixture(scope="module")
def ball():
    cameras, radius = sphere_cameras(), 0.8
    hull, why = carve_hull(cameras, list(sphere_images(cameras, radius)), torch.zeros(3), resolution=32)
    assert hull is not None, why
    return cameras, radius, hull


def test_a_camera_sees_the_near_side_of_the_object_and_not_its_inside_or_far_side(ball):
    cameras, radius, hull = ball
    eye = cameras.camera_to_worlds[:1, :3, 3]
    out = eye[0] / eye[0].norm()
    near = out * (radius + hull.voxel_size)
    beside = near + 0.5 * radius * torch.linalg.cross(torch.tensor([0.0, 0.0, 1.0]), out)
    points = torch.stack([near, torch.zeros(3), -near, beside])
    seen = HullOcclusion(hull, density=0.5).transmittance(points, eye)[0]
    assert float(seen[0]) > 0.9  # on the surface facing the camera: drawn
    assert float(seen[1]) < 0.05 and float(seen[2]) < 0.01  # the centre and the far side: hidden
    assert float(seen[0]) == pytest.approx(float(seen[3]), abs=0.1)  # beside the ball: drawn
    assert float(HullOcclusion(hull, density=0.1).transmittance(points, eye)[0, 1]) > float(seen[1])


def test_a_stroke_just_under_the_surface_is_drawn_whole_and_one_deeper_fades(ball):
    cameras, radius, hull = ball
    eye = cameras.camera_to_worlds[:1, :3, 3]
    out = eye[0] / eye[0].norm()
    margin = 0.1 * hull.diagonal
    points = torch.stack([out * (radius - 0.5 * margin), out * (radius - 2.0 * margin)])
    seen = HullOcclusion(hull, density=0.5, margin=0.1).transmittance(points, eye)[0]
    assert float(seen[0]) > 0.9 and float(seen[1]) < 0.5 * float(seen[0])
    assert float(HullOcclusion(hull, density=0.5, margin=0.0).transmittance(points, eye)[0, 0]) < float(seen[0])


def test_densities_that_are_not_positive_are_refused(ball):
    with pytest.raises(ValueError, match="density"):
        HullOcclusion(ball[2], density=0.0)


def sunk_stroke(ball, density: float) -> tuple[float, float, float]:
    """A short stroke through the ball's centre: its ink in a training render, the pull on it from that render, and
    its ink in the viewer's render."""
    cameras, radius, hull = ball
    model = make_model(num_curves=1, occlusion=OcclusionSettings(density=density))
    model.setup_from_data(cameras, background=torch.zeros(3), hull=hull)
    with torch.no_grad():
        sunk = torch.linspace(-0.2, 0.2, 4)[:, None] * torch.tensor([1.0, 0.0, 0.0])
        model.control_points.copy_(((sunk - model.curves.anchor) / model.curves.unit)[None])
        model.resample_gaussians()
    view = cameras[0:1]
    model.train()
    ink = model.get_outputs(view)["accumulation"]
    ink.sum().backward()
    model.eval()  # the viewer's, evaluation's and ns-render's renders
    shown = model.get_outputs_for_camera(view)["accumulation"]
    return float(ink.detach().max()), float(model.control_points.grad.norm()), float(shown.max())


def test_training_renders_hide_a_stroke_sunk_into_the_object_and_other_renders_show_it(ball):
    trained, pull, shown = sunk_stroke(ball, density=0.5)
    drawn, free_pull, free_shown = sunk_stroke(ball, density=0.0)  # occlusion off: drawn as the viewer draws it
    assert shown > 0.2 and free_shown == pytest.approx(shown)
    assert trained < 0.1 * shown and drawn == pytest.approx(shown)
    assert pull < 0.1 * free_pull  # hidden ink earns nothing: sinking into the object no longer pays
