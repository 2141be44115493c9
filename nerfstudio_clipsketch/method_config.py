"""The ``clipsketch`` method as nerfstudio registers it (entry point ``nerfstudio.method_configs``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Type

import torch
from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.plugins.types import MethodSpecification
from nerfstudio.utils.rich_utils import CONSOLE

from nerfstudio_clipsketch.datamanager import ClipSketchDataManagerConfig
from nerfstudio_clipsketch.model import ClipSketchModelConfig
from nerfstudio_clipsketch.pipeline import ClipSketchPipelineConfig

MAX_ITERATIONS = 2000


@dataclass
class ClipSketchTrainerConfig(TrainerConfig):
    """nerfstudio's trainer, falling back to the CPU when CUDA was asked for but there is none."""

    _target: Type = field(default_factory=lambda: Trainer)

    def setup(self, **kwargs):
        if self.machine.device_type == "cuda" and not torch.cuda.is_available():
            CONSOLE.log("[yellow]No CUDA device found: clipsketch trains on the CPU (pure-PyTorch renderer).")
            self.machine.device_type = "cpu"
        return super().setup(**kwargs)


clipsketch_config = ClipSketchTrainerConfig(
    method_name="clipsketch",
    steps_per_eval_image=100,
    steps_per_eval_batch=0,
    steps_per_eval_all_images=MAX_ITERATIONS,
    steps_per_save=250,
    max_num_iterations=MAX_ITERATIONS,
    mixed_precision=False,
    pipeline=ClipSketchPipelineConfig(
        datamanager=ClipSketchDataManagerConfig(),
        model=ClipSketchModelConfig(),
    ),
    optimizers={
        "control_points": {
            "optimizer": AdamOptimizerConfig(lr=2e-3, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(lr_final=2e-4, max_steps=MAX_ITERATIONS),
        },
    },
    viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
    vis="viewer",
)

clipsketch_method = MethodSpecification(
    config=clipsketch_config,
    description="Abstract 3D sketch: Bézier curves drawn as Gaussians, guided by CLIP (CLIPasso in 3D).",
)
