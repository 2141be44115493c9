"""Dataparser for the clipasso3d scenes: Blender renders of an object that does not sit at the origin.

Layout::

    transforms_{train,val,test}.json   NeRF/Blender cameras (camera_angle_x, frames[].transform_matrix: OpenGL c2w)
    rgb/<split>/r_<i>.png              the images (``file_path`` says ``<split>/r_<i>``)
    world_pos/<split>/r_<i>.exr        optional per-pixel surface positions, used by evaluation
    frames[].mask_path                 optional object masks (nerfstudio's convention, relative to the folder)

The scene is moved into nerfstudio's usual frame: centred on the object (``object_position`` from the file, or the
point closest to every training camera's optical axis) and scaled so that the farthest training camera lies
``scale_factor`` from the origin, as nerfstudio's ``auto_scale_poses`` does. No rotation is applied: the scenes are
z-up like nerfstudio's world. ``x' = dataparser_scale * (dataparser_transform @ [x; 1])``, which
:func:`nerfstudio_clipsketch.cameras.to_dataset_coordinates` undoes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Type

import numpy as np
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.utils.colors import get_color
from PIL import Image

from nerfstudio_clipsketch.cameras import look_at_centre
from nerfstudio_clipsketch.dataparsers import (
    IMAGE_SUFFIXES,
    ClipSketchDataError,
    check_images,
    check_masks,
    describe_background,
    load_transforms,
)
from nerfstudio_clipsketch.dataparsers.pose_lag import repair_poses

SPLITS = ("train", "val", "test")


@dataclass
class Clipasso3dDataParserConfig(DataParserConfig):
    """Scenes in the clipasso3d layout: Blender cameras, images under ``rgb/<split>/``, an off-centre object."""

    _target: Type = field(default_factory=lambda: Clipasso3dDataParser)
    """target class to instantiate"""
    data: Path = Path("data/clipasso3d/rose")
    """Scene folder holding transforms_{train,val,test}.json and rgb/."""
    scale_factor: float = 1.0
    """Distance from the object to the farthest training camera after normalisation."""
    alpha_color: Literal["white", "black"] = "white"
    """Colour that transparent pixels are composited on (the clipasso3d renders are opaque, so it rarely matters)."""


def camera_axes_intersection(camera_to_worlds: np.ndarray) -> np.ndarray:
    """The point the cameras look at (``[N, 3, 4]`` camera-to-world, OpenGL), for scenes without 'object_position'."""
    try:
        return look_at_centre(torch.from_numpy(np.asarray(camera_to_worlds, dtype=np.float64))).numpy()
    except ValueError as error:
        raise ClipSketchDataError(
            "The cameras' optical axes are (nearly) parallel, so they do not point at a common object; "
            "give the object's centre as 'object_position' in transforms_train.json."
        ) from error


@dataclass
class Clipasso3dDataParser(DataParser):
    """Reads a clipasso3d scene; see the module docstring for the layout and the normalisation."""

    config: Clipasso3dDataParserConfig

    def _poses(self, meta: Dict[str, Any], path: Path, object_position: Optional[np.ndarray] = None) -> np.ndarray:
        """The frames' camera-to-world matrices ``[N, 3, 4]``, checked against their ``position`` fields and repaired
        when they lag them (:mod:`nerfstudio_clipsketch.dataparsers.pose_lag`)."""
        poses = []
        for i, frame in enumerate(meta["frames"]):
            matrix = np.asarray(frame["transform_matrix"], dtype=np.float64)
            if matrix.shape not in ((4, 4), (3, 4)) or not np.isfinite(matrix).all():
                raise ClipSketchDataError(
                    f"Frame {i} of {path}: transform_matrix must be a finite 4x4 or 3x4 matrix, got shape "
                    f"{matrix.shape}."
                )
            poses.append(matrix[:3])
        return repair_poses(np.stack(poses), meta["frames"], path, object_position)

    def _image_filenames(self, meta: Dict[str, Any]) -> List[Path]:
        filenames = []
        for frame in meta["frames"]:
            relative = Path(str(frame["file_path"]).removeprefix("./"))
            if relative.suffix.lower() not in IMAGE_SUFFIXES:
                relative = relative.with_name(relative.name + ".png")
            filenames.append(self.config.data / "rgb" / relative)
        return filenames

    def _mask_filenames(self, meta: Dict[str, Any], path: Path) -> Optional[List[Path]]:
        """The frames' object masks (nerfstudio's per-frame ``mask_path``, relative to the scene folder), if any
        frame has one; then every frame must."""
        frames = meta["frames"]
        missing = [i for i, frame in enumerate(frames) if "mask_path" not in frame]
        if len(missing) == len(frames):
            return None
        if missing:
            raise ClipSketchDataError(
                f"Frame {missing[0]} of {path} has no 'mask_path' but other frames do: give every frame a mask or none."
            )
        return [self.config.data / str(frame["mask_path"]).removeprefix("./") for frame in frames]

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        if split not in SPLITS:
            raise ClipSketchDataError(f"Unknown split {split!r}; expected one of {', '.join(SPLITS)}.")
        data = self.config.data
        if not data.is_dir():
            raise ClipSketchDataError(f"clipasso3d scene folder {data} does not exist.")
        if self.config.scale_factor <= 0:
            raise ClipSketchDataError(f"scale_factor must be positive, got {self.config.scale_factor}.")

        # The normalisation comes from the training cameras, so that every split shares it.
        train_path = data / "transforms_train.json"
        train_meta = load_transforms(train_path)
        if "object_position" in train_meta:
            given = train_meta["object_position"]
            try:
                center = np.asarray(given, dtype=np.float64)
            except (TypeError, ValueError):
                center = np.full(1, np.nan)
            if center.shape != (3,) or not np.isfinite(center).all():
                raise ClipSketchDataError(f"object_position in {train_path} must be three finite numbers, got {given}.")
            train_poses = self._poses(train_meta, train_path, center)
        else:
            train_poses = self._poses(train_meta, train_path)
            center = camera_axes_intersection(train_poses)
        distances = np.linalg.norm(train_poses[:, :, 3] - center, axis=-1)
        if distances.max() <= 0:
            raise ClipSketchDataError(f"Every camera in {train_path} sits on the object's centre {center.tolist()}.")
        scale = self.config.scale_factor / float(distances.max())

        path = data / f"transforms_{split}.json"
        meta = train_meta if split == "train" else load_transforms(path)
        object_position = center if "object_position" in train_meta else None
        poses = train_poses if split == "train" else self._poses(meta, path, object_position)
        if "camera_angle_x" not in meta:
            raise ClipSketchDataError(f"{path} has no 'camera_angle_x' (horizontal field of view in radians).")
        camera_angle_x = float(meta["camera_angle_x"])
        if not 0 < camera_angle_x < np.pi:
            raise ClipSketchDataError(f"camera_angle_x in {path} must be in (0, pi) radians, got {camera_angle_x}.")
        image_filenames = self._image_filenames(meta)
        check_images(image_filenames, source=path)
        mask_filenames = self._mask_filenames(meta, path)
        if mask_filenames is not None:
            check_masks(image_filenames, mask_filenames, source=path)
        train_filenames = self._image_filenames(train_meta)
        if split != "train":  # the background is estimated from training images
            check_images(train_filenames, source=train_path)

        sizes = []
        for filename in image_filenames:
            with Image.open(filename) as image:
                sizes.append(image.size)
        widths = torch.tensor([w for w, _ in sizes], dtype=torch.float32)[:, None]
        heights = torch.tensor([h for _, h in sizes], dtype=torch.float32)[:, None]
        focal = 0.5 * widths / float(np.tan(0.5 * camera_angle_x))

        camera_to_worlds = poses.copy()
        camera_to_worlds[:, :, 3] = scale * (camera_to_worlds[:, :, 3] - center)
        cameras = Cameras(
            camera_to_worlds=torch.from_numpy(camera_to_worlds).float(),
            fx=focal,
            fy=focal,
            cx=widths / 2.0,
            cy=heights / 2.0,
            width=widths.long(),
            height=heights.long(),
            camera_type=CameraType.PERSPECTIVE,
        )

        # The box that every training camera sees whole: the object must fit in the views, so it fits in this.
        half_fov_x = 0.5 * camera_angle_x
        half_fov = min(half_fov_x, float(np.arctan(np.tan(half_fov_x) * float((heights / widths).min()))))
        radius = scale * float(distances.min()) * float(np.sin(half_fov))
        scene_box = SceneBox(aabb=torch.tensor([[-radius] * 3, [radius] * 3], dtype=torch.float32))

        alpha_color = get_color(self.config.alpha_color)
        background, uniform = describe_background(train_filenames, alpha_color)
        metadata: Dict[str, Any] = {"clipsketch_background": background, "clipsketch_uniform_background": uniform}
        world_pos_dir = data / "world_pos" / split
        if world_pos_dir.is_dir():
            metadata["clipsketch_world_pos_dir"] = str(world_pos_dir)

        transform = torch.cat([torch.eye(3), -torch.from_numpy(center).float()[:, None]], dim=1)
        return DataparserOutputs(
            image_filenames=image_filenames,
            mask_filenames=mask_filenames,
            cameras=cameras,
            alpha_color=alpha_color,
            scene_box=scene_box,
            metadata=metadata,
            dataparser_transform=transform,
            dataparser_scale=scale,
        )
