"""The strokes' lifecycle: collapsed, lost and duplicate strokes are found, re-seeded where the sketch is missing,
their Adam moments reset; and the structure term that pulls strokes onto the views' edges."""

from __future__ import annotations

import pytest
import torch

from nerfstudio_clipsketch import curves
from nerfstudio_clipsketch.balance import GradientBalance
from nerfstudio_clipsketch.edge_maps import edge_map
from nerfstudio_clipsketch.hull import VisualHull
from nerfstudio_clipsketch.lifecycle import LifecycleSettings, StrokeLifecycle, duplicates
from nerfstudio_clipsketch.terms.edges import EdgeTerm, EdgeTermConfig
from tests.helpers import make_model, ring_cameras


def line(a, b) -> torch.Tensor:
    a, b = torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)
    return torch.stack([a + (b - a) * k / 3 for k in range(4)])


def scored_hull(points: torch.Tensor, voxel: float = 0.02) -> VisualHull:
    """A hull whose scored surface points are ``points`` (what re-seeding draws from)."""
    return VisualHull(
        occupancy=torch.ones(2, 2, 2, dtype=torch.bool),
        origin=torch.zeros(3),
        voxel_size=voxel,
        points=points,
        scores=torch.ones(len(points)),
        surface_points=points,
        surface_scores=torch.ones(len(points)),
    )


def test_duplicates_are_the_shorter_of_strokes_running_along_each_other():
    long = line([0.0, 0.0, 0.0], [1.0, 0.0, 0.0])
    along = line([0.2, 0.005, 0.0], [0.7, 0.005, 0.0])  # on the long one, shorter
    apart = line([0.0, 0.5, 0.0], [1.0, 0.5, 0.0])
    samples = curves.evaluate(torch.stack([long, along, apart]), torch.linspace(0, 1, 32))
    lengths = curves.curve_lengths(torch.stack([long, along, apart]))
    assert duplicates(samples, lengths, radius=0.02, share=0.8).tolist() == [False, True, False]
    same = curves.evaluate(torch.stack([long, long]), torch.linspace(0, 1, 32))
    assert duplicates(same, torch.ones(2), 0.02, 0.8).tolist() == [True, False]  # one of two identical survives


def test_a_collapsed_stroke_is_reseeded_where_the_sketch_is_missing_and_its_adam_state_reset():
    cameras = ring_cameras()
    model = make_model(num_curves=3)
    model.setup_from_data(cameras, background=torch.ones(3))
    with torch.no_grad():  # two strokes on the left half of a square's outline, one shrunk to a dot
        world = torch.stack(
            [
                line([-0.5, -0.5, 0.0], [-0.5, 0.5, 0.0]),
                line([-0.5, 0.5, 0.0], [0.0, 0.5, 0.0]),
                line([0.3] * 3, [0.3] * 3),
            ]
        )
        model.control_points.copy_((world - model.curves.anchor) / model.curves.unit)
    right = torch.stack([torch.full((50,), 0.5), torch.linspace(-0.5, 0.5, 50), torch.zeros(50)], -1)
    left = torch.stack([torch.full((50,), -0.5), torch.linspace(-0.5, 0.5, 50), torch.zeros(50)], -1)
    hull = scored_hull(torch.cat([left, right]))  # the scored rims: both sides; the right one has no stroke yet
    optimizer = torch.optim.Adam([model.control_points], lr=1e-3)
    model.control_points.grad = torch.ones_like(model.control_points)
    optimizer.step()
    world = model.world_control_points().detach().clone()
    lifecycle = StrokeLifecycle(LifecycleSettings(every=10), cameras, scene_size=1.0, new_length=0.2, hull=hull)
    decision = lifecycle.step(10, model.world_control_points())
    assert decision is not None and decision.index.tolist() == [2]
    model.apply_reseed(decision, optimizer)
    moved = model.world_control_points().detach()
    torch.testing.assert_close(moved[:2], world[:2])  # the others are untouched
    samples = curves.evaluate(moved[2:], torch.linspace(0, 1, 20))[0]
    assert float((samples[:, 0] - 0.5).abs().max()) < 0.05  # the new stroke runs along the uncovered right side
    assert float(curves.curve_lengths(moved[2:])) > 0.3
    state = optimizer.state[model.control_points]
    assert float(state["exp_avg"][2].abs().sum()) == 0 and float(state["exp_avg_sq"][2].abs().sum()) == 0
    assert float(state["exp_avg"][:2].abs().min()) > 0  # kept strokes keep their moments
    assert lifecycle.step(lifecycle.settings.stop + 1, model.world_control_points()) is None  # frozen after the stop


def test_strokes_outside_every_view_are_lost():
    cameras = ring_cameras()
    lifecycle = StrokeLifecycle(LifecycleSettings(), cameras, scene_size=1.0, new_length=0.2)
    found = lifecycle.find(torch.stack([line([0, 0, 0], [0.5, 0, 0]), line([0, 0, 40.0], [0.5, 0, 40.0])]))
    assert found["lost"].tolist() == [False, True] and not bool(found["collapsed"].any())


def test_when_every_stroke_is_reseeded_without_a_hull_new_ones_start_at_the_scene_centre():
    """The built-in scene at 32 px with 3 strokes once lost all three at once (``randint`` over no kept samples)."""
    cameras, centre = ring_cameras(), torch.tensor([0.1, -0.2, 0.05])
    lifecycle = StrokeLifecycle(LifecycleSettings(), cameras, scene_size=1.0, new_length=0.2, centre=centre)
    lost = torch.stack([line([0, 0, 40.0], [0.5, 0, 40.0]), line([0, 0, 50.0], [0.5, 0, 50.0])])
    reseed = lifecycle.step(1, lost)
    assert reseed.index.tolist() == [0, 1] and reseed.control_points.shape == (2, 4, 3)
    assert torch.allclose(reseed.control_points.mean(1), centre.expand(2, 3), atol=1e-5)


