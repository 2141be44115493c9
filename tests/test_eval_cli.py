"""``clipsketch-eval``: the JSON it writes for a trained run, its answers on sketches with known metrics, bad input."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from nerfstudio.utils.eval_utils import eval_setup

from nerfstudio_clipsketch.cameras import from_dataset_coordinates
from nerfstudio_clipsketch.curves import curve_lengths, sample_curves
from nerfstudio_clipsketch.dataparsers.builtin import load_ground_truth_curves
from nerfstudio_clipsketch.evaluation import report as report_module
from nerfstudio_clipsketch.evaluation.metrics import bbox_diagonal
from nerfstudio_clipsketch.evaluation.report import MetricOptions, evaluate_sketch
from nerfstudio_clipsketch.scripts import eval as eval_script
from nerfstudio_clipsketch.scripts.common import load_run
from tests.helpers import OBJECT, SIZE, TRAIN_STEPS, make_clipasso3d_scene

LABELS = ("0.5%", "1%", "2%")
MAX_VIEWS = 3


@pytest.fixture(scope="module")
def cli_report(trained_run, tmp_path_factory):
    """``clipsketch-eval`` on the trained run, its command line parsed and run in this process; returns (report,
    printed output, output path). The console script itself is run by the tests marked ``slow``."""
    import contextlib
    import io

    import tyro

    path = tmp_path_factory.mktemp("eval") / "metrics.json"
    args = ["--load-config", str(trained_run), "--output-path", str(path), "--max-views", str(MAX_VIEWS)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        tyro.cli(eval_script.EvalSketch, args=args).main()
    return json.loads(path.read_text()), " ".join(printed.getvalue().split()), path


def test_cli_json_describes_the_run_and_its_metrics(cli_report, trained_run):
    report, stdout, path = cli_report
    assert report["format"] == "nerfstudio-clipsketch-eval"
    assert report["config"] == str(trained_run.resolve())
    assert report["step"] == TRAIN_STEPS - 1  # nerfstudio saves the last step, counted from 0
    assert report["checkpoint"].endswith(f"step-{TRAIN_STEPS - 1:09d}.ckpt")
    assert report["initial"] is False
    assert (report["layout"], report["split"]) == ("blender", "test")
    assert Path(report["data"]).is_dir()
    assert report["num_curves"] == len(report["curve_lengths"]) == 8
    assert report["total_length"] == pytest.approx(sum(report["curve_lengths"]))
    # 8 * 200 samples shared by length, each curve's count rounded (and at least 2)
    assert abs(report["num_curve_points"] - 8 * 200) <= 8
    assert report["sample_spacing"] == pytest.approx(report["total_length"] / (report["num_curve_points"] - 8))

    curves = report["curves"]
    assert Path(curves["ground_truth"]).name == "curves.json"
    assert curves["num_gt_curves"] == 24 and abs(curves["num_gt_points"] - 24 * 200) <= 24
    assert curves["gt_sample_spacing"] < 0.5 * curves["tau@0.5%"]
    assert math.isfinite(curves["chamfer"]) and curves["chamfer"] > 0
    assert curves["chamfer/diag"] == pytest.approx(curves["chamfer"] / curves["diagonal"])
    for label, fraction in zip(LABELS, (0.005, 0.01, 0.02)):
        assert curves[f"tau@{label}"] == pytest.approx(fraction * curves["diagonal"])
        for name in ("precision", "recall", "f1"):
            assert 0.0 <= curves[f"{name}@{label}"] <= 1.0
    assert curves["precision@0.5%"] <= curves["precision@1%"] <= curves["precision@2%"]
    assert report["surface"] is None  # the built-in scene has curves, not world positions

    views = report["views"]
    assert [v["index"] for v in views] == list(range(MAX_VIEWS))
    assert report["clip"]["num_views"] == MAX_VIEWS and report["clip"]["pretrained"] == "none"
    assert report["clip"]["similarity"] == pytest.approx(np.mean([v["clip_similarity"] for v in views]))
    for view in views:
        assert -1.0 <= view["clip_similarity"] <= 1.0 and -1.0 <= view["clip_similarity_blank"] <= 1.0
        assert view["mask"] == "background" and view["foreground_pixels"] > 0
        assert 0.0 <= view["foreground_touch"] <= 1.0
    touch = report["foreground_touch"]
    assert touch["masks"] == ["background"] and touch["num_views"] == MAX_VIEWS
    assert touch["mean"] == pytest.approx(np.mean([v["foreground_touch"] for v in views]))

    assert "precision" in stdout and "CLIP similarity" in stdout and str(path) in stdout


# --- known answers, on the trained pipeline with its curves replaced --------------------------------------------------


@pytest.fixture(scope="module")
def pipeline(trained_run):
    _, pipeline, _, _ = eval_setup(trained_run, test_mode="test")
    return pipeline


def draw_curves(pipeline, dataset_control_points: torch.Tensor) -> None:
    """Make the pipeline's model draw these curves (dataset coordinates, into nerfstudio's normalised frame)."""
    model = pipeline.model
    outputs = pipeline.datamanager.train_dataparser_outputs
    world = from_dataset_coordinates(dataset_control_points, outputs.dataparser_transform, outputs.dataparser_scale)
    model.curves.draw(world)
    model.resample_gaussians()


def ground_truth(pipeline) -> dict:
    metadata = pipeline.datamanager.train_dataparser_outputs.metadata
    sketch = load_ground_truth_curves(Path(metadata["clipsketch_gt_curves"]))
    return {"control_points": sketch.control_points_dataset, "names": sketch.metadata["names"]}


def test_ground_truth_curves_score_perfectly(pipeline):
    draw_curves(pipeline, ground_truth(pipeline)["control_points"])
    report = evaluate_sketch(pipeline, MetricOptions(max_views=1))
    curves = report["curves"]
    for label in LABELS:
        assert curves[f"precision@{label}"] == 1.0 and curves[f"recall@{label}"] == 1.0
        assert curves[f"f1@{label}"] == 1.0
    assert curves["chamfer"] < 1e-6 * curves["diagonal"]
    assert report["num_curves"] == 24


def test_strokes_alive_against_the_reference_or_else_the_visual_hull(pipeline):
    """Strokes count as alive from 2 % of the reference's diagonal; with no 3D reference the visual hull carved from
    the training views stands in, and its diagonal is the object's."""
    lengths = [0.0, 0.05, 0.07, 2.0]
    with_curves = {"curve_lengths": lengths, "num_curves": 4, "curves": {"diagonal": 3.0}, "abcnef": None}
    assert report_module._alive(with_curves, pipeline) == {
        "count": 2,
        "of": 4,
        "min_length": pytest.approx(0.06),
        "reference": "curves",
        "diagonal": 3.0,
    }
    alive = report_module._alive({"curve_lengths": lengths, "num_curves": 4, "curves": None}, pipeline)
    gt_diagonal = bbox_diagonal(sample_curves(ground_truth(pipeline)["control_points"], 50))
    assert alive["reference"] == "visual hull"
    assert alive["min_length"] == pytest.approx(0.02 * gt_diagonal, rel=0.35), gt_diagonal


