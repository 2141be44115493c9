"""Builders the tests share: cameras, models, tiny scenes in each layout, and ``ns-train`` runs (in-process, or
through the console script for the tests marked ``slow``)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.scene_box import SceneBox
from PIL import Image

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}
"""An open_clip model config for a ~1M-parameter ResNet CLIP at 64x64 (named by its file's stem)."""

# ----------------------------------------------------------------------------------------------------------------------
# Cameras and models


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> torch.Tensor:
    """OpenGL camera-to-world [3, 4] at ``eye`` looking at ``target`` (nerfstudio's convention)."""
    eye, target, up = (torch.tensor(v, dtype=torch.float64) for v in (eye, target, up))
    back = eye - target
    back = back / back.norm()
    right = torch.linalg.cross(up, back)
    right = right / right.norm()
    cam_up = torch.linalg.cross(back, right)
    return torch.stack([right, cam_up, back, eye], dim=1)


def ring_cameras(
    n: int = 8,
    radius: float = 3.0,
    size: int = 48,
    focal: float = 60.0,
    centre: Sequence[float] = (0.0, 0.0, 0.0),
    heights: Sequence[float] = (-0.4, 0.8),
) -> Cameras:
    """``n`` square pinhole cameras on a ring around ``centre`` looking at it, alternating between ``heights``."""
    eyes = []
    for i in range(n):
        a = 2 * math.pi * i / n
        z = heights[i % len(heights)]
        eyes.append((centre[0] + radius * math.cos(a), centre[1] + radius * math.sin(a), centre[2] + z))
    c2w = torch.stack([look_at(e, centre) for e in eyes]).float()
    return Cameras(
        camera_to_worlds=c2w, fx=focal, fy=focal, cx=size / 2, cy=size / 2, width=size, height=size,
        camera_type=CameraType.PERSPECTIVE,
    )


def make_model(guidance=None, **overrides):
    """A clipsketch model in a [-1, 1] scene box (4 curves of 24 Gaussians, untied, unless overridden)."""
    from nerfstudio_clipsketch.model import ClipSketchModelConfig

    config = ClipSketchModelConfig(**{"num_curves": 4, "gaussians_per_curve": 24, "symmetry": "off", **overrides})
    model = config.setup(scene_box=SceneBox(torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=8)
    if guidance is not None:
        model.use_guidance(guidance)
    return model


# ----------------------------------------------------------------------------------------------------------------------
# Tiny scenes in each layout

OBJECT = np.array([5.0, -3.0, 2.0])
SPLIT_SIZES = {"train": 4, "val": 2, "test": 2}
SIZE = 32


def look_at_matrix(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenGL camera-to-world 4x4 at ``position`` looking at ``target``, z up."""
    pose = np.eye(4)
    pose[:3, :4] = look_at(position, target).numpy()
    return pose


def camera_poses(count: int, offset: int, target: np.ndarray = OBJECT) -> list:
    """Cameras around ``target`` at different distances (2 to 3 units) and directions."""
    poses = []
    for i in range(offset, offset + count):
        azimuth, elevation = 2.0 * math.pi * i / 8.0, 0.2 + 0.1 * i
        direction = np.array(
            [math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation)]
        )
        poses.append(look_at_matrix(target + (2.0 + 0.125 * i) * direction, target))
    return poses


def write_image(path: Path, background: Sequence[int], alpha: Optional[int] = None) -> None:
    """A SIZE x SIZE image of ``background`` with a grey square in the middle (RGBA when ``alpha`` is given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.empty((SIZE, SIZE, 3), dtype=np.uint8)
    pixels[:] = background
    pixels[SIZE // 4 : 3 * SIZE // 4, SIZE // 4 : 3 * SIZE // 4] = 128
    if alpha is None:
        Image.fromarray(pixels).save(path)
        return
    a = np.full((SIZE, SIZE, 1), alpha, dtype=np.uint8)
    a[SIZE // 4 : 3 * SIZE // 4, SIZE // 4 : 3 * SIZE // 4] = 255
    Image.fromarray(np.concatenate([pixels, a], axis=-1)).save(path)


def make_clipasso3d_scene(
    root: Path,
    background: Sequence[int] = (0, 0, 0),
    object_position: bool = True,
    world_pos: bool = True,
    sizes: Dict[str, int] = SPLIT_SIZES,
) -> Dict[str, list]:
    """A tiny scene in the clipasso3d layout; returns the camera poses of each split."""
    all_poses, offset = {}, 0
    for split, count in sizes.items():
        poses = camera_poses(count, offset)
        offset += count
        frames = []
        for i, pose in enumerate(poses):
            frames.append({"file_path": f"{split}/r_{i}", "transform_matrix": pose.tolist()})
            write_image(root / "rgb" / split / f"r_{i}.png", background, alpha=255)
        meta = {"camera_angle_x": 0.69, "frames": frames}
        if object_position:
            meta["object_position"] = OBJECT.tolist()
        (root / f"transforms_{split}.json").write_text(json.dumps(meta))
        if world_pos:
            (root / "world_pos" / split).mkdir(parents=True)
        all_poses[split] = poses
    return all_poses


def make_blender_scene(root: Path, transparent: bool = True, splits: Sequence[str] = ("train", "val", "test")) -> None:
    """A tiny NeRF-synthetic-style scene: RGBA images whose background is transparent black."""
    for split in splits:
        frames = []
        for i, pose in enumerate(camera_poses(SPLIT_SIZES[split], 0, target=np.zeros(3))):
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": pose.tolist()})
            write_image(root / split / f"r_{i}.png", (0, 0, 0), alpha=0 if transparent else 255)
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": 0.69, "frames": frames}))


def make_nerfstudio_capture(root: Path, count: int = 10) -> None:
    """A tiny capture as ns-process-data writes it: transforms.json and images/."""
    frames = []
    for i, pose in enumerate(camera_poses(count, 0, target=np.zeros(3))):
        frames.append({"file_path": f"images/frame_{i:05d}.png", "transform_matrix": pose.tolist()})
        write_image(root / "images" / f"frame_{i:05d}.png", (200, 200, 200))
    meta = {"fl_x": 30.0, "fl_y": 30.0, "cx": 16.0, "cy": 16.0, "w": SIZE, "h": SIZE, "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta))


def nerfstudio_capture_from(blender_scene: Path, out: Path, count: int = 12) -> Path:
    """A Blender-layout scene re-laid as an ns-process-data capture: images/ and one transforms.json."""
    meta = json.loads((blender_scene / "transforms_train.json").read_text())
    (out / "images").mkdir(parents=True)
    with Image.open(blender_scene / f"{meta['frames'][0]['file_path']}.png") as first:
        size = first.size[0]
    focal = 0.5 * size / math.tan(0.5 * meta["camera_angle_x"])
    frames = []
    for i, frame in enumerate(meta["frames"][:count]):
        shutil.copy(blender_scene / f"{frame['file_path']}.png", out / "images" / f"frame_{i:05d}.png")
        frames.append({"file_path": f"images/frame_{i:05d}.png", "transform_matrix": frame["transform_matrix"]})
    capture = {"fl_x": focal, "fl_y": focal, "cx": size / 2, "cy": size / 2, "w": size, "h": size,
               "camera_model": "OPENCV", "frames": frames}
    (out / "transforms.json").write_text(json.dumps(capture))
    return out


# ----------------------------------------------------------------------------------------------------------------------
# ns-train runs

TRAIN_STEPS = 40


def train_args(scene: Path, clip_config: Path, output_dir: Path, steps: int = TRAIN_STEPS) -> list:
    """``ns-train clipsketch`` arguments for a short CPU run on ``scene`` with the tiny random CLIP."""
    return [
        "clipsketch",
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
        "--pipeline.model.hull-resolution", 32,
        "--pipeline.model.clip.model-name", clip_config.stem,
        "--pipeline.model.clip.model-config", clip_config,
        "--pipeline.model.clip.pretrained", "none",
        "--pipeline.model.clip.layer-weights", 0.0, 1.0, 1.0, 1.0, 0.0,
        "--optimizers.control-points.optimizer.lr", 5e-3,
        "--pipeline.model.timelapse-every", 10,
    ]


def with_option(args: Sequence, flag: str, value) -> list:
    """``args`` with ``flag`` set to ``value``: replaced where :func:`train_args` gives it, added before the dataparser
    subcommand (if any) otherwise."""
    args = list(args)
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args[1:1] = [flag, value]  # right after the method name
    return args


def run_dir(output_dir: Path) -> Path:
    """The run folder of :func:`train_args` under ``output_dir``."""
    return Path(output_dir) / "tiny" / "clipsketch" / "run"


def train_in_process(args: Sequence) -> Path:
    """``ns-train`` (as its console script parses and runs it) in this process; returns the run's config.yml.

    nerfstudio's event writers are module-level lists that each run appends to: they are emptied before and after,
    so that one run's logs hold only its own events.
    """
    import tyro
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion
    from nerfstudio.scripts.train import main
    from nerfstudio.utils import writer

    config = tyro.cli(AnnotatedBaseConfigUnion, args=[str(a) for a in args])
    writer.EVENT_WRITERS.clear()
    writer.EVENT_STORAGE.clear()
    try:
        main(config)
    finally:
        writer.EVENT_WRITERS.clear()
        writer.EVENT_STORAGE.clear()
    return config.get_base_dir() / "config.yml"


def cli_env() -> dict:
    """Environment for command-line runs in tests: CPU only, never the network."""
    env = dict(os.environ)
    env.update({"CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    return env


def with_default_sigint() -> None:
    """``preexec_fn`` for processes a test stops with Ctrl-C: SIGINT acts as it does in a terminal even when the test
    runs as a background job (which starts with SIGINT ignored, and a program rightly keeps it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli_command(args) -> list:
    """A console script of this environment and its arguments, as strings."""
    exe = shutil.which(args[0], path=str(Path(sys.executable).parent))
    assert exe is not None, f"{args[0]} is not installed in this environment"
    return [exe, *map(str, args[1:])]


def run_cli(args, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    """Run a console script of this environment; returns the CompletedProcess (output captured as text)."""
    return subprocess.run(cli_command(args), cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout)


def console_text(output: str) -> str:
    """nerfstudio's rich console output as one line: wrapped lines joined, the ``file.py:123`` log columns dropped."""
    return " ".join(re.sub(r"\s\S+\.py:\d+\s", " ", output).split())
