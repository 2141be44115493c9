"""Bad input to ``ns-train clipsketch`` ends in one message naming the value and what is allowed, exit status 2 and no
traceback, before the first step: one test per kind of input (issue 10's table), each run in this process as the
command line parses it. (``tests/test_console_scripts.py`` checks the console script itself prints no traceback.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.helpers import TINY_CLIP, console_text, train_args, train_in_process, with_option


def other_architecture_weights(folder: Path) -> Path:
    """Weights of an open_clip model shaped unlike the tests' tiny CLIP (narrower), saved as a state dict."""
    import open_clip

    config = folder / "clipsketch-narrow-rn.json"
    config.write_text(json.dumps({**TINY_CLIP, "vision_cfg": {**TINY_CLIP["vision_cfg"], "width": 8}}))
    open_clip.add_model_config(config)
    path = folder / "narrow.pt"
    torch.save(open_clip.create_model(config.stem).state_dict(), path)
    return path


def corrupt_checkpoint_folder(folder: Path) -> Path:
    (folder / "nerfstudio_models").mkdir(parents=True)
    (folder / "nerfstudio_models" / "step-000000005.ckpt").write_bytes(b"\x00 not a checkpoint" * 10)
    return folder


# (id, extra arguments given tmp_path, what the message must say, refused before any data is read)
ROWS = [
    ("views-per-step 0", lambda tmp: [("--pipeline.datamanager.views-per-step", 0)],
     ["--pipeline.datamanager.views-per-step must be at least 1, got 0"], True),
    ("views-per-step above the training views", lambda tmp: [("--pipeline.datamanager.views-per-step", 1000)],
     ["views-per-step 1000 is more than the 40 training views", "use 40 or fewer"],
     False),
    ("corrupt CLIP weights file", lambda tmp: [("--pipeline.model.clip.pretrained", _write(tmp / "w.pt", b"junk" * 9))],
     ["w.pt' cannot be read as CLIP weights", ".safetensors"], False),
    ("CLIP weights of another architecture",
     lambda tmp: [("--pipeline.model.clip.pretrained", other_architecture_weights(tmp))],
     ["narrow.pt' does not hold weights for CLIP model 'clipsketch-tiny-rn'", "--pipeline.model.clip.model-name"],
     False),
    ("load-dir missing", lambda tmp: [("--load-dir", tmp / "no-such-run")],
     ["no-such-run' does not exist", "nerfstudio_models/"], True),
    ("load-dir empty", lambda tmp: [("--load-dir", _mkdir(tmp / "empty"))],
     ["empty' holds no checkpoint (step-<number>.ckpt files)"], True),
    ("load-dir a checkpoint file", lambda tmp: [("--load-dir", _write(tmp / "step-000000001.ckpt", b""))],
     ["is a file; pass its folder with --load-dir, or the file with --load-checkpoint"], True),
    ("corrupt checkpoint", lambda tmp: [("--load-dir", corrupt_checkpoint_folder(tmp / "run"))],
     ["step-000000005.ckpt' cannot be loaded into this run", "damaged"], False),
    ("blender-data on an empty folder", lambda tmp: [("--data", _mkdir(tmp / "empty")), ("blender-data", None)],
     ["blender-data cannot read --data", "transforms_train.json does not exist", "Leave the parser out"], False),
    ("negative learning rate", lambda tmp: [("--optimizers.control-points.optimizer.lr", -1)],
     ["--optimizers.control-points.optimizer.lr must be a positive number, got -1.0"], True),
    ("final learning rate 0", lambda tmp: [("--optimizers.control-points.scheduler.lr-final", 0)],
     ["--optimizers.control-points.scheduler.lr-final must be a positive number"], True),
    ("max-num-iterations 0", lambda tmp: [("--max-num-iterations", 0)],
     ["--max-num-iterations must be at least 1", "got 0"], True),
]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize("row", ROWS, ids=[row[0] for row in ROWS])
def test_bad_input_is_one_message_before_the_first_step(row, tiny_scene, tiny_clip_config, tmp_path, capsys):
    _, extra, expected, before_data = row
    args = train_args(tiny_scene, tiny_clip_config, tmp_path / "out", steps=2)
    for flag, value in extra(tmp_path):
        args = [*args, flag] if value is None else with_option(args, flag, value)
    with pytest.raises(SystemExit) as exit_info:
        train_in_process(args)
    output = console_text(capsys.readouterr().out)
    assert exit_info.value.code == 2, output[-2000:]
    for fragment in expected:
        assert fragment in output, output[-2000:]
    assert "Traceback" not in output and "weights_only" not in output
    assert not list((tmp_path / "out").rglob("*.ckpt"))
    if before_data:  # refused when the trainer is built, before the scene (and CLIP) are loaded
        assert "clipsketch-data: reading" not in output
