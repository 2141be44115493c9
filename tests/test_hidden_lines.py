"""Line drawings that hide what the object hides (issue 25, item 2): ``clipsketch-export svg --hidden``."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

import numpy as np
import torch
from nerfstudio.cameras.cameras import Cameras

from nerfstudio_clipsketch.cameras import get_viewmats
from nerfstudio_clipsketch.exporters.svg import hidden_by_strokes, hidden_samples, write_sketch_svg
from nerfstudio_clipsketch.hull import VisualHull
from nerfstudio_clipsketch.sketch import Sketch
from tests.helpers import look_at

SAMPLES, VOXELS = 40, 32
SVG_NS = "{http://www.w3.org/2000/svg}"


def cube_hull() -> VisualHull:
    """The solid cube [-0.5, 0.5]^3 as a visual hull."""
    size = 1.0 / VOXELS
    empty = torch.zeros(0, 3)
    origin = torch.full((3,), -0.5 + size / 2)
    occupancy = torch.ones(VOXELS, VOXELS, VOXELS, dtype=torch.bool)
    return VisualHull(occupancy, origin, size, empty, torch.zeros(0), empty, torch.zeros(0))


def cube_edges() -> tuple[Sketch, list]:
    """The cube's 12 edges as straight cubic strokes, and each edge's two corners."""
    corners = [torch.tensor(c, dtype=torch.float32) - 0.5 for c in itertools.product((0.0, 1.0), repeat=3)]
    pairs = [(a, b) for a, b in itertools.combinations(corners, 2) if float((a - b).abs().sum()) == 1.0]
    t = torch.tensor([0.0, 1 / 3, 2 / 3, 1.0])[:, None]
    control = torch.stack([a + t * (b - a) for a, b in pairs])
    return Sketch(control_points=control, degree=3, stroke_width=0.02), pairs


def front_camera() -> Cameras:
    c2w = look_at([3.0, 2.2, 1.6])[None].float()  # from the (+, +, +) side
    return Cameras(camera_to_worlds=c2w, fx=200.0, fy=200.0, cx=100.0, cy=100.0, width=200, height=200)


def test_a_cubes_back_edges_are_hidden_from_a_front_camera_and_its_silhouette_is_not():
    sketch, pairs = cube_edges()
    hidden = hidden_samples(sketch, cube_hull(), front_camera().camera_to_worlds[0], SAMPLES)
    far = torch.full((3,), -0.5)  # the corner facing away from the camera
    for (a, b), row in zip(pairs, hidden):
        middle = row[SAMPLES // 5 : -SAMPLES // 5]  # away from the corners, where edges meet
        if torch.equal(a, far) or torch.equal(b, far):
            assert bool(middle.all()), (a, b)  # the three edges at the far corner
        else:
            assert not bool(row.any()), (a, b)  # the silhouette's six and the three at the near corner


def test_without_a_hull_a_stroke_hides_the_part_of_another_behind_it_and_crossing_strokes_hide_nothing():
    """Seen along -x: a stroke at x = 0.5 crosses one at x = -0.5 (behind it) and one at x = 0.5 (beside it)."""
    t = torch.tensor([0.0, 1 / 3, 2 / 3, 1.0])[:, None]
    front = torch.tensor([0.5, -0.6, 0.0]) + t * torch.tensor([0.0, 1.2, 0.0])  # along y, nearest the camera
    back = torch.tensor([-0.5, 0.0, -0.6]) + t * torch.tensor([0.0, 0.0, 1.2])  # along z, a unit behind it
    beside = torch.tensor([0.5, 0.3, -0.6]) + t * torch.tensor([0.0, 0.0, 1.2])  # along z, as near as `front`
    sketch = Sketch(control_points=torch.stack([front, back, beside]), degree=3, stroke_width=0.05)
    c2w = look_at([3.0, 0.0, 0.0])[None].float()
    camera = Cameras(camera_to_worlds=c2w, fx=200.0, fy=200.0, cx=100.0, cy=100.0, width=200, height=200)
    hidden = hidden_by_strokes(sketch, get_viewmats(c2w)[0], camera.get_intrinsics_matrices()[0], SAMPLES)
    z = torch.linspace(-0.6, 0.6, SAMPLES)  # where each sample of `back` is, along the stroke (arc length)
    assert not bool(hidden[0].any()) and not bool(hidden[2].any())  # nothing is in front of them
    crossing = hidden[1][z.abs() < 0.03]  # the two samples of `back` nearest the crossing, 0.015 from it
    assert len(crossing) == 2 and bool(crossing.all())  # behind `front` (half its width, 0.025, covers them)
    assert not bool(hidden[1][z.abs() > 0.1].any())  # the rest of `back` is seen


def _paths(path):
    return ET.parse(path).getroot().iter(f"{SVG_NS}path")


def test_hidden_parts_are_dropped_dashed_or_shown(tmp_path):
    sketch, _ = cube_edges()
    camera = front_camera()
    hidden = hidden_samples(sketch, cube_hull(), camera.camera_to_worlds[0], SAMPLES)
    viewmat, K = get_viewmats(camera.camera_to_worlds)[0], camera.get_intrinsics_matrices()[0]
    drawn = {}
    for mode in ("drop", "dashed", "show"):
        path = tmp_path / f"{mode}.svg"
        count = write_sketch_svg(path, sketch, viewmat, K, 200, 200, SAMPLES, hidden=hidden, hidden_lines=mode)
        drawn[mode] = (count, list(_paths(path)))
    assert drawn["show"][0] == 12 and not any(p.get("stroke-dasharray") for p in drawn["show"][1])
    assert 9 <= drawn["drop"][0] <= 12  # the far corner's edges keep at most their ends, at the silhouette
    points = lambda paths: sum(p.get("d").count(" L ") + p.get("d").count("M ") for p in paths)  # noqa: E731
    assert points(drawn["drop"][1]) < points(drawn["show"][1]) - 3 * SAMPLES // 2
    dashes = [p for p in drawn["dashed"][1] if p.get("stroke-dasharray")]
    solid = [p for p in drawn["dashed"][1] if not p.get("stroke-dasharray")]
    assert len(dashes) == 3 and len(solid) == drawn["drop"][0]
    assert max(float(p.get("stroke-width")) for p in dashes) < min(float(p.get("stroke-width")) for p in solid)
    assert np.isclose(points(dashes) + points(solid), points(drawn["show"][1]), atol=12)


def test_a_wire_in_front_hides_nothing_but_a_wall_does():
    """The hull of a wireframe drawing (the built-in house) is wires: a stroke behind one is not hidden; behind a
    wall as thick as a few voxels it is."""
    size = 1.0 / VOXELS
    origin = torch.full((3,), -0.5 + size / 2)
    occupancy = torch.zeros(VOXELS, VOXELS, VOXELS, dtype=torch.bool)
    hull = VisualHull(occupancy, origin, size, torch.zeros(0, 3), torch.zeros(0), torch.zeros(0, 3), torch.zeros(0))
    sketch = Sketch(control_points=torch.tensor([[[0.0, -0.4, 0.0], [0.0, -0.4, 0.0]]]), degree=1, stroke_width=0.01)
    camera = look_at([0.0, 3.0, 0.0])  # the stroke is a point at y = -0.4, seen from +y through y = 0
    occupancy[:, VOXELS // 2, :] = True  # a one-voxel sheet at y = 0 (a wire's thickness)
    assert not bool(hidden_samples(sketch, hull, camera, 2).any())
    occupancy[:, VOXELS // 2 : VOXELS // 2 + 6, :] = True  # six voxels thick
    assert bool(hidden_samples(sketch, hull, camera, 2).all())
