"""The ``clipsketch`` method as nerfstudio registers it (entry point ``nerfstudio.method_configs``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Literal, Type

import torch
from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecayScheduler, ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.plugins.types import MethodSpecification
from nerfstudio.utils.rich_utils import CONSOLE

from nerfstudio_clipsketch.clip_guidance import ClipGuidanceError
from nerfstudio_clipsketch.datamanager import ClipSketchDataManagerConfig
from nerfstudio_clipsketch.dataparsers import ClipSketchDataError
from nerfstudio_clipsketch.model import ClipSketchConfigError, ClipSketchModelConfig
from nerfstudio_clipsketch.pipeline import ClipSketchPipelineConfig

MAX_ITERATIONS = 2000


class FloatExponentialDecayScheduler(ExponentialDecayScheduler):
    """nerfstudio's exponential decay, with learning rates as Python floats rather than numpy ones: torch >= 2.6
    loads checkpoints with ``weights_only=True``, which refuses numpy scalars (and so would ns-render and resume)."""

    def get_scheduler(self, optimizer, lr_init):
        scheduler = super().get_scheduler(optimizer, lr_init)
        numpy_lambda = scheduler.lr_lambdas[0]
        scheduler.lr_lambdas = [lambda step: float(numpy_lambda(step))] * len(scheduler.lr_lambdas)
        # LambdaLR already applied the numpy factor once when it was built: store plain floats from the start.
        for group in optimizer.param_groups:
            group["lr"] = float(group["lr"])
        scheduler._last_lr = [float(lr) for lr in scheduler._last_lr]
        return scheduler


@dataclass
class FloatExponentialDecaySchedulerConfig(ExponentialDecaySchedulerConfig):
    _target: Type = field(default_factory=lambda: FloatExponentialDecayScheduler)


USER_ERRORS = (ClipSketchDataError, ClipGuidanceError, ClipSketchConfigError)


class ClipSketchTrainer(Trainer):
    """nerfstudio's trainer; bad data or settings stop the run with one message instead of a traceback."""

    def setup(self, test_mode: Literal["test", "val", "inference"] = "val") -> None:
        try:
            super().setup(test_mode)
        except USER_ERRORS as error:
            CONSOLE.print(f"[bold red]clipsketch: {error}")
            sys.exit(2)


@dataclass
class ClipSketchTrainerConfig(TrainerConfig):
    """nerfstudio's trainer, falling back to the CPU when CUDA was asked for but there is none."""

    _target: Type = field(default_factory=lambda: ClipSketchTrainer)

    def set_experiment_name(self) -> None:
        datamanager = self.pipeline.datamanager
        if self.experiment_name is None and datamanager.data is None and getattr(datamanager.dataparser, "data", 1) is None:
            self.experiment_name = "builtin"  # the built-in scene: no --data given
        super().set_experiment_name()

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
            "scheduler": FloatExponentialDecaySchedulerConfig(lr_final=2e-4, max_steps=MAX_ITERATIONS),
        },
    },
    # Depth compositing off: the splines drawn along the curves lie at the strokes' own depth and would be hidden.
    viewer=ViewerConfig(num_rays_per_chunk=1 << 15, default_composite_depth=False),
    vis="viewer",
)

clipsketch_method = MethodSpecification(
    config=clipsketch_config,
    description="Abstract 3D sketch: Bézier curves drawn as Gaussians, guided by CLIP (CLIPasso in 3D).",
)
