"""When a sketch has settled: the rule that ends training before ``--max-num-iterations`` once what the user sees has
stopped changing.

A sketch is settled when, over the last ``window`` steps,

- the drawing moved less than ``movement`` stroke widths: each curve is a polyline through points at fixed
  parameters, and each point of the sketch at one end of the window lies within that distance of the sketch at the
  other end (the ``quantile`` of these distances, both ways, over the stroke width in world units at the scene
  centre). A stroke sliding along the edge it draws does not count as moving (point-by-point displacement would:
  with Adam's steady steps a stroke's points drift a stroke width or two every 100 steps while the drawing stays
  the same); a stroke still travelling, or one the lifecycle has just re-seeded somewhere new, keeps the run going
  once it is more than ``1 - quantile`` of the points;
- the ink's total length changed by less than ``growth`` of itself: strokes that keep lengthening at their ends (the
  rose's, whose surface coverage grows for hundreds of steps) move the drawing too little at any one place to count
  as movement, but add up;
- and the loss stopped falling: its mean over the last window is lower than over the window before by less than
  ``loss_drop`` of the earlier mean (CLIPasso's loss is noisy, since every step draws new augmentations and views:
  single steps say nothing, window means do).

The rule never fires before ``min_steps``. :class:`SettleRule` only watches and decides; the trainer
(:mod:`nerfstudio_clipsketch.trainer`) ends the run as any other end of training (checkpoint, time-lapse, exports),
logs "settled at step N" and writes :data:`RECORD_NAME` beside the run's config so that tools (``clipsketch-batch``)
know the run is complete although it stopped before its last step.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Deque, List, Optional, Tuple

if TYPE_CHECKING:  # torch is imported where a rule runs: clipsketch-batch reads the record without it
    from jaxtyping import Float
    from torch import Tensor

RECORD_NAME = "settled.json"
"""Written into a run's folder when it settled: ``{"step": N, "reason": ...}``."""
POINTS_PER_CURVE = 16
"""Points along each curve (fixed parameters, ends included) whose polyline stands for it."""


@dataclass
class SettleSettings:
    """Stop training when the sketch has settled (``--settle.*``); ``--max-num-iterations`` stays the cap."""

    enabled: bool = True
    """Stop when the sketch has settled (see the other settle settings); False trains every step up to
    --max-num-iterations."""
    window: int = 25
    """Steps over which the curves' movement is measured and the loss's mean is compared with the window before."""
    movement: float = 0.75
    """Settled only when the drawing moved less than this many stroke widths over the window: each point of the
    sketch within this distance of the sketch window steps before, and back (see quantile)."""
    quantile: float = 0.9
    """The share of the sketch's points that must lie within movement of the other sketch (1.0: every point)."""
    growth: float = 0.02
    """Settled only when the strokes' total length changed by less than this fraction over the window."""
    loss_drop: float = 0.01
    """Settled only when the loss's mean over the window fell by less than this fraction of the window before's."""
    min_steps: int = 50
    """Never settled before this many steps."""

    def problems(self) -> List[str]:
        """What is wrong with these settings, one message per problem, naming the flag and what is allowed."""
        found = []
        if self.window < 1:
            found.append(f"--settle.window must be at least 1 step, got {self.window}")
        if not self.movement >= 0:
            found.append(f"--settle.movement must be 0 or more stroke widths, got {self.movement}")
        if not 0 < self.quantile <= 1:
            found.append(f"--settle.quantile must be in (0, 1], got {self.quantile}")
        if not self.growth >= 0:
            found.append(f"--settle.growth must be 0 or more, got {self.growth}")
        if not self.loss_drop >= 0:
            found.append(f"--settle.loss-drop must be 0 or more, got {self.loss_drop}")
        if self.min_steps < 0:
            found.append(f"--settle.min-steps must be 0 or more, got {self.min_steps}")
        return found


def curve_points(control_points: Float[Tensor, "num_curves degree_plus_one 3"]) -> Float[Tensor, "num_curves S 3"]:
    """:data:`POINTS_PER_CURVE` points at fixed parameters along each curve (ends included)."""
    import torch

    from nerfstudio_clipsketch import curves

    t = torch.linspace(0.0, 1.0, POINTS_PER_CURVE, dtype=control_points.dtype, device=control_points.device)
    return curves.evaluate(control_points, t)


