"""``ns-train clipsketch`` as its command line parses and runs it: a tiny scene, a tiny random CLIP, a few steps.

Runs are in this process (:func:`tests.helpers.train_in_process`); the console script itself is run by
``tests/test_console_scripts.py`` (marked ``slow``).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from nerfstudio.utils.eval_utils import eval_setup

from nerfstudio_clipsketch.scripts.common import load_run
from tests.helpers import (
    TRAIN_STEPS,
    console_text,
    nerfstudio_capture_from,
    run_dir,
    train_args,
    train_in_process,
)


def mean_training_loss(pipeline) -> float:
    """Un-augmented CLIP loss averaged over every training view (deterministic)."""
    model = pipeline.model
    guidance = pipeline.ensure_guidance()
    cameras = pipeline.datamanager.train_dataset.cameras
    total = 0.0
    with torch.no_grad():
        for i in range(len(cameras)):
            image = pipeline.datamanager.train_dataset[i]["image"]
            sketch = model.get_outputs_for_camera(cameras[i : i + 1])["rgb"]
            losses = guidance.loss(sketch[None], model.style.composite(image)[None], augment=False)
            total += float(sum(losses.values()))
    return total / len(cameras)


def test_training_writes_checkpoints_and_lowers_the_loss(trained_run):
    checkpoints = sorted((trained_run.parent / "nerfstudio_models").glob("step-*.ckpt"))
    assert checkpoints, "no checkpoint written"
    assert checkpoints[-1].name == f"step-{TRAIN_STEPS - 1:09d}.ckpt"
    state = torch.load(checkpoints[-1], map_location="cpu", weights_only=False)
    assert not any("visual" in key for key in state["pipeline"])  # CLIP is not in checkpoints
    _, trained, _, step = eval_setup(trained_run, test_mode="test")
    assert step == TRAIN_STEPS - 1
    # The same config without a checkpoint is the run's starting point (seeded initialisation, seeded random CLIP).
    config, _, _, _ = eval_setup(trained_run, test_mode="test")
    initial = config.pipeline.setup(device="cpu", test_mode="test")
    assert not torch.equal(initial.model.control_points, trained.model.control_points)
    before, after = mean_training_loss(initial), mean_training_loss(trained)
    assert after < before, (before, after)


def control_points(checkpoint) -> torch.Tensor:
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["pipeline"]["_model.curves.control_points"]


def test_resume_from_the_run_folder_continues_the_steps_and_the_curves(
    trained_run, tiny_scene, tiny_clip_config, tmp_path, capsys
):
    run = trained_run.parent
    loaded = control_points(run / "nerfstudio_models" / f"step-{TRAIN_STEPS - 1:09d}.ckpt")
    initial = load_run(trained_run, initial=True).pipeline.model.control_points.detach()
    # --load-dir may name the run's folder. nerfstudio counts --max-num-iterations from the loaded step: 1 more step.
    train_in_process([*train_args(tiny_scene, tiny_clip_config, tmp_path, steps=1), "--load-dir", run])
    output = console_text(capsys.readouterr().out)
    assert f"Done loading Nerfstudio checkpoint from {run / 'nerfstudio_models'}" in output
    checkpoint = run_dir(tmp_path) / "nerfstudio_models" / f"step-{TRAIN_STEPS:09d}.ckpt"
    assert [p.name for p in checkpoint.parent.glob("*.ckpt")] == [checkpoint.name]
    # One Adam step from where the run stopped (each coordinate moves by about the learning rate, 5e-3 in unit
    # lengths), not from the seeded start the curves had travelled away from.
    resumed = control_points(checkpoint)
    step = (resumed - loaded).abs().max()
    assert 0 < step < 1e-2, step
    assert (resumed - initial).abs().max() > 5 * step
    # The progress table counts toward the resumed run's last step (nerfstudio's would show 4000 %).
    done = [float(p) for p in re.findall(rf"{TRAIN_STEPS} \((\d+\.\d+)%\)", output)]
    assert done and all(p <= 100 for p in done), done


def test_missing_data_path_is_one_clear_message(tiny_clip_config, tmp_path, capsys):
    missing = tmp_path / "no-such-scene"
    with pytest.raises(SystemExit) as exit_info:
        train_in_process(train_args(missing, tiny_clip_config, tmp_path / "out", steps=2))
    output = console_text(capsys.readouterr().out)
    assert exit_info.value.code != 0
    assert "Data path does not exist" in output and "no-such-scene" in output
    assert "Traceback" not in output


def test_unknown_clip_model_stops_before_training(tiny_scene, tiny_clip_config, tmp_path, capsys):
    args = train_args(tiny_scene, tiny_clip_config, tmp_path / "out", steps=2)
    args[args.index("--pipeline.model.clip.model-name") + 1] = "RN-nope"
    with pytest.raises(SystemExit) as exit_info:
        train_in_process(args)
    output = console_text(capsys.readouterr().out)
    assert exit_info.value.code != 0
    assert "Unknown CLIP model 'RN-nope'" in output and "Traceback" not in output
    assert not list((tmp_path / "out").rglob("*.ckpt"))


def test_timelapse_is_written_when_training_ends(trained_run):
    from PIL import Image

    run = trained_run.parent
    frames = sorted((run / "timelapse").glob("step_*.png"))
    # Every 10 steps from 0, plus the last step.
    assert [f.name for f in frames] == [f"step_{s:09d}.png" for s in (0, 10, 20, 30, TRAIN_STEPS - 1)]
    with Image.open(run / "timelapse.gif") as gif:
        assert gif.n_frames == len(frames)
        assert gif.size == (64, 64)
    # The sketch moved between the first and the last snapshot.
    first, last = (torch.from_numpy(np.array(Image.open(f))) for f in (frames[0], frames[-1]))
    assert not torch.equal(first, last)


def test_a_nerfstudio_capture_is_detected_and_trains(tiny_scene, tiny_clip_config, tmp_path, capsys):
    capture = nerfstudio_capture_from(tiny_scene, tmp_path / "capture")
    train_in_process(train_args(capture, tiny_clip_config, tmp_path / "out", steps=3))
    assert "as a nerfstudio capture (nerfstudio-data)" in console_text(capsys.readouterr().out)
    assert list((run_dir(tmp_path / "out") / "nerfstudio_models").glob("step-*.ckpt"))


def test_an_explicit_dataparser_subcommand_still_works(tiny_scene, tiny_clip_config, tmp_path):
    train_in_process([*train_args(tiny_scene, tiny_clip_config, tmp_path / "out", steps=2), "blender-data"])
    run = run_dir(tmp_path / "out")
    assert "BlenderDataParserConfig" in (run / "config.yml").read_text()
    assert list((run / "nerfstudio_models").glob("step-*.ckpt"))


def test_logs_hold_the_loss_terms_and_side_by_side_eval_images(trained_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained_run.parent), size_guidance={"images": 0, "scalars": 0}).Reload()
    scalars, images = set(events.Tags()["scalars"]), set(events.Tags()["images"])
    for term in ("clip_layer1", "clip_layer2", "clip_layer3", "clip_fc"):
        assert f"Train Loss Dict/{term}" in scalars, sorted(scalars)
    assert "Eval Images Metrics/clip_similarity" in scalars, sorted(scalars)
    assert "Eval Images/img" in images, sorted(images)
    image = events.Images("Eval Images/img")[-1]
    assert (image.width, image.height) == (2 * 64, 64)  # target | sketch
