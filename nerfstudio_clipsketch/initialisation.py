"""Where the curves start: short random strokes in a ball around the scene centre, or on the scene's 3D points.

Both return control points ``[num_curves, degree + 1, 3]``: straight, evenly spaced control points along a short
random segment, so every initial curve is a line of the requested length. :func:`initial_curves` picks the method
for a run and returns the curves in the model's scale-free frame (centred on the point the cameras look at, in units
of the median camera distance to it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_clipsketch.cameras import camera_axes_centre
from nerfstudio_clipsketch.model_config import ClipSketchConfigError, ClipSketchModelSettings

if TYPE_CHECKING:
    from nerfstudio_clipsketch.hull import VisualHull


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


def hull_init(
    hull: "VisualHull", num_curves: int, degree: int, length: float, generator: torch.Generator
) -> Float[Tensor, "num_curves degree_plus_one 3"]:
    """Strokes traced along the hull's scored surface points (at most ``4 * length`` each), topped up with short
    strokes of ``length`` at random scored points when the traces cover them all."""
    strokes = hull.trace_strokes(num_curves, degree, max_length=4.0 * length, short_length=length)
    missing = num_curves - len(strokes)
    if missing > 0:
        pool = hull.points if len(hull.points) else hull.surface_points
        starts = pool[torch.randint(len(pool), (missing,), generator=generator)]
        strokes.extend(_segments(starts.float(), length, degree, generator))
    return torch.stack(strokes)


class InitialisationError(ClipSketchConfigError):
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
    config: ClipSketchModelSettings,
    camera_to_worlds: Float[Tensor, "num_cameras 3 4"],
    generator: torch.Generator,
    points: Optional[Float[Tensor, "num_points 3"]] = None,
    hull: Optional["VisualHull"] = None,
    no_hull_reason: str = "no visual hull was carved",
) -> InitialCurves:
    """The run's initial curves (``config.init``, ``num_curves``, ``curve_degree``, ``init_radius``,
    ``init_length``): ``'points'`` on the dataparser's 3D points, ``'hull'`` traced along the visual hull's
    rims and creases (:meth:`~nerfstudio_clipsketch.hull.VisualHull.trace_strokes`, topped up with short strokes at
    random scored points), ``'sphere'`` in a ball of ``radius`` around the point the cameras look at, ``'auto'``
    hull, else points, else sphere (a cluttered capture's sparse points lie on the whole room, its hull on the
    object); ``radius`` and ``length`` are fractions of the median camera distance.

    Raises:
        InitialisationError: ``'points'`` without points, ``'hull'`` without a hull.
    """
    method, num_curves, degree = config.init, config.num_curves, config.curve_degree
    radius, length = config.init_radius, config.init_length
    c2w = camera_to_worlds.reshape(-1, 3, 4).float().cpu()
    centre = camera_axes_centre(c2w)
    distance = float((c2w[:, :3, 3] - centre).norm(dim=-1).median())
    has_points = points is not None and len(points) > 0
    if method == "points" and not has_points:
        raise InitialisationError(
            "init='points' needs 3D points from the dataparser (e.g. a COLMAP capture with sparse points); "
            "this dataset has none. Use --pipeline.model.init sphere."
        )
    if method == "hull" and hull is None:
        raise InitialisationError(
            f"init='hull' needs a visual hull, but {no_hull_reason}. Use --pipeline.model.init sphere."
        )
    if hull is not None and method in ("hull", "auto"):
        cp = hull_init(hull, num_curves, degree, length * distance, generator)
        return InitialCurves((cp - centre) / distance, centre, distance, "hull")
    if method == "points" or (method == "auto" and has_points):
        cp = points_init(points, num_curves, degree, length * distance, generator)  # type: ignore[arg-type]
        return InitialCurves((cp - centre) / distance, centre, distance, "points")
    cp = sphere_init(num_curves, degree, torch.zeros(3), radius, length, generator)
    return InitialCurves(cp, centre, distance, "sphere")
