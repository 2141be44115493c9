"""nerfstudio's full-image datamanager, drawing ``views_per_step`` training views per step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Tuple, Type

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.configs.dataparser_configs import AnnotatedDataParserUnion
from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanager, FullImageDatamanagerConfig

from nerfstudio_clipsketch.dataparsers.auto import ClipSketchDataParserConfig


@dataclass
class ClipSketchDataManagerConfig(FullImageDatamanagerConfig):
    """Full images, several views per step."""

    _target: Type = field(default_factory=lambda: ClipSketchDataManager)
    dataparser: AnnotatedDataParserUnion = field(default_factory=ClipSketchDataParserConfig)
    views_per_step: int = 1
    """Training views rendered and compared with CLIP in each step (one batched CLIP forward)."""
    max_image_size: int = 448
    """Training images whose longer side exceeds this many pixels are scaled down to it once, with their cameras.
    CLIP looks at 224 pixels and stroke widths are a share of the view, so larger photos would only cost time.
    0 keeps them as they are."""


class ClipSketchDataManager(FullImageDatamanager):
    """Returns ``views_per_step`` cameras and their images per training step: ``batch["image"]`` is
    ``[V, H, W, C]`` and ``batch["image_idx"]`` lists the ``V`` view indices, for one view as for several."""

    config: ClipSketchDataManagerConfig

    def create_train_dataset(self):
        """The training images, scaled down to ``max_image_size`` (and their cameras with them) if larger."""
        cameras = self.train_dataparser_outputs.cameras
        scale = self.config.camera_res_scale_factor
        longest = float(torch.maximum(cameras.width, cameras.height).max()) * scale
        if 0 < self.config.max_image_size < longest:
            scale *= self.config.max_image_size / longest
        return self.dataset_type(dataparser_outputs=self.train_dataparser_outputs, scale_factor=scale)

    def next_train(self, step: int) -> Tuple[Cameras, Dict]:
        views = self.config.views_per_step
        if views < 1:
            raise ValueError(f"views_per_step must be at least 1, got {views}")
        batches = [super(ClipSketchDataManager, self).next_train(step)[1] for _ in range(views)]
        indices = [int(b["image_idx"]) for b in batches]
        images = [b["image"] for b in batches]
        if len({tuple(im.shape) for im in images}) > 1:
            raise ValueError(
                "views_per_step > 1 needs training images of one size; use --pipeline.datamanager.views-per-step 1"
            )
        cameras = self.train_cameras[torch.tensor(indices)].to(self.device)
        cameras.metadata = {"cam_idx": indices, "image_size": tuple(images[0].shape[:2])}
        return cameras, {"image": torch.stack(images), "image_idx": indices}
