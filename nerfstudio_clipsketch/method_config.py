"""The ``clipsketch`` method as nerfstudio registers it (entry point ``nerfstudio.method_configs``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Type

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecayScheduler, ExponentialDecaySchedulerConfig
from nerfstudio.plugins.types import MethodSpecification

from nerfstudio_clipsketch.datamanager import ClipSketchDataManagerConfig
from nerfstudio_clipsketch.model import ClipSketchModelConfig
from nerfstudio_clipsketch.pipeline import ClipSketchPipelineConfig

# config.yml files of earlier runs name the trainer classes in this module.
from nerfstudio_clipsketch.trainer import ClipSketchTrainer, ClipSketchTrainerConfig  # noqa: F401

MAX_ITERATIONS = 2000
STEPS_PER_SAVE = 25
"""A checkpoint is a few kB (control points and Adam's state), so saving often costs nothing, and a CPU step takes
about a second: a run killed outright (Ctrl-C and SIGTERM save first) loses well under a minute."""


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


clipsketch_config = ClipSketchTrainerConfig(
    method_name="clipsketch",
    steps_per_eval_image=100,
    steps_per_eval_batch=0,
    steps_per_eval_all_images=MAX_ITERATIONS,
    steps_per_save=STEPS_PER_SAVE,
    max_num_iterations=MAX_ITERATIONS,
    mixed_precision=False,
    pipeline=ClipSketchPipelineConfig(
        datamanager=ClipSketchDataManagerConfig(),
        model=ClipSketchModelConfig(),
    ),
    optimizers={
        "control_points": {
            "optimizer": AdamOptimizerConfig(lr=1e-3, eps=1e-15),
            "scheduler": FloatExponentialDecaySchedulerConfig(lr_final=1e-4, max_steps=MAX_ITERATIONS),
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
