"""nerfstudio's pipeline, plus what needs both the data and the model: fitting the sketch's initial curves, stroke
width and colours to the training cameras and images, building CLIP once and handing it to the model, and the
sketch with the dataparser's normalisation (for exports and metrics)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import List, Literal, Optional, Tuple, Type

import torch
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor
from torch.cuda.amp.grad_scaler import GradScaler

from nerfstudio_clipsketch.clip_guidance import ClipGuidance
from nerfstudio_clipsketch.datamanager import ClipSketchDataManagerConfig
from nerfstudio_clipsketch.dataparsers import describe_background
from nerfstudio_clipsketch.framing import object_frames
from nerfstudio_clipsketch.hull import VisualHull, carve_hull
from nerfstudio_clipsketch.model import ClipSketchModel, ClipSketchModelConfig
from nerfstudio_clipsketch.segmentation import FoundObject, find_object, parse_region
from nerfstudio_clipsketch.segmentation import describe as describe_found
from nerfstudio_clipsketch.silhouettes import alpha_silhouettes, training_silhouettes
from nerfstudio_clipsketch.sketch import Sketch


@dataclass
class ClipSketchPipelineConfig(VanillaPipelineConfig):
    _target: Type = field(default_factory=lambda: ClipSketchPipeline)
    datamanager: ClipSketchDataManagerConfig = field(default_factory=ClipSketchDataManagerConfig)  # type: ignore
    model: ClipSketchModelConfig = field(default_factory=ClipSketchModelConfig)


FOUND_MISSES = 0.05
"""The share of views whose found silhouette (:mod:`.segmentation`) a voxel of the visual hull may fall off. 0.1 left
the hull of the cluttered rose twice the object's volume (52k voxels against its exact masks' 27k; 0.05: 39k, strict:
28k but covering only 63 % of the found silhouettes, which turns the ridge term off). BENCHMARKS.md, "A real cluttered
capture"."""


