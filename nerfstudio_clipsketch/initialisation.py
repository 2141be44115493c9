"""Where the curves start: short random strokes in a ball around the scene centre, or on the scene's 3D points.

Both return control points ``[num_curves, degree + 1, 3]``: straight, evenly spaced control points along a short
random segment, so every initial curve is a line of the requested length.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_clipsketch.cameras import look_at_centre


def camera_axes_centre(camera_to_worlds: Float[Tensor, "num_cameras 3 4"]) -> Float[Tensor, "3"]:
    """Where to put a sketch: the point the cameras look at (:func:`~nerfstudio_clipsketch.cameras.look_at_centre`).

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


def _segments(
    starts: Float[Tensor, "num_curves 3"], length: float, degree: int, generator: torch.Generator
) -> Float[Tensor, "num_curves degree_plus_one 3"]:
    direction = torch.randn(starts.shape, generator=generator, dtype=starts.dtype)
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    steps = torch.linspace(-0.5, 0.5, degree + 1, dtype=starts.dtype)
    return starts[:, None, :] + length * steps[None, :, None] * direction[:, None, :]


def sphere_init(
    num_curves: int,
    degree: int,
    centre: Float[Tensor, "3"],
    radius: float,
    length: float,
    generator: torch.Generator,
) -> Float[Tensor, "num_curves degree_plus_one 3"]:
    """The ancestor's start: short random strokes centred uniformly in the ball of ``radius`` around ``centre``."""
    centre = centre.detach().cpu().float()
    direction = torch.randn(num_curves, 3, generator=generator)
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    r = radius * torch.rand(num_curves, 1, generator=generator) ** (1.0 / 3.0)
    return _segments(centre + r * direction, length, degree, generator)


def farthest_point_indices(points: Float[Tensor, "num_points 3"], count: int, generator: torch.Generator) -> Tensor:
    """Indices of ``count`` points picked by farthest-point sampling (spread over the whole cloud)."""
    n = points.shape[0]
    count = min(count, n)
    chosen = torch.empty(count, dtype=torch.long)
    chosen[0] = torch.randint(n, (1,), generator=generator)
    dist = (points - points[chosen[0]]).square().sum(-1)
    for i in range(1, count):
        chosen[i] = torch.argmax(dist)
        dist = torch.minimum(dist, (points - points[chosen[i]]).square().sum(-1))
    return chosen


def points_init(
    points: Float[Tensor, "num_points 3"],
    num_curves: int,
    degree: int,
    length: float,
    generator: torch.Generator,
) -> Float[Tensor, "num_curves degree_plus_one 3"]:
    """Short random strokes centred on the scene's 3D points (e.g. COLMAP's sparse points), spread out by
    farthest-point sampling over the densest 90 % of the cloud, as 3Doodle starts from the point cloud."""
    points = points.detach().cpu().float()
    if points.shape[0] == 0:
        raise ValueError("points_init needs at least one 3D point; the dataparser gave none")
    # Farthest-point sampling seeks out outliers first; sparse SfM clouds have some, so drop the farthest 10 %.
    distance = (points - points.median(0).values).norm(dim=-1)
    points = points[distance <= torch.quantile(distance, 0.9)]
    idx = farthest_point_indices(points, num_curves, generator)
    if idx.numel() < num_curves:  # fewer points than curves: reuse them
        extra = torch.randint(points.shape[0], (num_curves - idx.numel(),), generator=generator)
        idx = torch.cat([idx, extra])
    return _segments(points[idx], length, degree, generator)
