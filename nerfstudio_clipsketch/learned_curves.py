"""The sketch's learned tensor and everything derived from it: the Bézier control points, in a scale-free frame, and
where the stroke Gaussians sit along the curves.

The learned tensor is scale-free: world = ``anchor + unit * control_points``, with the unit the median camera distance
to the scene centre, so one learning rate suits every dataset's scale. Gaussian k is curve ``sample_curve[k]`` at
parameter ``sample_t[k]``: derived from the curves between steps (:meth:`LearnedCurves.resample`), so not saved, and
a checkpoint's sketch is re-spaced when loaded. Changes between steps (a new start, a lifecycle's re-seeding) go
through this module, which changes the parameters and their optimiser state together.

With a mirror plane (:mod:`nerfstudio_clipsketch.symmetry`) the strokes are tied across it
(:class:`~nerfstudio_clipsketch.mirror_tying.MirrorTying`): the learned tensor is then the free points ``[K, 3]``,
about half the control points, and the sketch their expansion. The tying is saved with checkpoints (extra state), so
a loaded run draws the same sketch.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional

import torch
from jaxtyping import Float
from torch import Tensor, nn

from nerfstudio_clipsketch import curves
from nerfstudio_clipsketch.initialisation import InitialCurves, sphere_init
from nerfstudio_clipsketch.lifecycle import Reseed
from nerfstudio_clipsketch.mirror_tying import MirrorTying
from nerfstudio_clipsketch.strokes import StrokeSampler
from nerfstudio_clipsketch.symmetry import Plane

logger = logging.getLogger(__name__)

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
        self.tying: Optional[MirrorTying] = None

    def full(self) -> Float[Tensor, "num_curves degree_plus_one 3"]:
        """Every curve's control points in the scale-free frame (the free points expanded when strokes are tied)."""
        return self.control_points if self.tying is None else self.tying.expand(self.control_points)

    def world(self) -> Float[Tensor, "num_curves degree_plus_one 3"]:
        """The control points in nerfstudio's (normalised) world frame."""
        return self.anchor + self.unit * self.full()

    @property
    def num_free_parameters(self) -> int:
        """Degrees of freedom of the sketch (a tied point held on the plane has two)."""
        return self.control_points.numel() if self.tying is None else self.tying.num_free_parameters

    def plane(self) -> Optional[Plane]:
        """The plane the strokes are tied across, in the world frame (None: not tied)."""
        if self.tying is None:
            return None
        normal, offset = self.tying.plane.normal, self.tying.plane.offset
        return Plane(normal, offset * float(self.unit) + float(normal @ self.anchor.detach().cpu().double()))

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
    def start_from(self, start: InitialCurves, plane: Optional[Plane] = None) -> None:
        """Start (and :meth:`restart`) from the initial curves ``start``, in its frame; with a ``plane`` (world
        frame), tied across it, made symmetric first (:meth:`MirrorTying.symmetrise`)."""
        self.anchor.copy_(start.centre)
        self.unit.fill_(start.distance)
        control_points, self.tying = start.control_points, None
        if plane is not None:
            frame_plane = plane.in_frame(start.centre, start.distance)
            self.tying, control_points = MirrorTying.symmetrise(control_points.double(), frame_plane)
            logger.info("clipsketch: %s", self.tying.describe())
        self._resize(control_points.shape)
        self.control_points.copy_(control_points.to(self.control_points))
        self.initial_control_points.copy_(self.control_points)

    @torch.no_grad()
    def draw(self, world: Float[Tensor, "num_curves degree_plus_one 3"]) -> None:
        """Make the sketch these curves (world frame), untied (tools and tests that place curves by hand)."""
        self.tying = None
        self._resize(world.shape)
        self.control_points.copy_(((world.to(self.anchor) - self.anchor) / self.unit).to(self.control_points))

    def _resize(self, shape) -> None:
        """A learned tensor (and saved start) of ``shape``: tied and untied sketches have different ones."""
        if self.control_points.shape != torch.Size(shape):
            like = self.control_points
            self.control_points = nn.Parameter(torch.zeros(shape, dtype=like.dtype, device=like.device))
            self.initial_control_points = torch.zeros(shape, dtype=like.dtype, device=like.device)
        if self.tying is not None:
            self.tying.to(self.control_points.device)

    @torch.no_grad()
    def restart(self) -> None:
        """Go back to the curves training started from."""
        self.control_points.copy_(self.initial_control_points)

    @torch.no_grad()
    def reseed(self, decision: Reseed, optimizer: Optional[torch.optim.Optimizer] = None) -> None:
        """Apply a lifecycle decision: the strokes it names start again from its control points (and, tied, their
        partners from their mirror images), their Adam moments in ``optimizer`` (the one that owns
        :attr:`control_points`) reset."""
        index = decision.index.to(self.control_points.device)
        fresh = ((decision.control_points.to(self.anchor) - self.anchor) / self.unit).to(self.control_points)
        if self.tying is None:
            self.control_points[index] = fresh
            rows = index
        else:
            free, rows = self.tying.reseed(self.control_points, index, fresh)
            self.control_points.copy_(free)
        state = optimizer.state.get(self.control_points, {}) if optimizer is not None else {}
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][rows] = 0.0

    def get_extra_state(self) -> Dict[str, Any]:
        return {"tying": None if self.tying is None else self.tying.state()}

    def set_extra_state(self, state: Dict[str, Any]) -> None:
        tying = (state or {}).get("tying")
        self.tying = None if tying is None else MirrorTying.from_state(tying).to(self.control_points.device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # The tying decides the learned tensor's shape: take the checkpoint's before its tensors are copied in.
        if prefix + "_extra_state" in state_dict:  # (nerfstudio also loads a pipeline's own tensors, without ours)
            self.set_extra_state(state_dict[prefix + "_extra_state"])
        if prefix + "control_points" in state_dict:
            self._resize(state_dict[prefix + "control_points"].shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
