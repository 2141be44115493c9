"""The 3D structure term: strokes stay on the object's rims and creases, the edges many views agree on.

The image-space structure term (:mod:`nerfstudio_clipsketch.terms.edges`) pulls ink onto each view's edges, but at the
scale of a pixel of the view CLIP sees, a stroke can slide off the object in depth, or across a concave gap, without
any view noticing. The visual hull knows where those edges lie in 3D: its *ridges* (:attr:`VisualHull.points`, the
surface points that land on image edges in at least half of the views facing them, moved onto the middle of their
bands) are where the strokes start. This term keeps them there: every stroke Gaussian further than ``radius`` hull
voxels from the nearest ridge point pays the square of the excess, and is pulled straight back toward it. Within
``radius`` the term is silent, so CLIP is free to choose which edges to draw and to slide strokes along them.

Without it, CLIP's terms (random weights, as measured here) moved the rose's strokes off its surface within 100 steps
(surface precision@1% 0.97 at the start, 0.69 after), whatever the learning rate (0.68 at 1e-3, 0.72 at 5e-4): a
pixel of CLIP's view is about the 1% threshold on the rose (BENCHMARKS.md).

A hull carved from cameras that disagree with the images (the duck's) is smaller than the object and covers only part
of each silhouette when projected back (:attr:`VisualHull.fit`): its ridges are not the object's, and the term stays
off below ``min_fit``.

The nearest ridge point of every voxel of the hull's grid is found once (a Euclidean distance transform), so a step
looks up, and does not search, each Gaussian's nearest ridge point.

Balanced on the Gaussians' centres (``balanced = "centres"``): the model's balancer
(:class:`nerfstudio_clipsketch.balance.TermBalancer`) keeps this term's gradient at ``weight`` times the render's own
gradient on the centres, that of every image term together (CLIP's and the image structure term's): CLIP stays the
main signal, and the strokes are held only as hard as the images move them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Type

import numpy as np
import torch
from jaxtyping import Float
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from nerfstudio_clipsketch.hull import VisualHull
from nerfstudio_clipsketch.terms.base import GuidanceTerm, GuidanceTermConfig, TermContext, TermInputs

logger = logging.getLogger(__name__)


@dataclass
class RidgeTermConfig(GuidanceTermConfig):
    """How strongly strokes are held on the visual hull's rims and creases."""

    _target: Type = field(default_factory=lambda: RidgeTerm)
    weight: float = 0.5
    """Strength of the pull back onto the ridges, relative to the render's gradient on the Gaussians' centres (CLIP's
    terms and the image structure term): its gradient is kept at this fraction of theirs. 0: off."""
    radius: float = 1.0
    """Distance from the nearest ridge point, in hull voxels, within which a stroke is free (the term is silent)."""
    min_fit: float = 0.9
    """The term is off when the hull covers less than this share of the training silhouettes projected back
    (VisualHull.fit): its ridges are then not the object's (cameras and images disagree)."""

    def problems(self, name: str) -> List[Tuple[bool, str]]:
        return [
            *super().problems(name),
            (not self.radius >= 0, f"{name}.radius must be 0 or a positive number of hull voxels, got {self.radius}"),
            (not 0 <= self.min_fit <= 1, f"{name}.min-fit must be in [0, 1] (a share), got {self.min_fit}"),
        ]


class RidgeField:
    """The nearest ridge point of every voxel of the hull's grid, and the term that pulls Gaussians onto the ridges.

    Args:
        hull: the carved hull; its ``points`` are the ridges.
        radius: free distance, in voxels.
    """

    def __init__(self, hull: VisualHull, radius: float = RidgeTermConfig.radius) -> None:
        from scipy.ndimage import distance_transform_edt

        if len(hull.points) == 0:
            raise ValueError("the visual hull has no ridge points to hold strokes on")
        self.points = hull.points.detach().float().cpu()
        self.origin = hull.origin.detach().float().cpu()
        self.voxel_size = float(hull.voxel_size)
        self.radius = float(radius)
        shape = tuple(hull.occupancy.shape)
        self._last_cell = torch.tensor(shape) - 1
        cells = self._cells(self.points).numpy()
        owner = np.full(shape, -1, dtype=np.int64)
        owner[cells[:, 0], cells[:, 1], cells[:, 2]] = np.arange(len(cells))  # one ridge point per voxel suffices
        seeds = distance_transform_edt(owner < 0, return_distances=False, return_indices=True)
        self.nearest = torch.from_numpy(owner[seeds[0], seeds[1], seeds[2]].astype(np.int32))  # [X, Y, Z]

    def _cells(self, points: Tensor) -> Tensor:
        """The grid cell of each point (on the field's device), clamped into the grid."""
        idx = torch.round((points - self.origin) / self.voxel_size).long()
        return torch.minimum(idx.clamp_min(0), self._last_cell)

    def to(self, device) -> "RidgeField":
        tensors = (self.points, self.origin, self.nearest, self._last_cell)
        self.points, self.origin, self.nearest, self._last_cell = (t.to(device) for t in tensors)
        return self

    @torch.no_grad()
    def nearest_points(self, means: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
        """A ridge point near each point: the one in the ridge voxel nearest to the point's voxel, so at most two
        voxel diagonals further than the nearest (points off the grid get their border voxel's)."""
        if self.nearest.device != means.device:  # moved once, to where the sketch is: no copies in the step
            self.to(means.device)
        cells = self._cells(means.detach().float())
        return self.points[self.nearest[cells[:, 0], cells[:, 1], cells[:, 2]].long()].to(means)

    def loss(self, means: Float[Tensor, "N 3"]) -> Tensor:
        """Mean over the Gaussians of ``relu(distance / voxel - radius)^2``: 0 on the ridges, growing off them."""
        distance = (means - self.nearest_points(means)).norm(dim=-1) / self.voxel_size
        return (torch.relu(distance - self.radius) ** 2).mean()


class RidgeTerm(GuidanceTerm):
    """The term as training uses it (loss ``ridges``): :class:`RidgeField`'s loss on the Gaussians' centres. Off (and
    why, in the log) without a hull, without ridges, or with a hull that does not fit its silhouettes."""

    name = "ridges"
    balanced = "centres"
    training_only = True
    config: RidgeTermConfig

    def __init__(self, config: RidgeTermConfig, context: TermContext) -> None:
        super().__init__(config, context)
        self.field: Optional[RidgeField] = None
        hull = context.hull
        if config.weight <= 0:
            return
        if hull is None or len(hull.points) == 0:
            why = "no visual hull" if hull is None else "the visual hull has no rims or creases"
            logger.info("clipsketch: strokes are not held on ridges: %s", why)
        elif hull.fit < config.min_fit:
            CONSOLE.log(
                f"[yellow]clipsketch: the visual hull covers only {hull.fit:.0%} of the training silhouettes projected "
                "back: the cameras and the images disagree (poses, intrinsics or masks), so its rims and creases are "
                f"not the object's. Strokes are not held on them (ridges.min-fit {config.min_fit:g})."
            )
        else:
            self.field = RidgeField(hull, config.radius)

    @property
    def enabled(self) -> bool:
        return self.field is not None

    def loss(self, inputs: TermInputs) -> Dict[str, Tensor]:
        assert self.field is not None and inputs.centres is not None
        return {self.name: self.field.loss(inputs.centres)}