def distance_to_polylines(points: Float[Tensor, "P 3"], polylines: Float[Tensor, "C S 3"]) -> Float[Tensor, "P"]:
    """Each point's distance to the nearest of the polylines."""
    start, end = polylines[:, :-1].reshape(-1, 3), polylines[:, 1:].reshape(-1, 3)
    along = end - start
    t = ((points[:, None] - start[None]) * along[None]).sum(-1) / (along * along).sum(-1).clamp_min(1e-12)
    closest = start[None] + t.clamp(0.0, 1.0)[..., None] * along[None]
    return (points[:, None] - closest).norm(dim=-1).amin(1)


def movement(
    before: Float[Tensor, "C S 3"], after: Float[Tensor, "C S 3"], stroke_width: float, quantile: float
) -> float:
    """How far the drawing ``after`` lies from ``before`` and back (:func:`curve_points` of each): the ``quantile``
    of every point's distance to the other sketch's polylines, in stroke widths."""
    import torch

    if before.shape != after.shape:
        return float("inf")  # the number of curves changed (a checkpoint of another size): not comparable
    before, after = before.float(), after.float()
    distances = torch.cat(
        [distance_to_polylines(after.reshape(-1, 3), before), distance_to_polylines(before.reshape(-1, 3), after)]
    )
    return float(torch.quantile(distances, quantile)) / max(stroke_width, 1e-12)


def ink_length(points: Float[Tensor, "C S 3"]) -> float:
    """The total length of the polylines through :func:`curve_points`."""
    return float((points[:, 1:] - points[:, :-1]).norm(dim=-1).sum())


def length_change(before: Float[Tensor, "C S 3"], after: Float[Tensor, "C S 3"]) -> float:
    """How much the ink's total length changed from ``before`` to ``after``, as a fraction of the earlier length."""
    return abs(ink_length(after) - ink_length(before)) / max(ink_length(before), 1e-12)


class SettleRule:
    """Watches a run step by step (:meth:`observe`) and says when its sketch has settled (module docstring)."""

    def __init__(self, settings: SettleSettings) -> None:
        self.settings = settings
        self._points: Deque[Tuple[int, "Tensor"]] = deque(maxlen=settings.window + 1)
        self._losses: Deque[float] = deque(maxlen=2 * settings.window)
        self.last_movement: Optional[float] = None
        self.last_loss_drop: Optional[float] = None
        self.last_growth: Optional[float] = None

    def observe(
        self, step: int, control_points: Float[Tensor, "num_curves degree_plus_one 3"], stroke_width: float, loss: float
    ) -> Optional[str]:
        """Record step ``step`` (its curves after the update, the stroke width in world units, its loss); returns why
        the sketch has settled, or None while it has not."""
        s = self.settings
        points = curve_points(control_points.detach()).cpu()
        if self._points and self._points[-1][1].shape != points.shape:
            self._points.clear()
        self._points.append((step, points))
        self._losses.append(float(loss))
        if len(self._points) <= s.window or len(self._losses) < 2 * s.window:
            return None
        first_step, first = self._points[0]
        self.last_movement = movement(first, points, stroke_width, s.quantile)
        self.last_growth = length_change(first, points)
        losses = list(self._losses)
        before, recent = sum(losses[: s.window]) / s.window, sum(losses[s.window :]) / s.window
        self.last_loss_drop = (before - recent) / max(abs(before), 1e-12)
        if step + 1 < s.min_steps or self.last_movement >= s.movement or self.last_loss_drop >= s.loss_drop:
            return None
        if self.last_growth >= s.growth:
            return None
        return (
            f"over steps {first_step}-{step} the drawing moved {self.last_movement:.2f} stroke widths "
            f"({s.quantile:.0%} of its points; --settle.movement {s.movement:g}), its length changed "
            f"{self.last_growth:.1%} (--settle.growth {s.growth:g}) and the loss's mean "
            f"{'fell' if self.last_loss_drop >= 0 else 'rose'} {abs(self.last_loss_drop):.1%} over the window before "
            f"(--settle.loss-drop {s.loss_drop:g})"
        )


def write_record(run_dir: Path, step: int, reason: str) -> None:
    """Mark the run in ``run_dir`` as settled at ``step``."""
    (Path(run_dir) / RECORD_NAME).write_text(json.dumps({"step": step, "reason": reason}, indent=1), encoding="utf-8")


def settled_step(run_dir: Path) -> Optional[int]:
    """The step at which the run in ``run_dir`` settled, if it did (and its record is readable)."""
    try:
        return int(json.loads((Path(run_dir) / RECORD_NAME).read_text(encoding="utf-8"))["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