def test_curves_shifted_by_twice_tau_miss_at_tau(pipeline):
    """The ring's four arcs, lifted by 2 tau (tau at 0.5 %): every point is then 2 tau above the ground truth (and
    at most 2.05 tau from its nearest ground-truth sample, which lie 0.33 tau apart).

    Only the ring, because it lies 0.15 or more from every other curve: the whole sketch shifted by 2 tau in any
    direction would put points near corners where other curves meet within tau of them (0.11 tau at best, measured).
    """
    gt = ground_truth(pipeline)
    ring = torch.stack([cp for cp, name in zip(gt["control_points"], gt["names"]) if name.startswith("ring arc")])
    tau = 0.005 * bbox_diagonal(sample_curves(gt["control_points"], 200, by_length=True))
    draw_curves(pipeline, ring + torch.tensor([0.0, 0.0, 2.0 * tau]))
    curves = evaluate_sketch(pipeline, MetricOptions(max_views=1))["curves"]
    assert curves["tau@0.5%"] == pytest.approx(tau)
    assert curves["precision@0.5%"] == 0.0 and curves["recall@0.5%"] == 0.0
    assert curves["precision@2%"] == 1.0  # 2 tau <= 4 tau
    lengths = curve_lengths(gt["control_points"].double())
    is_ring = torch.tensor([name.startswith("ring arc") for name in gt["names"]])
    ring_share = float(lengths[is_ring].sum() / lengths.sum())
    assert curves["recall@2%"] == pytest.approx(ring_share, abs=2e-3)  # samples are shared out by length
    assert curves["chamfer"] > tau


