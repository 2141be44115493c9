"""Where the curves start: short random strokes in a ball around the scene centre, or on the scene's 3D points.

Both return control points ``[num_curves, degree + 1, 3]``: straight, evenly spaced control points along a short
random segment, so every initial curve is a line of the requested length. :func:`initial_curves` picks the method
for a run and returns the curves in the model's scale-free frame (centred on the point the cameras look at, in units
of the median camera distance to it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

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


InitMethod = Literal["auto", "sphere", "points"]


class InitialisationError(ValueError):
    """An initialisation that the data cannot support; the message says what to use instead."""


@dataclass
class InitialCurves:
    """The curves a run starts from, and the frame they are expressed in."""

    control_points: Float[Tensor, "num_curves degree_plus_one 3"]
    """Scale-free control points: world = centre + distance * control_points."""
    centre: Float[Tensor, "3"]
    """The point the training cameras look at."""
    distance: float
    """Median distance of the training cameras to the centre."""
    method: str
    """The initialisation used ('sphere' or 'points')."""


def initial_curves(
    method: InitMethod,
    camera_to_worlds: Float[Tensor, "num_cameras 3 4"],
    num_curves: int,
    degree: int,
    radius: float,
    length: float,
    generator: torch.Generator,
    points: Optional[Float[Tensor, "num_points 3"]] = None,
) -> InitialCurves:
    """The run's initial curves: ``'points'`` on the dataparser's 3D points, ``'sphere'`` in a ball of ``radius``
    around the point the cameras look at, ``'auto'`` points when there are any; ``radius`` and ``length`` are
    fractions of the median camera distance.

    Raises:
        InitialisationError: ``'points'`` without points.
    """
    c2w = camera_to_worlds.reshape(-1, 3, 4).float().cpu()
    centre = camera_axes_centre(c2w)
    distance = float((c2w[:, :3, 3] - centre).norm(dim=-1).median())
    has_points = points is not None and len(points) > 0
    if method == "points" and not has_points:
        raise InitialisationError(
            "init='points' needs 3D points from the dataparser (e.g. a COLMAP capture with sparse points); "
            "this dataset has none. Use --pipeline.model.init sphere."
        )
    if method == "points" or (method == "auto" and has_points):
        cp = points_init(points, num_curves, degree, length * distance, generator)  # type: ignore[arg-type]
        return InitialCurves((cp - centre) / distance, centre, distance, "points")
    cp = sphere_init(num_curves, degree, torch.zeros(3), radius, length, generator)
    return InitialCurves(cp, centre, distance, "sphere")
