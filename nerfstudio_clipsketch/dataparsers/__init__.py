"""Dataparsers for clipsketch: the clipasso3d layout, an auto-detecting default, and the checks they share.

Every problem with the input data surfaces as one :class:`ClipSketchDataError` naming the file at fault, raised
while the dataparser is set up, i.e. before training starts.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from PIL import Image
from torch import Tensor

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".exr", ".webp", ".bmp", ".tif", ".tiff")


class ClipSketchDataError(ValueError):
    """The data given to a clipsketch dataparser is missing, malformed or not in a layout it can read."""


def load_transforms(path: Path) -> Dict[str, Any]:
    """Read a NeRF-style ``transforms*.json`` and check that it lists at least one frame."""
    if not path.is_file():
        raise ClipSketchDataError(f"Camera file {path} does not exist.")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ClipSketchDataError(f"Camera file {path} is not readable JSON: {e}") from e
    if not isinstance(meta, dict):
        raise ClipSketchDataError(f"Camera file {path} must hold a JSON object, got {type(meta).__name__}.")
    frames = meta.get("frames")
    if not isinstance(frames, list) or len(frames) == 0:
        raise ClipSketchDataError(f"Camera file {path} has no frames: expected a non-empty list under 'frames'.")
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict) or "file_path" not in frame or "transform_matrix" not in frame:
            raise ClipSketchDataError(f"Frame {i} of {path} needs a 'file_path' and a 'transform_matrix'.")
    return meta


def check_images(paths: Sequence[Path], source: Optional[Path] = None) -> None:
    """Check that every image exists and that PIL can decode it (``verify`` reads the file without decoding pixels).

    Args:
        paths: Images to check.
        source: The file that lists them, named in the error message.
    """
    listed_in = f" (listed in {source})" if source is not None else ""
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise ClipSketchDataError(f"Image {path}{listed_in} does not exist.")
        try:
            with Image.open(path) as image:
                image.verify()
        except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ... depending on the codec
            raise ClipSketchDataError(f"Image {path}{listed_in} cannot be decoded: {e}") from e


def check_masks(images: Sequence[Path], masks: Sequence[Path], source: Optional[Path] = None) -> None:
    """Check that every mask (nerfstudio's per-frame ``mask_path``) exists, can be read, and has its image's size
    (nerfstudio would fail later with ``FileNotFoundError`` or ``AssertionError: Mask and image have different
    shapes``)."""
    listed_in = f" (listed in {source})" if source is not None else ""
    for image_path, mask_path in zip(images, masks):
        image_path, mask_path = Path(image_path), Path(mask_path)
        if not mask_path.is_file():
            raise ClipSketchDataError(
                f"Mask {mask_path}{listed_in}, the mask_path of {image_path.name}, does not exist."
            )
        try:
            with Image.open(mask_path) as mask, Image.open(image_path) as image:
                mask_size, image_size, bands = mask.size, image.size, mask.getbands()
        except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ... depending on the codec
            raise ClipSketchDataError(f"Mask {mask_path}{listed_in} cannot be read: {e}") from e
        if len(bands) != 1:
            raise ClipSketchDataError(
                f"Mask {mask_path}{listed_in} has {len(bands)} channels ({''.join(bands)}); a mask must be one channel "
                "(greyscale or 1-bit: white on the object, black where it is not), e.g. saved with PIL's convert('L')."
            )
        if mask_size != image_size:
            raise ClipSketchDataError(
                f"Mask {mask_path}{listed_in} is {mask_size[0]}x{mask_size[1]} pixels but its image {image_path.name} "
                f"is {image_size[0]}x{image_size[1]}: a mask must have its image's size (white: the object, black: "
                "ignored)."
            )


def empty_masks(masks: Sequence[Path]) -> List[int]:
    """The indices of the masks with no object pixel (all zero), which nerfstudio would train on as blank views."""
    empty = []
    for index, path in enumerate(masks):
        with Image.open(path) as mask:
            if mask.getbbox() is None:  # the bounding box of the non-zero pixels
                empty.append(index)
    return empty


def without_views(outputs: DataparserOutputs, drop: Sequence[int]) -> DataparserOutputs:
    """``outputs`` without the views ``drop`` (their images, masks, cameras and per-view metadata lists)."""
    count, gone = len(outputs.image_filenames), set(drop)
    keep = [index for index in range(count) if index not in gone]
    metadata = {
        key: [value[i] for i in keep] if isinstance(value, list) and len(value) == count else value
        for key, value in outputs.metadata.items()
    }
    masks = outputs.mask_filenames
    return dataclasses.replace(
        outputs,
        image_filenames=[outputs.image_filenames[i] for i in keep],
        mask_filenames=[masks[i] for i in keep] if masks is not None else None,
        cameras=outputs.cameras[torch.tensor(keep, dtype=torch.long)],
        metadata=metadata,
    )


def _border_pixels(
    paths: Sequence[Path], alpha_color: Optional[Tensor], max_images: int, border: int
) -> Tuple[np.ndarray, bool]:
    """The border pixels ``[N, 3]`` of up to ``max_images`` evenly spaced images, transparent pixels composited over
    ``alpha_color`` (white when ``None``), and whether any of those images has transparent pixels."""
    if len(paths) == 0:
        raise ClipSketchDataError("Cannot estimate the background colour without any image.")
    under = np.ones(3) if alpha_color is None else np.asarray(torch.as_tensor(alpha_color, dtype=torch.float64))
    indices = sorted(set(np.linspace(0, len(paths) - 1, min(len(paths), max_images)).round().astype(int).tolist()))
    samples, transparent = [], False
    for index in indices:
        with Image.open(paths[index]) as image:
            rgba = np.asarray(image.convert("RGBA"), dtype=np.float64) / 255.0
        transparent = transparent or bool((rgba[..., 3] < 0.99).any())
        rgb = rgba[..., :3] * rgba[..., 3:] + under * (1.0 - rgba[..., 3:])
        b = max(1, min(border, rgb.shape[0] // 2, rgb.shape[1] // 2))
        samples += [rgb[:b].reshape(-1, 3), rgb[-b:].reshape(-1, 3), rgb[:, :b].reshape(-1, 3)]
        samples.append(rgb[:, -b:].reshape(-1, 3))
    return np.concatenate(samples), transparent


def estimate_background(
    paths: Sequence[Path], alpha_color: Optional[Tensor] = None, max_images: int = 5, border: int = 2
) -> List[float]:
    """Background colour of a capture: the per-channel median of the border pixels of a few images.

    Transparent pixels are composited over ``alpha_color`` (white when ``None``), since that is the colour the
    model is trained against.

    Args:
        paths: Images to sample; up to ``max_images`` of them, evenly spaced, are read.
        alpha_color: RGB in [0, 1] that transparent pixels are composited on.
        max_images: How many images to read.
        border: Width of the border, in pixels.

    Returns:
        ``[r, g, b]`` in [0, 1].
    """
    return describe_background(paths, alpha_color, max_images, border)[0]


def opaque_on_uniform_background(
    paths: Sequence[Path], background: Sequence[float], max_images: int = 5, border: int = 2
) -> bool:
    """Whether a capture's photos are opaque and show the object on a uniform ``background`` colour (a studio or
    rendered backdrop): at least 95 % of the border pixels of a few images within 0.1 of it in every channel. Such a
    background can be told from the object by its colour and repainted."""
    return _uniform(*_border_pixels(paths, None, max_images, border), background)


def describe_background(
    paths: Sequence[Path], alpha_color: Optional[Tensor] = None, max_images: int = 5, border: int = 2
) -> Tuple[List[float], bool]:
    """:func:`estimate_background` and :func:`opaque_on_uniform_background` of it, from one read of the images."""
    pixels, transparent = _border_pixels(paths, alpha_color, max_images, border)
    background = [float(c) for c in np.median(pixels, axis=0)]
    return background, _uniform(pixels, transparent, background)


def _uniform(pixels: np.ndarray, transparent: bool, background: Sequence[float], tolerance: float = 0.1) -> bool:
    close = (np.abs(pixels - np.asarray(background, dtype=np.float64)) <= tolerance).all(-1)
    return not transparent and float(close.mean()) >= 0.95
