"""Camera and coordinate conventions, converted in exactly one place each.

nerfstudio cameras are camera-to-world ``[*, 3, 4]`` matrices in OpenGL axes (x right, y up, z backward); the
renderers take world-to-camera ``[*, 4, 4]`` matrices in OpenCV axes (x right, y down, z forward), as gsplat does.
Dataparsers move the dataset into nerfstudio's normalised frame, ``x' = scale * (T @ [x; 1])``; exports and metrics
undo that with :func:`to_dataset_coordinates`.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


def get_viewmats(camera_to_worlds: Float[Tensor, "*batch 3 4"]) -> Float[Tensor, "*batch 4 4"]:
    """OpenGL camera-to-world (nerfstudio) to OpenCV world-to-camera (gsplat), as splatfacto's ``get_viewmat``."""
    R = camera_to_worlds[..., :3, :3] * torch.tensor([1.0, -1.0, -1.0], device=camera_to_worlds.device)
    T = camera_to_worlds[..., :3, 3:4]
    R_inv = R.transpose(-1, -2)
    T_inv = -R_inv @ T
    viewmat = torch.zeros(*camera_to_worlds.shape[:-2], 4, 4, device=R.device, dtype=R.dtype)
    viewmat[..., 3, 3] = 1.0
    viewmat[..., :3, :3] = R_inv
    viewmat[..., :3, 3:4] = T_inv
    return viewmat


def to_dataset_coordinates(
    points: Float[Tensor, "*batch 3"], transform: Float[Tensor, "3 4"], scale: float
) -> Float[Tensor, "*batch 3"]:
    """Undo a dataparser's ``x' = scale * (R x + t)``: from nerfstudio's normalised frame back to the dataset's."""
    R, t = transform[:3, :3].to(points), transform[:3, 3].to(points)
    return (points / scale - t) @ R


def from_dataset_coordinates(
    points: Float[Tensor, "*batch 3"], transform: Float[Tensor, "3 4"], scale: float
) -> Float[Tensor, "*batch 3"]:
    """A dataparser's ``x' = scale * (R x + t)``: from the dataset's frame into nerfstudio's normalised one."""
    R, t = transform[:3, :3].to(points), transform[:3, 3].to(points)
    return (points @ R.T + t) * scale
