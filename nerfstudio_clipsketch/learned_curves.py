"""The sketch's learned tensor and everything derived from it: the Bézier control points, in a scale-free frame, and
where the stroke Gaussians sit along the curves.

The learned tensor is scale-free: world = ``anchor + unit * control_points``, with the unit the median camera distance
to the scene centre, so one learning rate suits every dataset's scale. Gaussian k is curve ``sample_curve[k]`` at
parameter ``sample_t[k]``: derived from the curves between steps (:meth:`LearnedCurves.resample`), so not saved, and
a checkpoint's sketch is re-spaced when loaded. Changes between steps (a new start, a lifecycle's re-seeding) go
through this module, which changes the parameters and their optimiser state together.
"""

from __future__ import annotations

from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor, nn

from nerfstudio_clipsketch import curves
from nerfstudio_clipsketch.initialisation import InitialCurves, sphere_init
from nerfstudio_clipsketch.lifecycle import Reseed
from nerfstudio_clipsketch.strokes import StrokeSampler

SAVED = ("anchor", "unit", "control_points", "initial_control_points")
"""The saved tensors (checkpoints before 2026-12-07 kept them on the model itself)."""


class LearnedCurves(nn.Module):
    """``num_curves`` Bézier curves of ``degree`` and the ``num_gaussians`` samples that draw them.

    Args:
        aabb: the scene box ``[2, 3]``: its centre and longest side are the frame until :meth:`start_from` sets the
            data's.
        generator: randomness of the placeholder start (a ball of short strokes).
    """

    def __init__(
        self, num_curves: int, degree: int, num_gaussians: int, aabb: Tensor, generator: torch.Generator
    ) -> None:
        super().__init__()
        self.num_gaussians = num_gaussians
        self.register_buffer("anchor", ((aabb[0] + aabb[1]) / 2).float())
        self.register_buffer("unit", (aabb[1] - aabb[0]).max().float())
        self.control_points = nn.Parameter(sphere_init(num_curves, degree, torch.zeros(3), 0.25, 0.05, generator))
        self.register_buffer("initial_control_points", self.control_points.detach().clone())  # saved: the start
        self.register_buffer("sample_curve", torch.zeros(num_gaussians, dtype=torch.long), persistent=False)
        self.register_buffer("sample_t", torch.zeros(num_gaussians), persistent=False)
        self.sampler = StrokeSampler()

    def world(self) -> Float[Tensor, "num_curves degree_plus_one 3"]:
        """The control points in nerfstudio's (normalised) world frame."""
        return self.anchor + self.unit * self.control_points

    def centres(self) -> Float[Tensor, "num_gaussians 3"]:
        """The Gaussians' centres: the curves' samples."""
        return curves.evaluate_at(self.world(), self.sample_curve, self.sample_t)

    @torch.no_grad()
    def resample(self, sigma: Tensor, step: Optional[int] = None) -> None:
        """Re-space the Gaussians along the moved curves (between steps: free to sync); ``sigma``: their size, for
        the warning when strokes look dotted."""
        # Reassigning registered buffers keeps them buffers.
        self.sample_curve, self.sample_t = self.sampler(self.world(), self.num_gaussians, sigma, step)

    @torch.no_grad()
    def start_from(self, start: InitialCurves) -> None:
        """Start (and :meth:`restart`) from the initial curves ``start``, in its frame."""
        self.anchor.copy_(start.centre)
        self.unit.fill_(start.distance)
        self.control_points.copy_(start.control_points.to(self.control_points))
        self.initial_control_points.copy_(self.control_points)

    @torch.no_grad()
    def restart(self) -> None:
        """Go back to the curves training started from."""
        self.control_points.copy_(self.initial_control_points)

    @torch.no_grad()
    def reseed(self, decision: Reseed, optimizer: Optional[torch.optim.Optimizer] = None) -> None:
        """Apply a lifecycle decision: the strokes it names start again from its control points, their Adam moments
        in ``optimizer`` (the one that owns :attr:`control_points`) reset."""
        index = decision.index.to(self.control_points.device)
        fresh = decision.control_points.to(self.control_points)
        self.control_points[index] = ((fresh - self.anchor) / self.unit).to(self.control_points)
        state = optimizer.state.get(self.control_points, {}) if optimizer is not None else {}
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][index] = 0.0
