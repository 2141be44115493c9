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
