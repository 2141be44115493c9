"""``clipsketch-export usd`` (issue 25): the sketch as USD BasisCurves, read back with Pixar's own library."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from nerfstudio.cameras.cameras import Cameras

from nerfstudio_clipsketch.curves import sample_curves
from nerfstudio_clipsketch.exporters.usd import write_sketch_usd
from nerfstudio_clipsketch.sketch import Sketch
from tests.helpers import look_at

pxr = pytest.importorskip("pxr")
from pxr import Gf, Usd, UsdGeom  # noqa: E402


def a_sketch(degree: int = 3, count: int = 32) -> Sketch:
    """Random strokes in nerfstudio's frame of a capture rotated about z, shifted and scaled by its dataparser."""
    generator = torch.Generator().manual_seed(0)
    angle = 0.7
    rotation = torch.tensor(
        [[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0], [0.0, 0.0, 1.0]]
    )
    transform = torch.cat([rotation, torch.tensor([[0.3], [-1.2], [0.5]])], dim=1)
    return Sketch(
        control_points=torch.rand(count, degree + 1, 3, generator=generator) - 0.5,
        degree=degree,
        stroke_width=0.01,
        stroke_color=(0.1, 0.2, 0.3),
        dataparser_transform=transform,
        dataparser_scale=0.25,
    )


def strokes_of(path):
    stage = Usd.Stage.Open(str(path))
    return stage, UsdGeom.BasisCurves(stage.GetPrimAtPath("/Sketch/Strokes"))


def test_cubic_strokes_round_trip_exactly_with_their_width_and_colour(tmp_path):
    sketch = a_sketch()
    write_sketch_usd(tmp_path / "sketch.usda", a_sketch(count=3))
    held = Usd.Stage.Open(str(tmp_path / "sketch.usda"))  # still open in this process: writing again must work
    write_sketch_usd(tmp_path / "sketch.usda", sketch)
    del held
    stage, curves = strokes_of(tmp_path / "sketch.usda")
    assert curves.GetTypeAttr().Get() == UsdGeom.Tokens.cubic and curves.GetBasisAttr().Get() == UsdGeom.Tokens.bezier
    assert list(curves.GetCurveVertexCountsAttr().Get()) == [4] * 32
    points = np.asarray(curves.GetPointsAttr().Get()).reshape(32, 4, 3)
    np.testing.assert_allclose(points, sketch.control_points_dataset.numpy(), rtol=1e-6, atol=1e-6)
    assert list(curves.GetWidthsAttr().Get()) == pytest.approx([sketch.stroke_width_dataset])
    assert curves.GetWidthsInterpolation() == UsdGeom.Tokens.constant
    assert list(curves.GetDisplayColorAttr().Get()[0]) == pytest.approx([0.1, 0.2, 0.3])
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.z and UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    assert stage.GetDefaultPrim().GetPath() == "/Sketch" and "32 strokes as cubic" in stage.GetRootLayer().documentation


def test_quadratic_strokes_are_raised_to_the_same_cubic_curves_and_lines_stay_lines(tmp_path):
    quadratic = a_sketch(degree=2, count=5)
    write_sketch_usd(tmp_path / "q.usda", quadratic)
    _, curves = strokes_of(tmp_path / "q.usda")
    cubic = torch.from_numpy(np.asarray(curves.GetPointsAttr().Get(), dtype=np.float64)).reshape(5, 4, 3)
    original = quadratic.control_points_dataset.double()
    np.testing.assert_allclose(sample_curves(cubic, 50).numpy(), sample_curves(original, 50).numpy(), atol=1e-5)
    straight = a_sketch(degree=1, count=3)
    write_sketch_usd(tmp_path / "l.usda", straight)
    _, curves = strokes_of(tmp_path / "l.usda")
    assert (
        curves.GetTypeAttr().Get() == UsdGeom.Tokens.linear and list(curves.GetCurveVertexCountsAttr().Get()) == [2] * 3
    )
    quartic = a_sketch(degree=4, count=2)
    how = write_sketch_usd(tmp_path / "p.usda", quartic, samples_per_curve=20)
    _, curves = strokes_of(tmp_path / "p.usda")
    assert "sampled" in how and list(curves.GetCurveVertexCountsAttr().Get()) == [20] * 2


def test_cameras_are_where_the_capture_had_them_looking_the_same_way(tmp_path):
    sketch = a_sketch()
    eye = torch.tensor([2.0, -1.0, 0.8])
    c2w = look_at(eye.tolist())[None].float()
    cameras = Cameras(camera_to_worlds=c2w, fx=300.0, fy=300.0, cx=200.0, cy=150.0, width=400, height=300)
    write_sketch_usd(tmp_path / "c.usda", sketch, {"train": cameras})
    stage = Usd.Stage.Open(str(tmp_path / "c.usda"))
    camera = UsdGeom.Camera(stage.GetPrimAtPath("/Sketch/Cameras/train_0000"))
    world = camera.ComputeLocalToWorldTransform(Usd.TimeCode.Default())
    centre = np.asarray(world.Transform(Gf.Vec3d(0, 0, 0)))
    ahead = np.asarray(world.Transform(Gf.Vec3d(0, 0, -1))) - centre
    transform, scale = sketch.dataparser_transform.double(), sketch.dataparser_scale
    expected = ((eye.double() / scale - transform[:, 3]) @ transform[:, :3]).numpy()
    np.testing.assert_allclose(centre, expected, atol=1e-6)
    looking = (-c2w[0, :3, 2].double() @ transform[:, :3]).numpy()
    np.testing.assert_allclose(ahead / np.linalg.norm(ahead), looking / np.linalg.norm(looking), atol=1e-6)
    gf = camera.GetCamera(Usd.TimeCode.Default())
    assert gf.GetFieldOfView(Gf.Camera.FOVHorizontal) == pytest.approx(math.degrees(2 * math.atan(200 / 300)), 1e-5)
