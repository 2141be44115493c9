"""What a dataset knows about the object, as references for :mod:`.metrics`.

- world-position images (clipasso3d scenes, ``world_pos/<split>/<image>.exr``): per-pixel surface points, cleaned by
  :func:`load_world_pos_points`. Blender writes, on silhouettes, a blend of the surface position and the
  background's ``(0, 0, 0)``, so a pixel is kept only if its position projects back onto its own pixel centre;
- object masks of a view (:func:`foreground_mask`): non-zero world positions, or a uniform background;
- ground-truth curves (the built-in scene's ``curves.json``, a sketch JSON file).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from torch import Tensor

from nerfstudio_clipsketch.cameras import from_dataset_coordinates, get_viewmats, project_points

SYNTHETIC_LAYOUTS = ("clipasso3d", "blender")
"""Dataset layouts rendered on a uniform background, where a colour difference from it marks the object."""


def read_exr(path: Union[str, Path]) -> np.ndarray:
    """A float EXR image as ``[H, W, channels]`` float32 in the file's RGB(A) order.

    Uses OpenCV (installed with nerfstudio), whose EXR codec is off unless ``OPENCV_IO_ENABLE_OPENEXR`` is set
    before the first EXR is read in the process; this sets it (keeping a value the user chose). OpenCV returns
    channels as BGR(A); they are reversed here.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No EXR image at {path}")
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    import cv2  # imported here: only the evaluation scripts need OpenCV

    try:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        raise RuntimeError(
            f"OpenCV could not read {path}: its EXR codec is disabled (OPENCV_IO_ENABLE_OPENEXR="
            f"{os.environ.get('OPENCV_IO_ENABLE_OPENEXR')!r}). Set OPENCV_IO_ENABLE_OPENEXR=1 before any EXR is read."
        ) from e
    if image is None:
        raise ValueError(f"OpenCV could not decode {path} as an image")
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] >= 3:
        image = np.concatenate([image[..., 2::-1], image[..., 3:]], axis=-1)
    return image.astype(np.float32, copy=False)


def reprojection_errors(
    positions: Float[np.ndarray, "height width 3"], viewmat: Float[Tensor, "4 4"], K: Float[Tensor, "3 3"]
) -> Float[np.ndarray, "height width"]:
    """Pixel distance from each pixel's centre to where its position (in the camera's world frame) projects.

    Pixel ``(row i, column j)`` has its centre at ``(j + 0.5, i + 0.5)``. Points behind the camera get ``inf``.
    """
    height, width = positions.shape[:2]
    points = torch.from_numpy(np.asarray(positions, dtype=np.float64).reshape(-1, 3))
    uv, z = project_points(points, viewmat[None].double(), K[None].double())
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    centres = np.stack([cols.reshape(-1) + 0.5, rows.reshape(-1) + 0.5], -1)
    err = np.linalg.norm(uv[0].numpy() - centres, axis=-1)
    return np.where(z[0].numpy() > 0, err, np.inf).reshape(height, width)


def _read_world_pos(path: Union[str, Path], size: tuple[int, int]) -> np.ndarray:
    """An EXR's world positions ``[H, W, 3]`` (float64), checked against its camera's ``(height, width)``."""
    image = read_exr(path)
    if image.shape[-1] < 3:
        raise ValueError(f"{path} has {image.shape[-1]} channels; world positions need 3")
    if image.shape[:2] != size:
        raise ValueError(f"{path} is {image.shape[1]}x{image.shape[0]} but its camera {size[1]}x{size[0]}")
    return image[..., :3].astype(np.float64)


def load_world_pos_points(
    exr_paths: Sequence[Union[str, Path]],
    cameras: Cameras,
    dataparser_transform: Optional[Float[Tensor, "3 4"]] = None,
    dataparser_scale: float = 1.0,
    max_reproj_px: float = 1.0,
    stride: int = 1,
) -> np.ndarray:
    """Clean surface samples ``[M, 3]`` (float32, the dataset's coordinates) from per-pixel world-position EXRs.

    ``exr_paths[i]`` holds the world positions (dataset coordinates) seen by ``cameras[i]`` (nerfstudio cameras in
    the dataparser's normalised frame, ``x' = scale * (R x + t)``). A pixel is kept if its position is non-zero
    (``(0, 0, 0)`` is the background) and projects back within ``max_reproj_px`` pixels of the pixel's own centre.
    That drops silhouette pixels, which hold a blend of the surface and the background's origin and lie far from any
    surface.

    Args:
        exr_paths: One EXR per camera.
        cameras: The cameras, one per EXR; their image size must be the EXR's.
        dataparser_transform, dataparser_scale: The dataparser's normalisation (identity and 1 when the cameras are
            in the dataset's frame).
        max_reproj_px: Largest reprojection error of a kept pixel, in pixels (true surface points miss by ~0.03 px).
        stride: Use every ``stride``-th pixel row and column (1 keeps all).
    """
    if stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride}")
    if not max_reproj_px > 0:
        raise ValueError(f"max_reproj_px must be positive, got {max_reproj_px}")
    cameras = cameras.reshape(-1)
    if len(exr_paths) != len(cameras):
        raise ValueError(f"{len(exr_paths)} world-position images for {len(cameras)} cameras")
    transform = torch.eye(3, 4, dtype=torch.float64) if dataparser_transform is None else dataparser_transform
    viewmats = get_viewmats(cameras.camera_to_worlds.double())
    Ks = cameras.get_intrinsics_matrices().double()
    points = []
    for i, path in enumerate(exr_paths):
        positions = _read_world_pos(path, (int(cameras.height[i]), int(cameras.width[i])))
        normalised = from_dataset_coordinates(torch.from_numpy(positions), transform.double(), dataparser_scale)
        err = reprojection_errors(normalised.numpy(), viewmats[i], Ks[i])
        keep = np.any(positions != 0, axis=-1) & (err < max_reproj_px)
        if stride > 1:
            grid = np.zeros_like(keep)
            grid[::stride, ::stride] = True
            keep &= grid
        points.append(positions[keep])
    return np.concatenate(points, axis=0).astype(np.float32, copy=False)


