"""Shared fixtures: a tiny random open_clip model (no downloads) and small synthetic cameras."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="session")
def tiny_clip_config(tmp_path_factory) -> Path:
    """An open_clip model config for a ~1M-parameter ResNet CLIP at 64x64 (named by the file stem)."""
    path = tmp_path_factory.mktemp("clip") / "clipsketch-tiny-rn.json"
    path.write_text(json.dumps(TINY_CLIP))
    return path


@pytest.fixture(scope="session")
def tiny_guidance(tiny_clip_config):
    from nerfstudio_clipsketch.clip_guidance import ClipGuidance, ClipGuidanceConfig

    torch.manual_seed(0)
    config = ClipGuidanceConfig(
        model_name=tiny_clip_config.stem,
        pretrained="none",
        model_config=tiny_clip_config,
        layer_weights=(0.0, 1.0, 1.0, 1.0, 0.0),
        fc_weight=0.1,
        num_augmentations=2,
    )
    return ClipGuidance(config)


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> torch.Tensor:
    """OpenGL camera-to-world [3, 4] at ``eye`` looking at ``target`` (nerfstudio's convention)."""
    eye, target, up = (torch.tensor(v, dtype=torch.float64) for v in (eye, target, up))
    back = eye - target
    back = back / back.norm()
    right = torch.linalg.cross(up, back)
    right = right / right.norm()
    cam_up = torch.linalg.cross(back, right)
    return torch.stack([right, cam_up, back, eye], dim=1)


def cli_env() -> dict:
    """Environment for command-line runs in tests: CPU only, never the network."""
    import os

    env = dict(os.environ)
    env.update({"CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    return env


def run_cli(args, cwd=None, timeout=600):
    """Run a console script of this environment; returns the CompletedProcess (output captured as text)."""
    import shutil
    import subprocess
    import sys

    exe = shutil.which(args[0], path=str(Path(sys.executable).parent))
    assert exe is not None, f"{args[0]} is not installed in this environment"
    return subprocess.run(
        [exe, *map(str, args[1:])], cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout
    )


def console_text(output: str) -> str:
    """nerfstudio's rich console output as one line: wrapped lines joined, the ``file.py:123`` log columns dropped."""
    import re

    return " ".join(re.sub(r"\s\S+\.py:\d+\s", " ", output).split())


TRAIN_STEPS = 40


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory) -> Path:
    """The built-in wireframe scene at 64x64, in nerfstudio's Blender layout, with its ground-truth curves."""
    from nerfstudio_clipsketch.builtin_scene import ensure_builtin_scene

    return ensure_builtin_scene(tmp_path_factory.mktemp("scenes"), image_size=64)


def train_args(scene: Path, clip_config: Path, output_dir: Path, steps: int = TRAIN_STEPS) -> list:
    return [
        "ns-train", "clipsketch",
        "--data", scene,
        "--output-dir", output_dir,
        "--experiment-name", "tiny",
        "--timestamp", "run",
        "--max-num-iterations", steps,
        "--steps-per-save", 10,
        "--steps-per-eval-image", 20,
        "--vis", "tensorboard",
        "--machine.device-type", "cpu",
        "--pipeline.model.num-curves", 8,
        "--pipeline.model.gaussians-per-curve", 24,
        "--pipeline.model.stroke-width", 3.0,
        "--pipeline.model.clip.model-name", clip_config.stem,
        "--pipeline.model.clip.model-config", clip_config,
        "--pipeline.model.clip.pretrained", "none",
        "--pipeline.model.clip.layer-weights", 0.0, 1.0, 1.0, 1.0, 0.0,
        "--optimizers.control-points.optimizer.lr", 5e-3,
        "--pipeline.model.timelapse-every", 10,
    ]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_scene, tiny_clip_config) -> Path:
    """``ns-train clipsketch`` run through its command line for a few steps; returns the run's config.yml."""
    out = tmp_path_factory.mktemp("outputs")
    result = run_cli(train_args(tiny_scene, tiny_clip_config, out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    config = out / "tiny" / "clipsketch" / "run" / "config.yml"
    assert config.is_file(), result.stdout[-2000:]
    return config