def test_clip_similarities_are_the_guidance_ones(pipeline):
    model = pipeline.model
    report = evaluate_sketch(pipeline, MetricOptions(max_views=2))
    dataset = pipeline.datamanager.eval_dataset
    for view in report["views"]:
        i = view["index"]
        sketch = model.get_outputs_for_camera(dataset.cameras[i : i + 1])["rgb"]
        target = model.style.composite(dataset[i]["image"])
        blank = model.style.background.expand_as(sketch)
        expected = pipeline.ensure_guidance().similarity(torch.stack([sketch, blank]), torch.stack([target, target]))
        assert view["clip_similarity"] == pytest.approx(float(expected[0]), abs=1e-6)
        assert view["clip_similarity_blank"] == pytest.approx(float(expected[1]), abs=1e-6)


def test_initial_sketch_is_the_one_training_started_from_and_step_zero(trained_run):
    """The checkpoints keep the curves training started from (a hull start cannot be redrawn without the images)."""
    first, second = load_run(trained_run, initial=True), load_run(trained_run, initial=True)
    assert first.step == 0 and first.checkpoint is not None
    assert torch.equal(first.pipeline.model.control_points, second.pipeline.model.control_points)
    saved = torch.load(first.checkpoint, map_location="cpu", weights_only=False)["pipeline"]
    torch.testing.assert_close(first.pipeline.model.control_points.data, saved["_model.curves.initial_control_points"])
    trained = load_run(trained_run)
    assert trained.step == TRAIN_STEPS - 1
    assert not torch.equal(first.pipeline.model.control_points, trained.pipeline.model.control_points)


# --- surfaces from world positions (a synthetic clipasso3d scene) -----------------------------------------------------

NORMAL = np.array([0.2, 0.3, 1.0]) / np.linalg.norm([0.2, 0.3, 1.0])
HEIGHT = 10.0


