"""nerfstudio's full-image datamanager, drawing ``views_per_step`` training views per step, and evaluating on the
split a scene has (many captures ship without ``transforms_test.json``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple, Type

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.configs.dataparser_configs import AnnotatedDataParserUnion
from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanager, FullImageDatamanagerConfig
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape
from torch import Tensor

from nerfstudio_clipsketch.dataparsers import ClipSketchDataError, empty_masks, without_views
from nerfstudio_clipsketch.dataparsers.auto import ClipSketchDataParserConfig
from nerfstudio_clipsketch.framing import Frame, frame_cameras, frame_view
from nerfstudio_clipsketch.model_config import ClipSketchConfigError

SPLITS = ("val", "test", "train")


@dataclass
class ClipSketchDataManagerConfig(FullImageDatamanagerConfig):
    """Full images, several views per step."""

    _target: Type = field(default_factory=lambda: ClipSketchDataManager)
    dataparser: AnnotatedDataParserUnion = field(default_factory=ClipSketchDataParserConfig)
    views_per_step: int = 1
    """Training views rendered and compared with CLIP in each step (one batched CLIP forward); at most the number of
    training views. Memory grows with it."""
    frame_object: bool = False
    """Crop each training view to a square around the object (the visual hull as the view sees it, widened by
    ``frame_margin``, never fewer than ``frame_size`` of the photo's pixels) drawn ``frame_size`` pixels across: CLIP
    sees the object fill more of its view, and stroke widths are a share of the object's size in view. Needs a visual
    hull. Off by default until the whole family of test parts says it helps (BENCHMARKS.md, "Framing")."""
    frame_margin: float = 0.1
    """Room around the object in a framed view, as a share of the object's extent on each side."""
    frame_size: int = 224
    """Pixels across a framed view (CLIP looks at 224)."""
    max_image_size: int = 448
    """Training images whose longer side exceeds this many pixels are scaled down to it once, with their cameras.
    CLIP looks at 224 pixels and stroke widths are a share of the view, so larger photos would only cost time.
    0 keeps them as they are."""

    def check(self) -> None:
        """Refuse settings no datamanager can use (before any data is read)."""
        if self.views_per_step < 1:
            raise ClipSketchConfigError(
                f"--pipeline.datamanager.views-per-step must be at least 1, got {self.views_per_step}"
            )
        if not 0 <= self.frame_margin <= 2:
            raise ClipSketchConfigError(
                f"--pipeline.datamanager.frame-margin is a share of the object's extent, from 0 to 2; got "
                f"{self.frame_margin}"
            )
        if self.frame_size < 32:
            raise ClipSketchConfigError(
                f"--pipeline.datamanager.frame-size must be at least 32 pixels, got {self.frame_size}"
            )
        if self.max_image_size < 0:
            raise ClipSketchConfigError(
                f"--pipeline.datamanager.max-image-size must be a number of pixels, or 0 to keep the images' size; "
                f"got {self.max_image_size}"
            )


def _parser_name(config) -> str:
    """The ns-train subcommand of a dataparser config (e.g. blender-data), or its class name."""
    from nerfstudio.configs.dataparser_configs import all_dataparsers

    return next((name for name, c in all_dataparsers.items() if type(c) is type(config)), type(config).__name__)


class ClipSketchDataManager(FullImageDatamanager):
    """Returns ``views_per_step`` cameras and their images per training step: ``batch["image"]`` is
    ``[V, H, W, C]`` and ``batch["image_idx"]`` lists the ``V`` view indices, for one view as for several.

    The evaluation views are the split nerfstudio asks for (``test`` outside training, ``val`` in it) or, when the
    scene has none, the next of val, test and train that it has; ``test_split`` names the one used."""

    config: ClipSketchDataManagerConfig

    def create_train_dataset(self) -> InputDataset:
        """The training images, scaled down to ``max_image_size`` (and their cameras with them) if larger, without
        the views whose object mask is empty."""
        self.train_dataparser_outputs = self._without_empty_masks(self.train_dataparser_outputs, "training")
        cameras = self.train_dataparser_outputs.cameras
        scale = self.config.camera_res_scale_factor
        longest = float(torch.maximum(cameras.width, cameras.height).max()) * scale
        if 0 < self.config.max_image_size < longest:
            scale *= self.config.max_image_size / longest
        return self.dataset_type(dataparser_outputs=self.train_dataparser_outputs, scale_factor=scale)

    def __init__(self, config: ClipSketchDataManagerConfig, *args, **kwargs) -> None:
        config.check()
        try:
            super().__init__(config, *args, **kwargs)
        except FileNotFoundError as e:  # nerfstudio's own parsers, named explicitly, on a folder they cannot read
            missing = e.filename if e.filename is not None else e
            raise ClipSketchDataError(
                f"{_parser_name(config.dataparser)} cannot read --data {config.dataparser.data}: {missing} does not "
                "exist. Leave the parser out (ns-train clipsketch --data ...) to have the layout detected."
            ) from e
        self._check_views_per_step()

    def _without_empty_masks(self, outputs: DataparserOutputs, split: str) -> DataparserOutputs:
        """``outputs`` without the views whose mask (``mask_path``) is empty: they show nothing of the object, and
        training on them would teach the strokes to vanish. One warning names them; no view left is an error."""
        if not outputs.mask_filenames:
            return outputs
        empty = empty_masks(outputs.mask_filenames)
        if not empty:
            return outputs
        names = [Path(outputs.mask_filenames[i]).name for i in empty]
        if len(empty) == len(outputs.image_filenames):
            raise ClipSketchDataError(
                f"Every {split} mask of {self.config.dataparser.data} is empty (all black: {', '.join(names[:3])}"
                f"{', ...' if len(names) > 3 else ''}); a mask is white where the object is."
            )
        CONSOLE.log(
            f"[yellow]Skipping {len(empty)} of {len(outputs.image_filenames)} {split} views whose mask is empty (no "
            f"object pixel): {escape(', '.join(names[:5]))}{', ...' if len(names) > 5 else ''}",
            highlight=False,
        )
        return without_views(outputs, empty)

    def _check_views_per_step(self) -> None:
        views, cameras = self.config.views_per_step, self.train_dataset.cameras
        data = self.config.dataparser.data
        if views > len(cameras):
            raise ClipSketchConfigError(
                f"--pipeline.datamanager.views-per-step {views} is more than the {len(cameras)} training views of "
                f"{data}; use {len(cameras)} or fewer (each is rendered and compared with CLIP in every step)."
            )
        sizes = set(zip(cameras.width.reshape(-1).tolist(), cameras.height.reshape(-1).tolist()))
        if views > 1 and len(sizes) > 1:
            raise ClipSketchConfigError(
                f"--pipeline.datamanager.views-per-step {views} needs training images of one size, but {data} has "
                f"{len(sizes)} sizes; use 1"
            )

    def create_eval_dataset(self) -> InputDataset:
        wanted = self.test_split
        skipped: List[str] = []
        for split in [wanted, *(s for s in SPLITS if s != wanted)]:
            try:
                outputs = self.dataparser.get_dataparser_outputs(split=split)
            except (ClipSketchDataError, FileNotFoundError) as e:
                skipped.append(f"{split!r}: {e}")
                continue
            if skipped:
                CONSOLE.log(
                    f"[yellow]No usable {wanted!r} split ({escape('; '.join(skipped))}): evaluating on the {split!r} "
                    "views instead.",
                    highlight=False,
                )
            self.test_split = split
            outputs = self._without_empty_masks(outputs, split)
            return self.dataset_type(dataparser_outputs=outputs, scale_factor=self.config.camera_res_scale_factor)
        raise ClipSketchDataError(f"No split of {self.config.data} can be read: {'; '.join(skipped)}")

    def use_masks(self, masks: List[Tensor]) -> None:
        """Give the training views object masks (``[H, W]`` each, true on the object) found for them, as a capture's
        ``mask_path`` would (:mod:`nerfstudio_clipsketch.segmentation`)."""
        if len(masks) != len(self.cached_train):
            raise ValueError(f"{len(masks)} masks for {len(self.cached_train)} training views")
        for view, mask in zip(self.cached_train, masks):
            if tuple(mask.shape[:2]) != tuple(view["image"].shape[:2]):
                raise ValueError(f"a mask of {tuple(mask.shape)} for an image of {tuple(view['image'].shape)}")
            view["mask"] = mask.reshape(*mask.shape[:2], 1).bool().to(view["image"].device)

    def frame_views(self, frames: List[Frame]) -> None:
        """Crop the training views (cameras, images, masks) to ``frames`` (:mod:`nerfstudio_clipsketch.framing`)."""
        if len(frames) != len(self.cached_train):
            raise ValueError(f"{len(frames)} frames for {len(self.cached_train)} training views")
        size, device = self.config.frame_size, self.train_cameras.device
        self.train_cameras = frame_cameras(self.train_cameras.to("cpu"), frames, size).to(device)
        self.cached_train = [frame_view(view, frame, size) for view, frame in zip(self.cached_train, frames)]

    def next_train(self, step: int) -> Tuple[Cameras, Dict]:
        views = self.config.views_per_step
        batches = [super(ClipSketchDataManager, self).next_train(step)[1] for _ in range(views)]
        indices = [int(b["image_idx"]) for b in batches]
        images = [b["image"] for b in batches]
        cameras = self.train_cameras[torch.tensor(indices)].to(self.device)
        cameras.metadata = {"cam_idx": indices, "image_size": tuple(images[0].shape[:2])}
        batch = {"image": torch.stack(images), "image_idx": indices}
        if all("mask" in b for b in batches):  # the capture's object masks (mask_path): [V, H, W, 1], true on it
            batch["mask"] = torch.stack([b["mask"] for b in batches]).to(self.device)
        return cameras, batch