def world_pos_paths(world_pos_dir: Union[str, Path], image_filenames: Sequence[Union[str, Path]]) -> list[Path]:
    """The world-position EXR of each image: ``world_pos_dir / <image stem>.exr``."""
    return [Path(world_pos_dir) / f"{Path(name).stem}.exr" for name in image_filenames]


def foreground_mask(
    target: Float[Tensor, "height width 3"],
    background: Float[Tensor, "3"],
    layout: str,
    world_pos: Optional[Path],
    background_tolerance: float,
) -> tuple[Optional[Tensor], Optional[str], int]:
    """A view's object mask, which kind it is, and the count of non-zero world-position pixels (0 without them).

    In this order of preference: ``world_pos``, the pixels whose world position is non-zero (Blender writes
    ``(0, 0, 0)`` on the background), when the view has a world-position EXR of the image's size; ``background``, for
    rendered scenes on a uniform background (:data:`SYNTHETIC_LAYOUTS`), the pixels whose colour differs from the
    background by more than ``background_tolerance`` in some channel; none for photographs.
    """
    if world_pos is not None and world_pos.is_file():
        mask = torch.from_numpy(np.any(read_exr(world_pos)[..., :3] != 0, axis=-1))
        if tuple(mask.shape) == tuple(target.shape[:2]):
            return mask, "world_pos", int(mask.sum())
    if layout in SYNTHETIC_LAYOUTS:
        difference = (target[..., :3].cpu() - background.cpu()).abs().amax(dim=-1)
        return difference > background_tolerance, "background", 0
    return None, None, 0


def abcnef_ground_truth(gt_dir: Union[str, Path]) -> np.ndarray:
    """ABC-NEF's ground truth ``[M, 3]`` as NEF's evaluation builds it: the mesh vertices listed in ``vert_indices``
    of every curve with ``sharp: true`` in the ABC features file (``*features*.yml``; duplicates kept), scaled by
    ``1 / max(bbox range)`` from ``stats.json`` and moved so that the bounding box's centre is at (0.5, 0.5, 0.5).

    Raises:
        FileNotFoundError, ValueError: a file is missing, or holds no sharp curve.
    """
    import json

    import yaml

    gt_dir = Path(gt_dir)
    features = sorted(gt_dir.glob("*features*.yml"))
    meshes = sorted(gt_dir.glob("*.obj"))
    if not features or not meshes or not (gt_dir / "stats.json").is_file():
        raise FileNotFoundError(f"{gt_dir} needs a *features*.yml, an .obj mesh and stats.json (ABC-NEF's gt/)")
    bbox = json.loads((gt_dir / "stats.json").read_text())["bbox"]
    scale = 1.0 / max(bbox[6:9])
    centre = np.array([(bbox[0] + bbox[3]) / 2, (bbox[1] + bbox[4]) / 2, (bbox[2] + bbox[5]) / 2]) * scale
    with open(meshes[0], encoding="utf-8") as f:
        vertices = np.array([[float(v) for v in line.split()[1:4]] for line in f if line.startswith("v ")])
    with open(features[0], encoding="utf-8") as f:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        curves = yaml.load(f, Loader=loader).get("curves") or []
    indices = [i for curve in curves if curve.get("sharp") for i in curve["vert_indices"]]
    if not indices:
        raise ValueError(f"{features[0]} lists no sharp curve")
    return (vertices[indices] * scale + (0.5 - centre)).astype(np.float64)


def nef_curves(path: Union[str, Path]) -> Tensor:
    """NEF's own cubic curves (``nef_result_cubic.json``, ``curves_ctl_pts``) in the ABC-NEF frame, converted as NEF's
    evaluation does: ``ctl / 256 * 2.4 - 1.2`` with x and y swapped. ``[C, 4, 3]``."""
    import json

    control = torch.tensor(json.loads(Path(path).read_text())["curves_ctl_pts"], dtype=torch.float64)
    return (control / 256.0 * 2.4 - 1.2)[..., [1, 0, 2]]
