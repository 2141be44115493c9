"""``clipsketch-export`` on a trained run: every format is written, read back, and tied to the trained model."""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
import tyro

from nerfstudio_clipsketch.cameras import from_dataset_coordinates, get_viewmats
from nerfstudio_clipsketch.rendering import render
from nerfstudio_clipsketch.scripts import export as export_script
from nerfstudio_clipsketch.scripts.common import load_run
from nerfstudio_clipsketch.sketch import Sketch
from nerfstudio_clipsketch.strokes import stroke_sigma

plyfile = pytest.importorskip("plyfile")
trimesh = pytest.importorskip("trimesh")

SAMPLES = 12
SVG_NS = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    """``clipsketch-export all`` (one run load) into a fresh folder, its command line parsed and run in this
    process; returns (folder, printed output). The console script itself is run by the tests marked ``slow``."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("exports") / "sketch"
    args = ["--load-config", trained_run, "--output-dir", out, "--samples-per-curve", SAMPLES, "--cameras", "all"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        tyro.cli(export_script.Commands, args=["all", *map(str, args)]).main()
    return out, " ".join(printed.getvalue().split())


@pytest.fixture(scope="module")
def pipeline(trained_run):
    return load_run(trained_run).pipeline


def _ply_xyz(path) -> np.ndarray:
    vertex = plyfile.PlyData.read(str(path))["vertex"]
    return np.stack([vertex["x"], vertex["y"], vertex["z"]], -1).astype(np.float64)


def test_export_all_writes_every_format_and_says_where(exported):
    out, stdout = exported
    for name in ["sketch.json", "curves.ply", "curves.obj", "tubes.ply", "view_0000.svg", "sketch.usda"]:
        assert (out / name).is_file(), name
        assert str(out / name) in stdout, name


def test_json_redraws_the_trained_model(exported, pipeline):
    """The reloaded JSON, drawn by ``rendering.render``, is the model's own render of training cameras.

    The JSON stores curves and stroke style, not where along each curve the model's Gaussians sit at the saved step:
    the model re-spaces them evenly in arc length only every ``resample_every`` steps (between two re-spacings the
    images differ by up to ~0.15 per pixel on this run). So the model is re-spaced first; then both sides share
    ``num_curves * gaussians_per_curve`` Gaussians among the curves by length and put them at the same curve
    parameters with the same sigma, opacity, colours, background
    and eps2d. Control points reload bit for bit (``repr`` floats), and sigma -> width -> sigma costs an ulp, so the
    renders agree to float round-off: atol 1e-5 is far below one 8-bit level (4e-3), yet any error in the frame,
    the width conversion, the colours or the opacity moves inked pixels by much more than that.
    """
    out, _ = exported
    model = pipeline.model
    sketch = Sketch.from_json(out / "sketch.json")
    assert torch.equal(sketch.control_points, model.world_control_points().detach().cpu())
    assert stroke_sigma(sketch.stroke_width) == pytest.approx(float(model.style.sigma()), rel=1e-6)
    assert sketch.stroke_color == tuple(model.style.color.tolist())
    assert sketch.background == tuple(model.style.background.tolist())

    cameras = pipeline.datamanager.train_dataset.cameras[:2]
    stale = model.curves.sample_curve, model.curves.sample_t
    try:
        model.resample_gaussians()
        with torch.no_grad():
            expected = model.get_outputs(cameras)
    finally:
        model.curves.sample_curve, model.curves.sample_t = stale
    means, scales, opacities, colors = sketch.gaussians(model.config.gaussians_per_curve)
    drawn = render(
        means,
        scales,
        opacities,
        colors,
        get_viewmats(cameras.camera_to_worlds),
        cameras.get_intrinsics_matrices(),
        int(cameras.width[0]),
        int(cameras.height[0]),
        torch.tensor(sketch.background),
        eps2d=model.config.eps2d,
    )
    assert float(expected["accumulation"].max()) > 0.5  # strokes are in view: the comparison means something
    torch.testing.assert_close(drawn.rgb, expected["rgb"], rtol=0, atol=1e-5)


def test_polylines_are_the_curves_in_dataset_coordinates(exported):
    out, _ = exported
    sketch = Sketch.from_json(out / "sketch.json")
    num_curves = sketch.num_curves
    ply = plyfile.PlyData.read(str(out / "curves.ply"))
    assert ply["vertex"].count == num_curves * SAMPLES
    assert ply["edge"].count == num_curves * (SAMPLES - 1)
    xyz = _ply_xyz(out / "curves.ply").reshape(num_curves, SAMPLES, 3)
    # A Bézier curve starts and ends at its first and last control points.
    cp = sketch.control_points_dataset.double().numpy()
    np.testing.assert_allclose(xyz[:, 0], cp[:, 0], atol=1e-5)
    np.testing.assert_allclose(xyz[:, -1], cp[:, -1], atol=1e-5)

    lines = (out / "curves.obj").read_text().splitlines()
    obj_v = np.array([[float(x) for x in line.split()[1:]] for line in lines if line.startswith("v ")])
    polylines = [line.split()[1:] for line in lines if line.startswith("l ")]
    assert obj_v.shape == (num_curves * SAMPLES, 3)
    assert len(polylines) == num_curves and all(len(p) == SAMPLES for p in polylines)
    np.testing.assert_allclose(obj_v, xyz.reshape(-1, 3), atol=1e-5)  # PLY stores float32


def test_tubes_are_closed_and_as_wide_as_the_strokes(exported):
    out, _ = exported
    sketch = Sketch.from_json(out / "sketch.json")
    sides = 8  # the default
    mesh = trimesh.load(out / "tubes.ply", process=False)
    assert len(mesh.vertices) == sketch.num_curves * (SAMPLES * sides + 2)
    assert len(mesh.faces) == sketch.num_curves * 2 * sides * SAMPLES
    assert mesh.is_watertight
    # Every ring vertex lies half a stroke width (dataset units) from its polyline point.
    centres = _ply_xyz(out / "curves.ply").reshape(sketch.num_curves, SAMPLES, 1, 3)
    per_curve = np.asarray(mesh.vertices).reshape(sketch.num_curves, SAMPLES * sides + 2, 3)
    rings = per_curve[:, : SAMPLES * sides].reshape(sketch.num_curves, SAMPLES, sides, 3)
    np.testing.assert_allclose(np.linalg.norm(rings - centres, axis=-1), sketch.stroke_width_dataset / 2, rtol=1e-3)


def _svg_points(path) -> np.ndarray:
    """Every vertex of every ``<path>`` of an SVG, ``[P, 2]``."""
    paths = ET.parse(path).getroot().iter(f"{SVG_NS}path")
    return np.array([float(v) for p in paths for v in re.findall(r"-?\d+\.?\d*", p.attrib["d"])]).reshape(-1, 2)


def test_svgs_draw_the_strokes_where_the_cameras_see_them(exported, pipeline):
    """One SVG per camera, training cameras first; the path points of a training and a test view land on strokes
    of the sketch rendered from that camera (a check of the order and of the camera conventions)."""
    out, _ = exported
    train = pipeline.datamanager.train_dataset.cameras
    test = pipeline.datamanager.eval_dataset.cameras
    files = sorted(out.glob("view_*.svg"))
    assert [f.name for f in files] == [f"view_{i:04d}.svg" for i in range(len(train) + len(test))]
    for f in files:
        root = ET.parse(f).getroot()
        assert root.tag == f"{SVG_NS}svg"
        assert root.attrib["viewBox"] == f"0 0 {int(train.width[0])} {int(train.height[0])}"

    sketch = Sketch.from_json(out / "sketch.json")
    dense = sketch.gaussians(64)  # evenly spaced and overlapping: a continuous stroke
    for name, cameras in [("view_0000.svg", train[:1]), (f"view_{len(train):04d}.svg", test[:1])]:
        points = _svg_points(out / name)
        width, height = int(cameras.width[0]), int(cameras.height[0])
        alpha = render(
            *dense,
            get_viewmats(cameras.camera_to_worlds),
            cameras.get_intrinsics_matrices(),
            width,
            height,
            torch.tensor(sketch.background),
        ).alpha[0, ..., 0]
        inside = points[(points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)]
        assert len(inside) >= SAMPLES, name  # something is drawn in the view
        inked = alpha[inside[:, 1].astype(int), inside[:, 0].astype(int)]
        assert float((inked > 0.3).float().mean()) > 0.95, (name, inked.min())


def test_each_subcommand_writes_its_format(trained_run, pipeline, tmp_path):
    """The single-format subcommands parse their own flags and write their own files (in-process, sharing the run
    loaded once; ``all`` above covers loading through the console script)."""
    sketch = pipeline.sketch()
    common = ["--load-config", str(trained_run), "--output-dir", str(tmp_path)]
    cases = [
        (["json"], "sketch.json"),
        (["ply", "--samples-per-curve", "5", "--encoding", "ascii"], "curves.ply"),
        (["obj", "--samples-per-curve", "5"], "curves.obj"),
        (["mesh", "--format", "obj", "--samples-per-curve", "5", "--sides", "4"], "tubes.obj"),
        (["svg", "--samples-per-curve", "5", "--hidden", "dashed"], "view_0000.svg"),
        (["usd", "--cameras", "train"], "sketch.usda"),
    ]
    for args, name in cases:
        command = tyro.cli(export_script.Commands, args=[args[0], *common, *args[1:]])
        command.write(pipeline, sketch)
        assert (tmp_path / name).is_file(), name
    assert plyfile.PlyData.read(str(tmp_path / "curves.ply"))["vertex"].count == sketch.num_curves * 5
    assert len(trimesh.load(tmp_path / "tubes.obj", process=False).vertices) == sketch.num_curves * (5 * 4 + 2)
    assert len(list(tmp_path.glob("view_*.svg"))) == len(pipeline.datamanager.eval_dataset.cameras)  # test only


def test_the_pipelines_sketch_carries_the_dataparser_transform(pipeline, tmp_path, monkeypatch):
    """PLY points are in the capture's frame: they map forward onto the model's curves (this run's own transform
    is the identity, so one is patched in)."""
    outputs = pipeline.datamanager.train_dataparser_outputs
    c, s = np.cos(0.5), np.sin(0.5)
    transform = torch.tensor([[c, -s, 0.0, 0.2], [s, c, 0.0, -0.1], [0.0, 0.0, 1.0, 0.3]], dtype=torch.float32)
    monkeypatch.setattr(outputs, "dataparser_transform", transform)
    monkeypatch.setattr(outputs, "dataparser_scale", 0.5)
    sketch = pipeline.sketch()
    assert sketch.stroke_width_dataset == pytest.approx(2.0 * sketch.stroke_width)
    export_script.ExportPolylinesPly(load_config=tmp_path, output_dir=tmp_path, samples_per_curve=2).write(
        pipeline, sketch
    )
    xyz = torch.tensor(_ply_xyz(tmp_path / "curves.ply"), dtype=torch.float64).reshape(-1, 2, 3)
    forward = from_dataset_coordinates(xyz, transform.double(), 0.5)
    world = pipeline.model.world_control_points().detach().double()
    torch.testing.assert_close(forward[:, 0], world[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(forward[:, 1], world[:, -1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("problem", ["missing config", "output dir is a file", "bad sides"])
def test_bad_input_is_one_clear_message(problem, trained_run, tmp_path, monkeypatch, capsys):
    config, out, extra = trained_run, tmp_path / "out", []
    if problem == "missing config":
        config, expected = tmp_path / "no-such-run" / "config.yml", "does not exist"
    elif problem == "output dir is a file":
        out.write_text("")
        expected = "is a file, not a folder"
    else:
        extra, expected = ["--sides", "2"], "--sides must be at least 3, got 2"
    argv = ["clipsketch-export", "mesh", "--load-config", str(config), "--output-dir", str(out), *extra]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        export_script.entrypoint()
    assert exit_info.value.code == 1
    output = " ".join(capsys.readouterr().out.split())
    assert expected in output and "Traceback" not in output
    assert not (out.is_dir() and any(out.iterdir()))


def test_a_scene_without_test_split_exports_the_val_views_and_says_so(run_without_test_split, tmp_path, capsys):
    args = ["svg", "--load-config", str(run_without_test_split), "--output-dir", str(tmp_path)]
    tyro.cli(export_script.Commands, args=args).main()
    output = " ".join(capsys.readouterr().out.split())
    assert "evaluating on the 'val' views instead" in output
    assert "5 SVG drawings (test cameras, the 'val' split standing in for the missing test split)" in output
    assert len(list(tmp_path.glob("view_*.svg"))) == 5  # the built-in scene's val views
