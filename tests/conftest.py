"""Shared fixtures: a tiny random open_clip model (no downloads), the built-in scene at 64x64, a short trained run.
Builders live in :mod:`tests.helpers`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.helpers import TINY_CLIP, train_args, train_in_process


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


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory) -> Path:
    """The built-in wireframe scene at 64x64, in nerfstudio's Blender layout, with its ground-truth curves."""
    from nerfstudio_clipsketch.dataparsers.builtin import ensure_builtin_scene

    return ensure_builtin_scene(tmp_path_factory.mktemp("scenes"), image_size=64)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_scene, tiny_clip_config) -> Path:
    """``ns-train clipsketch`` as its command line parses it, run in this process for a few steps; returns the run's
    config.yml. (The console script itself is exercised by the tests marked ``slow``.)"""
    return train_in_process(train_args(tiny_scene, tiny_clip_config, tmp_path_factory.mktemp("outputs")))


@pytest.fixture(scope="session")
def run_without_test_split(tmp_path_factory, tiny_scene, tiny_clip_config) -> Path:
    """A 2-step run on the tiny scene without transforms_test.json (as ABC-NEF and many captures ship); returns its
    config.yml."""
    import shutil

    scene = tmp_path_factory.mktemp("no-test") / "scene"
    shutil.copytree(tiny_scene, scene)
    (scene / "transforms_test.json").unlink()
    return train_in_process(train_args(scene, tiny_clip_config, tmp_path_factory.mktemp("outputs"), steps=2))
