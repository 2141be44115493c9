"""Camera and coordinate conventions, converted in exactly one place each.

nerfstudio cameras are camera-to-world ``[*, 3, 4]`` matrices in OpenGL axes (x right, y up, z backward); the
renderers take world-to-camera ``[*, 4, 4]`` matrices in OpenCV axes (x right, y down, z forward), as gsplat does.
:func:`project_points` is the one pinhole projection (renderers, SVG export, world-position checks): pixel ``(i, j)``
has its centre at ``(i + 0.5, j + 0.5)``. :func:`look_at_centre` is the point a set of cameras looks at (orbits,
initial curves, recentring a scene).
Dataparsers move the dataset into nerfstudio's normalised frame, ``x' = scale * (T @ [x; 1])``; exports and metrics
undo that with :func:`to_dataset_coordinates`.
"""

from __future__ import annotations

from typing import Tuple

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


def project_points(
    points: Float[Tensor, "num_points 3"],
    viewmats: Float[Tensor, "num_cameras 4 4"],
    Ks: Float[Tensor, "num_cameras 3 3"],
    near_plane: float = 0.0,
) -> Tuple[Float[Tensor, "num_cameras num_points 2"], Float[Tensor, "num_cameras num_points"]]:
    """Pinhole projection of world points into every camera: ``(uv, depth)``.

    ``uv = (fx x / z + cx, fy y / z + cy)`` in continuous pixel coordinates (pixel ``(i, j)`` is the unit square from
    ``(i, j)``), ``depth`` the camera-space ``z`` (OpenCV axes, forward). Where ``depth <= near_plane`` the point cannot
    be drawn: ``uv`` is then computed as if ``z = 1`` (finite, so gradients stay finite) and callers mask by depth.
    """
    assert points.dim() == 2 and points.shape[-1] == 3, points.shape
    assert viewmats.dim() == 3 and viewmats.shape[1:] == (4, 4), viewmats.shape
    assert Ks.shape == (viewmats.shape[0], 3, 3), Ks.shape
    R, t = viewmats[:, :3, :3], viewmats[:, None, :3, 3]  # [C, 3, 3], [C, 1, 3]
    camera = points[None] @ R.transpose(1, 2) + t  # [C, N, 3]: one matrix product per camera
    x, y, z = camera.unbind(-1)
    z_safe = torch.where(z > near_plane, z, torch.ones_like(z))
    u = Ks[:, 0, 0, None] * x / z_safe + Ks[:, 0, 2, None]
    v = Ks[:, 1, 1, None] * y / z_safe + Ks[:, 1, 2, None]
    return torch.stack([u, v], dim=-1), z


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


def look_at_centre(camera_to_worlds: Float[Tensor, "num_cameras 3 4"]) -> Float[Tensor, "3"]:
    """The point closest, in the least-squares sense, to every camera's optical axis.

    Each axis is the line through the camera centre along ``-z`` (nerfstudio's OpenGL convention); the point
    minimises the sum of squared distances to the lines, solving ``sum_i (I - d_i d_i^T) (x - o_i) = 0``.

    Raises:
        ValueError: fewer than two cameras, or axes so nearly parallel (e.g. a forward-facing capture) that they
            have no well-defined common point.
    """
    if camera_to_worlds.dim() != 3 or camera_to_worlds.shape[1:] not in ((3, 4), (4, 4)):
        raise ValueError(f"camera_to_worlds must have shape [N, 3, 4], got {tuple(camera_to_worlds.shape)}")
    if camera_to_worlds.shape[0] < 2:
        raise ValueError(f"need at least two cameras to intersect their axes, got {camera_to_worlds.shape[0]}")
    c2w = camera_to_worlds.detach().double()
    origins = c2w[:, :3, 3]
    directions = -c2w[:, :3, 2]
    directions = directions / directions.norm(dim=-1, keepdim=True)
    projectors = torch.eye(3, dtype=c2w.dtype, device=c2w.device) - directions[:, :, None] * directions[:, None, :]
    A = projectors.sum(0)
    b = (projectors @ origins[:, :, None]).sum(0)
    eigenvalues = torch.linalg.eigvalsh(A)
    if eigenvalues[0] <= 1e-6 * eigenvalues[-1]:
        raise ValueError(
            f"the {c2w.shape[0]} cameras' optical axes are (nearly) parallel (eigenvalues of the normal matrix "
            f"{eigenvalues.tolist()}): they do not look at a common point"
        )
    return torch.linalg.solve(A, b).squeeze(-1).to(camera_to_worlds.dtype)


def camera_axes_centre(camera_to_worlds: Float[Tensor, "num_cameras 3 4"]) -> Float[Tensor, "3"]:
    """Where to put a sketch: the point the cameras look at (:func:`look_at_centre`).

    When the optical axes are (nearly) parallel — one camera, or a forward-facing capture — there is no such point:
    then it is the world origin (where nerfstudio's dataparsers centre a scene) projected onto the mean optical
    axis, at least one mean camera distance from the origin in front of the cameras.
    """
    try:
        return look_at_centre(camera_to_worlds)
    except ValueError:
        origins = camera_to_worlds[:, :3, 3].double()
        direction = -camera_to_worlds[:, :3, 2].double().mean(0)
        direction = direction / direction.norm().clamp_min(1e-12)
        origin = origins.mean(0)
        depth = torch.clamp(-(origin @ direction), min=float(origins.norm(dim=-1).mean().clamp_min(1e-3)))
        return (origin + depth * direction).to(camera_to_worlds.dtype)


def render_size(cameras) -> Tuple[int, int]:
    """``(height, width)`` of nerfstudio ``Cameras`` rendered together: the datamanager's ``image_size`` metadata when
    it is there (plain ints: no device-to-host copy in a training step), else read from the cameras, which must then
    share one resolution."""
    size = (cameras.metadata or {}).get("image_size")
    if size is not None:
        return int(size[0]), int(size[1])
    cams = cameras.flatten() if cameras.shape else cameras.reshape((1,))
    width, height = int(cams.width[0, 0]), int(cams.height[0, 0])
    if len(cams) > 1 and not (bool((cams.width == width).all()) and bool((cams.height == height).all())):
        raise ValueError("All cameras rendered together must share one resolution")
    return height, width