def write_world_pos(scene: Path, offset: float) -> None:
    """Per-pixel positions of the plane through the object with normal NORMAL, on each test image's grey square
    (where the image shows the object), moved by ``offset`` along x (0: they match the cameras)."""
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    import cv2

    meta = json.loads((scene / "transforms_test.json").read_text())
    fx = 0.5 * SIZE / math.tan(0.5 * meta["camera_angle_x"])
    rows, cols = np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="ij")
    d_cv = np.stack([(cols + 0.5 - SIZE / 2) / fx, (rows + 0.5 - SIZE / 2) / fx, np.ones((SIZE, SIZE))], -1)
    for frame in meta["frames"]:
        c2w = np.asarray(frame["transform_matrix"])
        d_world = (d_cv * np.array([1.0, -1.0, -1.0])) @ c2w[:3, :3].T  # OpenCV -> OpenGL camera axes -> world
        eye = c2w[:3, 3]
        t = ((OBJECT - eye) @ NORMAL) / (d_world @ NORMAL)
        positions = np.zeros((SIZE, SIZE, 4), dtype=np.float32)
        square = slice(SIZE // 4, 3 * SIZE // 4)
        positions[square, square, :3] = (eye + t[..., None] * d_world)[square, square] + [offset, 0.0, 0.0]
        positions[..., 3] = 1.0
        path = scene / "world_pos" / "test" / f"{Path(frame['file_path']).name}.exr"
        assert cv2.imwrite(str(path), positions[..., [2, 1, 0, 3]], [cv2.IMWRITE_EXR_TYPE, cv2.IMWRITE_EXR_TYPE_FLOAT])


def clipasso3d_pipeline(scene: Path, tiny_clip_config: Path):
    from nerfstudio_clipsketch.clip_guidance import ClipGuidanceConfig
    from nerfstudio_clipsketch.datamanager import ClipSketchDataManagerConfig
    from nerfstudio_clipsketch.dataparsers.auto import ClipSketchDataParserConfig
    from nerfstudio_clipsketch.model import ClipSketchModelConfig
    from nerfstudio_clipsketch.pipeline import ClipSketchPipelineConfig

    clip = ClipGuidanceConfig(model_name=tiny_clip_config.stem, pretrained="none", model_config=tiny_clip_config)
    config = ClipSketchPipelineConfig(
        datamanager=ClipSketchDataManagerConfig(dataparser=ClipSketchDataParserConfig(data=scene)),
        model=ClipSketchModelConfig(num_curves=2, gaussians_per_curve=8, clip=clip),
    )
    pipeline = config.setup(device="cpu", test_mode="test")
    pipeline.eval()
    return pipeline


@pytest.mark.parametrize("offset", [0.0, 1.0])
def test_surface_metrics_from_world_positions(tmp_path, tiny_clip_config, offset):
    """Curves HEIGHT above the object's surface, in a scene whose object is off the origin: they are HEIGHT from it in
    the dataset's units. World positions that miss their pixels by a unit (as the duck's do) leave no surface points:
    a note, not a crash."""
    make_clipasso3d_scene(tmp_path)
    write_world_pos(tmp_path, offset)
    pipeline = clipasso3d_pipeline(tmp_path, tiny_clip_config)
    u = np.cross(NORMAL, [1.0, 0.0, 0.0])
    segment = [OBJECT + HEIGHT * NORMAL + s * 0.1 * u for s in np.linspace(-1.0, 1.0, 4)]
    draw_curves(pipeline, torch.tensor(np.stack([segment, segment[::-1]]), dtype=torch.float32))
    report = evaluate_sketch(pipeline, MetricOptions(min_surface_points=100))

    assert report["layout"] == "clipasso3d"
    assert report["curves"] is None
    surface = report["surface"]
    assert surface["world_pos_dir"] == str(tmp_path / "world_pos" / "test") and surface["num_views"] == 2
    assert report["foreground_touch"]["masks"] == ["world_pos"]
    assert all(v["foreground_pixels"] == (SIZE // 2) ** 2 for v in report["views"])
    if offset == 0.0:
        assert surface["skipped"] is False and surface["num_surface_points"] == 2 * (SIZE // 2) ** 2
        assert surface["mean_distance"] == pytest.approx(HEIGHT, abs=1e-3)
        assert surface["precision@2%"] == 0.0
        assert not [note for note in report["notes"] if "surface" in note]
    else:
        assert surface["skipped"] is True and surface["num_surface_points"] == 0
        assert "mean_distance" not in surface
        notes = [note for note in report["notes"] if note.startswith("No surface metrics")]
        assert len(notes) == 1 and "only 0 world-position pixels of the 512 on the object" in notes[0]


# --- bad input --------------------------------------------------------------------------------------------------------


def run_entrypoint(monkeypatch, capsys, *args) -> tuple[int, str]:
    """``clipsketch-eval`` in this process: exit status and printed output."""
    monkeypatch.setattr(sys, "argv", ["clipsketch-eval", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        eval_script.entrypoint()
    captured = capsys.readouterr()
    return exit_info.value.code, " ".join((captured.out + captured.err).split())


def test_missing_config_is_a_message(tmp_path, monkeypatch, capsys):
    code, output = run_entrypoint(monkeypatch, capsys, "--load-config", tmp_path / "nope.yml")
    assert code == 1 and "nope.yml" in output and "does not exist" in output and "Traceback" not in output


def test_config_of_another_method_is_a_message(tmp_path, monkeypatch, capsys):
    from nerfstudio.configs.method_configs import all_methods

    config = tmp_path / "config.yml"
    config.write_text(yaml.dump(all_methods["splatfacto"]))
    code, output = run_entrypoint(monkeypatch, capsys, "--load-config", config)
    assert code == 1 and "'splatfacto' run" in output and "clipsketch" in output and "Traceback" not in output


def test_run_without_checkpoints_is_a_message(trained_run, tmp_path, monkeypatch, capsys):
    config = yaml.load(trained_run.read_text(), Loader=yaml.Loader)
    config.output_dir = tmp_path / "elsewhere"
    path = tmp_path / "config.yml"
    path.write_text(yaml.dump(config))
    code, output = run_entrypoint(monkeypatch, capsys, "--load-config", path)
    assert code == 1 and "no checkpoint" in output and "--initial" in output and "Traceback" not in output


def test_a_scene_without_test_split_is_measured_on_its_val_views(run_without_test_split, tmp_path, capsys):
    import tyro

    path = tmp_path / "metrics.json"
    args = ["--load-config", str(run_without_test_split), "--output-path", str(path), "--max-views", "1"]
    tyro.cli(eval_script.EvalSketch, args=args).main()
    assert json.loads(path.read_text())["split"] == "val"
    assert "evaluating on the 'val' views instead" in " ".join(capsys.readouterr().out.split())


def test_a_kept_checkpoint_is_measured_by_its_step_and_a_missing_one_is_a_message(trained_run, monkeypatch, capsys):
    assert load_run(trained_run, step=TRAIN_STEPS - 1).step == TRAIN_STEPS - 1
    code, output = run_entrypoint(monkeypatch, capsys, "--load-config", trained_run, "--load-step", 3)
    assert code == 1 and "no checkpoint of step 3" in output and f"kept: {TRAIN_STEPS - 1}" in output
    assert "--save-only-latest-checkpoint False" in output and "Traceback" not in output
    code, output = run_entrypoint(monkeypatch, capsys, "--load-config", trained_run, "--load-step", 3, "--initial")
    assert code == 1 and "--initial and --load-step" in output