class ClipSketchPipeline(VanillaPipeline):
    """A VanillaPipeline whose model is set up from the training cameras and images once both exist, and which
    builds the CLIP guidance once: for training at once (a bad model name or missing weights stops the run before its
    first step), elsewhere when :meth:`ensure_guidance` is first called (renders and exports never need it)."""

    model: ClipSketchModel
    found_object: Optional[FoundObject] = None
    """The object found in the photos when they had no silhouettes (:meth:`find_object`)."""
    framed: bool = False
    """Whether the training views were framed on the object (:meth:`frame_views`)."""

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
        assert isinstance(self.model, ClipSketchModel), type(self.model)
        outputs = self.datamanager.train_dataparser_outputs
        background = (outputs.metadata or {}).get("clipsketch_background")
        uniform = bool((outputs.metadata or {}).get("clipsketch_uniform_background", False))
        if outputs.mask_filenames:  # the masks separate the object: off them is paper, whatever the photos show
            background, uniform = None, False
        elif background is None and test_mode == "val":  # an explicit nerfstudio parser; else a checkpoint has it
            background, uniform = describe_background(outputs.image_filenames, outputs.alpha_color)
        if background is not None:
            background = torch.tensor(background, dtype=torch.float32)
        seed_points = self.model.kwargs.get("seed_points")
        points = seed_points[0] if seed_points is not None else None
        hull, reason = None, "the run was not set up for training"
        if test_mode == "val" and self._wants_hull(points):
            if not outputs.mask_filenames and self.find_object(background, points):
                background, uniform = None, False  # the found silhouettes separate the object: off them is paper
            hull, reason = self.visual_hull(background)
            if hull is not None and self.datamanager.config.frame_object:
                self.frame_views(hull)
        train_cameras = self.datamanager.train_dataset.cameras if hasattr(self.datamanager, "train_dataset") else None
        if self.framed:
            train_cameras = self.datamanager.train_cameras
        self.model.setup_from_data(outputs.cameras, background, points, hull, reason, uniform, train_cameras)
        if test_mode == "val":
            self.ensure_guidance()

    def _wants_hull(self, points) -> bool:
        """The hull starts the strokes (init 'hull' or 'auto'), re-seeds them, hides them and holds them on its
        ridges."""
        config = self.model.config
        uses = config.lifecycle.every > 0 or config.occlusion.density > 0 or config.ridges.weight > 0
        uses = uses or self.datamanager.config.frame_object
        return config.init in ("hull", "auto") or uses

    def find_object(self, background: Optional[Tensor], points: Optional[Tensor]) -> bool:
        """When the training photos have no silhouettes (no masks, alpha or uniform backdrop), find the object in
        them (:mod:`.segmentation`) and hand its silhouettes to the datamanager as masks; whether it did. The log says
        what was found, or why nothing was looked for."""
        setting = parse_region(self.model.config.object_region)
        images = self._train_images()
        under = background if background is not None else self.model.style.backdrop().cpu()
        if setting == "off" or training_silhouettes(images, under.float())[0] is not None or self._alpha() is not None:
            return False
        found, why = find_object(
            self.datamanager.train_dataset.cameras, images, points, None if setting == "auto" else setting
        )
        if found is None:
            CONSOLE.log(f"clipsketch: no object found in the photos: {why}. Strokes start without a visual hull.")
            return False
        CONSOLE.log(f"clipsketch: {describe_found(found)}")
        self.datamanager.use_masks(found.masks)
        self.found_object = found
        return True

    def _alpha(self) -> Optional[List[Tensor]]:
        """The training views' alpha silhouettes (:func:`.silhouettes.alpha_silhouettes`), read from the files once."""
        if not hasattr(self, "_alpha_masks"):
            cached = self.datamanager.cached_train
            sizes = [tuple(view["image"].shape[:2]) for view in cached]
            self._alpha_masks = alpha_silhouettes(self.datamanager.train_dataset, sizes)
        return self._alpha_masks

    def _train_images(self) -> List[Tensor]:
        return [
            view["image"].float() / 255.0 if view["image"].dtype == torch.uint8 else view["image"]
            for view in self.datamanager.cached_train
        ]

    def visual_hull(
        self, background: Optional[Tensor] = None, resolution: Optional[int] = None
    ) -> Tuple[Optional[VisualHull], str]:
        """The visual hull carved from the training views (or None and why), timed in the log; ``resolution``
        defaults to the model's ``hull_resolution``."""
        dataset, cached = self.datamanager.train_dataset, self.datamanager.cached_train
        images = self._train_images()
        masks, source = [view["mask"] for view in cached] if all("mask" in view for view in cached) else None, "masks"
        if masks is None:
            masks = self._alpha()
            source = "alpha" if masks is not None else "colour against the backdrop"
        under = background if background is not None else self.model.style.backdrop().cpu()
        start = time.perf_counter()
        resolution = resolution or self.model.config.hull_resolution
        # A segmenter's silhouettes are wrong in some views: a voxel may fall off them in a few of the views.
        misses = 0.0
        if self.found_object is not None and source == "masks":
            source, misses = "found silhouettes", FOUND_MISSES
        hull, reason = carve_hull(dataset.cameras, images, under.float(), resolution, masks=masks, misses=misses)
        if hull is None:
            CONSOLE.log(f"clipsketch: no visual hull: {reason}")
        else:
            CONSOLE.log(
                f"clipsketch: visual hull carved from {len(images)} views' {source} in "
                f"{time.perf_counter() - start:.1f} s "
                f"({int(hull.occupancy.sum())} voxels, {len(hull.points)} on rims and creases; projected back, it "
                f"covers {hull.fit:.0%} of the silhouettes)"
            )
        return hull, reason

    def frame_views(self, hull: VisualHull) -> None:
        """Frame the training views on the object (:mod:`.framing`); the log says how, or why not."""
        config = self.datamanager.config
        frames, why = object_frames(
            self.datamanager.train_cameras.to("cpu"), hull, config.frame_margin, config.frame_size
        )
        if frames is None:
            CONSOLE.log(f"clipsketch: training views not framed on the object: {why}; CLIP sees the whole photos.")
            return
        cameras = self.datamanager.train_cameras
        shorter = torch.minimum(cameras.width, cameras.height).reshape(-1).float().cpu()
        share = float((torch.tensor([f.side for f in frames]).float() / shorter).median())
        self.datamanager.frame_views(frames)
        self.framed = True
        CONSOLE.log(
            f"clipsketch: training views framed on the object: a square of {share:.0%} of each photo's shorter side "
            f"(median), drawn {config.frame_size} pixels across (--pipeline.datamanager.frame-object False: the "
            "whole photos)"
        )

    def ensure_guidance(self) -> ClipGuidance:
        """The model's CLIP guidance, built from its config and handed to it the first time it is needed."""
        if self.model.guidance is None:
            config = self.model.config
            self.model.use_guidance(config.clip.setup(device=self.device, text=config.text.wanted))
        return self.model.guidance  # type: ignore[return-value]

    def get_eval_image_metrics_and_images(self, step: int):
        self.ensure_guidance()
        return super().get_eval_image_metrics_and_images(step)

    def get_average_eval_image_metrics(self, *args, **kwargs):
        self.ensure_guidance()
        return super().get_average_eval_image_metrics(*args, **kwargs)

    def sketch(self) -> Sketch:
        """The model's sketch, with the training dataparser's normalisation (so it can be written in the capture's
        own coordinates)."""
        outputs = self.datamanager.train_dataparser_outputs
        model = self.model
        with torch.no_grad():
            return Sketch(
                control_points=model.world_control_points().detach().cpu(),
                degree=model.config.curve_degree,
                stroke_width=float(model.style.world_width()),
                stroke_color=tuple(model.style.color.detach().cpu().tolist()),
                opacity=model.style.opacity,
                background=tuple(model.style.background.detach().cpu().tolist()),
                dataparser_transform=outputs.dataparser_transform.detach().cpu(),
                dataparser_scale=float(outputs.dataparser_scale),
                metadata={"init": model.init_method, "symmetry": str(model.curves.plane() or "none")},
            )

    def describe_data(self) -> Tuple[Optional[str], str]:
        """The dataset's folder and layout (``clipasso3d``, ``blender``, ``nerfstudio``, ``colmap``, or the parser's
        class name for parsers other than clipsketch's)."""
        from nerfstudio_clipsketch.dataparsers.auto import ClipSketchDataParser
        from nerfstudio_clipsketch.dataparsers.clipasso3d import Clipasso3dDataParser

        parser = self.datamanager.dataparser
        if isinstance(parser, ClipSketchDataParser):
            return str(parser.data), parser.layout
        data = getattr(parser.config, "data", None)
        if isinstance(parser, Clipasso3dDataParser):
            return str(data), "clipasso3d"
        return (str(data) if data is not None else None), type(parser).__name__
