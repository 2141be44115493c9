"""Occlusion in training: the object hides the ink behind it, as it hides its own far side in the photos.

A sketch rendered without occlusion shows every stroke from every side. Ink anywhere inside the object then lands
inside the object's silhouette in every training view at once, which an image loss rewards in all of them: strokes
sink into the object (on ABC-NEF every stroke ended inside the visual hull, seen by no camera; see BENCHMARKS.md).
Training renders therefore draw the sketch as each camera would see it past the visual hull: every Gaussian's opacity
is multiplied by the hull's transmittance along the segment from the Gaussian to the camera,
``exp(-density * occupied length in voxels)``, read from a slightly blurred occupancy grid so that ink fades
smoothly as a stroke moves behind the object. The segment starts ``margin`` (a fraction of the hull's bounding-box
diagonal) from the Gaussian: the hull is carved wider than the object, and a stroke on or just under its surface is
drawn whole. Ink deeper inside fades, so sinking through the object no longer pays.

The transmittance is a weight, not a path for gradients: a stroke is not pushed toward the cameras by it (a
differentiable transmittance drove strokes out of the hull and off the object's surface: rose surface precision
0.52 against 0.72; BENCHMARKS.md). Viewer, evaluation and exported renders show every stroke (the hull is not kept in
checkpoints; a sketch is a 3D drawing seen from anywhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from nerfstudio_clipsketch.hull import VisualHull


@dataclass
class OcclusionSettings:
    """How the visual hull hides strokes in training renders."""

    density: float = 0.5
    """Ink behind the hull fades by exp(-density × hull voxels crossed toward the camera). 0: off, every stroke is
    drawn in every view (the ancestor's)."""
    margin: float = 0.09
    """How deep under the hull's surface a stroke is still drawn whole, as a fraction of the hull's bounding-box
    diagonal: the hull is carved wider than the object, and strokes on the object's surface must not hide
    themselves."""

    def problems(self) -> list[tuple[bool, str]]:
        """(is it wrong, what to say) for each setting, naming the setting and what is allowed."""
        return [
            (not self.density >= 0, f"occlusion.density must be 0 (off) or positive, got {self.density}"),
            (not 0 <= self.margin < 1, f"occlusion.margin must be in [0, 1) (of the hull's size), got {self.margin}"),
        ]


class HullOcclusion:
    """The soft transmittance of a visual hull between points and cameras."""

    def __init__(self, hull: VisualHull, density: float, margin: float = OcclusionSettings.margin) -> None:
        if not density > 0:
            raise ValueError(f"occlusion density must be positive (per voxel), got {density}")
        self.density = float(density)
        self.voxel_size = float(hull.voxel_size)
        self.start = float(margin) * hull.diagonal / self.voxel_size  # in voxels
        self.origin = hull.origin.float().cpu()
        grid = hull.occupancy.float().cpu()[None, None]
        # One voxel of blur: ink fades smoothly as a stroke crosses the hull's boundary.
        self.grid = F.avg_pool3d(grid, 3, stride=1, padding=1)  # [1, 1, X, Y, Z]
        self.dims = torch.tensor(hull.occupancy.shape, dtype=torch.float32)
        self.max_steps = int(float(self.dims.norm())) + 1  # any segment leaves the grid within this many voxels

    @classmethod
    def for_hull(cls, hull: Optional[VisualHull], settings: OcclusionSettings) -> Optional["HullOcclusion"]:
        """The occlusion ``settings`` ask for by ``hull``, or None (no hull, or density 0: every stroke drawn)."""
        if hull is None or settings.density <= 0:
            return None
        return cls(hull, settings.density, settings.margin)

    def _to(self, device: torch.device) -> None:
        if self.grid.device != device:  # moved once, to where the sketch is
            self.grid, self.origin, self.dims = self.grid.to(device), self.origin.to(device), self.dims.to(device)

    def occupancy(self, points: Float[Tensor, "*batch 3"]) -> Tensor:
        """The blurred occupancy at ``points`` (0 outside the grid), trilinear."""
        self._to(points.device)
        idx = (points - self.origin) / self.voxel_size
        # grid_sample's last coordinate indexes the grid's first axis: (z, y, x), each in [-1, 1] over voxel centres.
        normalised = (idx / (self.dims - 1).clamp_min(1.0) * 2.0 - 1.0).flip(-1)
        values = F.grid_sample(
            self.grid, normalised.reshape(1, 1, 1, -1, 3), mode="bilinear", padding_mode="zeros", align_corners=True
        )
        return values.reshape(points.shape[:-1])

    @torch.no_grad()
    def transmittance(self, points: Float[Tensor, "N 3"], camera_origins: Float[Tensor, "C 3"]) -> Float[Tensor, "C N"]:
        """How much of each point each camera sees past the hull, in (0, 1]: 1 in front of it, near 0 behind it."""
        self._to(points.device)
        steps = (torch.arange(self.max_steps, device=points.device, dtype=points.dtype) + self.start) * self.voxel_size
        rows = []
        for origin in camera_origins.to(points):
            towards = origin - points  # [N, 3]
            distance = towards.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            ray = points[:, None] + (towards / distance)[:, None] * steps[None, :, None]  # [N, K, 3]
            before_camera = (steps[None, :] < distance).to(points.dtype)
            occupied = (self.occupancy(ray) * before_camera).sum(-1)  # voxels of hull on the way, [N]
            rows.append(torch.exp(-self.density * occupied))
        return torch.stack(rows)