def test_the_edge_term_pulls_a_stroke_onto_a_target_edge():
    """A dark line in every view; a stroke beside it, moved by the structure term alone, ends on it."""
    cameras = ring_cameras(n=8, size=64, focal=80.0)
    truth = line([-0.6, 0.0, 0.1], [0.6, 0.0, 0.1])[None]
    model = make_model(num_curves=1, stroke_width=6.0)
    model.setup_from_data(cameras, background=torch.ones(3))
    with torch.no_grad():
        model.control_points.copy_((truth - model.curves.anchor) / model.curves.unit)
        targets = model.get_outputs(cameras)["rgb"].clone()  # the line as the model draws it
        model.control_points.add_(torch.tensor([0.0, 0.12, 0.0]) / model.curves.unit)

    def distance():  # of the stroke's points from the line (sliding along it changes nothing in the views)
        samples = curves.evaluate(model.world_control_points().detach(), torch.linspace(0.1, 0.9, 20))[0]
        return float((samples[:, 1:] - truth[0, 0, 1:]).norm(dim=-1).mean())

    before = distance()
    guidance = EdgeTerm(EdgeTermConfig())  # only its raw loss is used here
    optimizer = torch.optim.Adam([model.control_points], lr=5e-3)
    for step in range(80):
        i = step % 8
        loss = guidance.raw_loss(model.get_outputs(cameras[i : i + 1])["accumulation"], targets[i : i + 1], [i])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert distance() < 0.4 * before, (before, distance())


def test_edge_maps_mark_the_boundaries_of_a_shape():
    image = torch.zeros(32, 32, 3)
    image[8:24, 8:24] = 1.0
    edges = edge_map(image)
    assert float(edges[16, 8]) > 0.5 and float(edges[8, 16]) > 0.5  # on the square's sides
    assert float(edges[16, 16]) < 0.05 and float(edges[2, 2]) < 0.05  # flat inside and outside


def test_edge_maps_count_a_faint_crease_as_an_edge():
    """A grey square on white, its right half a little darker (a crease between two faces): the crease has 15 % of
    the silhouette's contrast, yet it must pass as an edge (the hull scores edges above 0.3)."""
    image = torch.ones(32, 32, 3)
    image[8:24, 8:24] = 0.6
    image[8:24, 16:24] = 0.54
    edges = edge_map(image)
    assert float(edges[16, 8]) > 0.9  # the silhouette
    assert float(edges[16, 16]) > 0.3  # the crease
    assert float(edges[16, 12]) < 0.05 and float(edges[2, 2]) < 0.05  # flat


def test_the_balance_keeps_the_structure_gradient_at_its_share_of_clips():
    balance = GradientBalance(weight=0.5, momentum=0.0)
    rgb = torch.zeros(1, 4, 4, 3, requires_grad=True)
    ink = torch.zeros(1, 4, 4, 1, requires_grad=True)
    direction = torch.tensor([-1.0, -1.0, -1.0])  # black strokes on white
    scale = balance.scale()
    balance.watch(rgb, ink, scale, direction=direction)
    clip_gradient, raw_edge_gradient = torch.randn(1, 4, 4, 3), 100.0 * torch.randn(1, 4, 4, 1)
    ((rgb * clip_gradient).sum() + scale * (ink * raw_edge_gradient).sum()).backward()
    clip_on_ink = (clip_gradient * direction).sum(-1).norm()
    assert float(balance.scale() * raw_edge_gradient.norm()) == pytest.approx(0.5 * float(clip_on_ink), rel=1e-5)


def test_the_balance_keeps_a_term_on_the_centres_at_its_share_and_ignores_silent_steps():
    balance = GradientBalance(weight=0.5, momentum=0.5)
    reference_gradient = torch.randn(10, 3)
    raw_gradients = [100.0 * torch.randn(10, 3), torch.zeros(10, 3), 100.0 * torch.randn(10, 3)]
    seen = []
    for raw in raw_gradients:
        drawn, centres = torch.zeros(10, 3, requires_grad=True), torch.zeros(10, 3, requires_grad=True)
        scale = balance.scale()
        balance.watch(drawn, centres, scale)
        ((drawn * reference_gradient).sum() + scale * (centres * raw).sum()).backward()
        seen.append(float(balance.term_norm))
    assert seen[0] == pytest.approx(float(raw_gradients[0].norm()), rel=1e-5)  # the first norm is taken as it is
    assert seen[1] == seen[0]  # a silent step (nothing to correct) does not make the term look weak
    assert seen[2] == pytest.approx(0.5 * seen[0] + 0.5 * float(raw_gradients[2].norm()), rel=1e-5)
    expected = 0.5 * float(reference_gradient.norm()) / seen[2]
    assert float(balance.scale()) == pytest.approx(expected, rel=1e-5)


def test_a_term_that_was_always_silent_is_scaled_to_almost_nothing():
    balance = GradientBalance(weight=0.5)
    drawn, centres = torch.zeros(4, 3, requires_grad=True), torch.zeros(4, 3, requires_grad=True)
    scale = balance.scale()
    balance.watch(drawn, centres, scale)
    ((drawn * torch.ones(4, 3)).sum() + scale * (centres * 0.0).sum()).backward()
    assert float(balance.scale()) == pytest.approx(GradientBalance.FIRST_STEP_SCALE)
