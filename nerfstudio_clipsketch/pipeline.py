"""nerfstudio's pipeline, plus the one step that needs both the data and the model: fitting the sketch's initial
curves, stroke width and colours to the training cameras and images."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Type

import torch
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from torch.cuda.amp.grad_scaler import GradScaler

from nerfstudio_clipsketch.datamanager import ClipSketchDataManagerConfig
from nerfstudio_clipsketch.dataparsers import estimate_background
from nerfstudio_clipsketch.model import ClipSketchModel, ClipSketchModelConfig


@dataclass
class ClipSketchPipelineConfig(VanillaPipelineConfig):
    _target: Type = field(default_factory=lambda: ClipSketchPipeline)
    datamanager: ClipSketchDataManagerConfig = field(default_factory=ClipSketchDataManagerConfig)  # type: ignore
    model: ClipSketchModelConfig = field(default_factory=ClipSketchModelConfig)


class ClipSketchPipeline(VanillaPipeline):
    """A VanillaPipeline whose model is set up from the training cameras and images once both exist."""

    def __init__(
        self,
        config: ClipSketchPipelineConfig,
        device: str,
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler: Optional[GradScaler] = None,
    ):
        super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)
        model = self.model
        assert isinstance(model, ClipSketchModel), type(model)
        outputs = self.datamanager.train_dataparser_outputs
        metadata = outputs.metadata or {}
        background = metadata.get("clipsketch_background")
        if background is None and test_mode == "val":  # an explicit nerfstudio parser; a checkpoint restores it else
            background = estimate_background(outputs.image_filenames, outputs.alpha_color)
        if background is not None:
            background = torch.tensor(background, dtype=torch.float32)
        points = metadata.get("points3D_xyz")
        model.setup_from_data(outputs.cameras, background=background, points=points)
        if test_mode == "val":
            # Training: build CLIP now, so a bad model name or missing weights stops before the first step.
            _ = model.get_guidance()
