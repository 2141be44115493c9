"""The strokes' lifecycle: strokes that collapse, leave every view or run along another are re-seeded where the
sketch explains the object least, in the spirit of splatfacto's densify/prune schedule and the prune/merge steps of
curve-splatting methods.

Every ``every`` steps until ``stop`` (after which the set is frozen), :meth:`StrokeLifecycle.step` finds

- *collapsed* strokes: shorter than ``min_length`` of the scene's size (a stroke shrunk to a dot draws nothing);
- *lost* strokes: outside every training camera's view;
- *hidden* strokes (scenes with a visual hull): inside the object, seen by no training camera past the hull. A
  stroke there draws ink that no view of the object shows: the volume filling of the ancestor, and where CLIP's
  terms drive a sketch whose targets are filled shaded silhouettes (random weights: every ABC-NEF stroke within 50
  steps);
- *duplicates*: a stroke that runs along a longer one (``duplicate_share`` of its samples within ``duplicate_radius``
  of the other's) — what keeps many strokes from piling onto the same edge or filling the volume;

and gives each a new start: along the visual hull's scored surface points farthest from the remaining strokes
(:meth:`nerfstudio_clipsketch.hull.VisualHull.trace_strokes`), or, without a hull, a short stroke in a random
direction at a point of a random remaining stroke's curve. The counts are logged (``lifecycle/*`` in tensorboard).
The lifecycle only decides (:class:`Reseed`); the model applies the decision to its parameters and resets their Adam
moments, as gsplat's strategies change parameters and optimiser state together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Optional

import torch
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from nerfstudio_clipsketch import curves
from nerfstudio_clipsketch.cameras import get_viewmats, project_points

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras

    from nerfstudio_clipsketch.hull import VisualHull


@dataclass
class LifecycleSettings:
    """When and how strokes are re-seeded (fractions are of the scene's size: the hull's diagonal, or the median
    camera distance without a hull)."""

    every: int = 50
    stop: int = 1000
    min_length: float = 0.02
    duplicate_radius: float = 0.01
    duplicate_share: float = 0.8


def duplicates(samples: Tensor, lengths: Tensor, radius: float, share: float) -> Tensor:
    """``[C]`` bool: strokes with ``share`` of their samples ``[C, S, 3]`` within ``radius`` of one longer stroke."""
    num_curves = samples.shape[0]
    flat = samples.reshape(-1, 3)
    distances = torch.cdist(flat, flat).reshape(num_curves, -1, num_curves, samples.shape[1]).amin(-1)  # [C, S, C]
    near = (distances <= radius).float().mean(1)  # [C, C]: share of c's samples near stroke d
    longer = lengths[None, :] > lengths[:, None]  # d longer than c (ties: the later index survives)
    ties = (lengths[None, :] == lengths[:, None]) & (
        torch.arange(num_curves)[None, :] > torch.arange(num_curves)[:, None]
    )
    return ((near >= share) & (longer | ties)).any(1)


def outside_every_view(samples: Tensor, cameras: "Cameras") -> Tensor:
    """``[C]`` bool: strokes none of whose samples ``[C, S, 3]`` any camera sees."""
    uv, depth = project_points(
        samples.reshape(-1, 3), get_viewmats(cameras.camera_to_worlds.float()), cameras.get_intrinsics_matrices()
    )
    width, height = cameras.width.reshape(-1, 1).float(), cameras.height.reshape(-1, 1).float()
    seen = (depth > 0) & (uv[..., 0] >= 0) & (uv[..., 0] < width) & (uv[..., 1] >= 0) & (uv[..., 1] < height)
    return ~seen.any(0).reshape(samples.shape[:2]).any(1)


class StrokeLifecycle:
    """Re-seeds the strokes of a sketch (see the module docstring).

    Args:
        settings: when and how.
        cameras: the training cameras (normalised frame, CPU).
        scene_size: the length that ``min_length`` and ``duplicate_radius`` are fractions of (world units).
        new_length: length of a stroke re-seeded without a hull (world units).
        hull: where new strokes start, when the scene has one.
        centre: where they start when no stroke is kept and there is no hull (the scene's centre; default the origin).
    """

    def __init__(
        self,
        settings: LifecycleSettings,
        cameras: "Cameras",
        scene_size: float,
        new_length: float,
        hull: Optional["VisualHull"] = None,
        generator: Optional[torch.Generator] = None,
        centre: Optional[Tensor] = None,
    ) -> None:
        self.settings = settings
        self.cameras = cameras.reshape(-1).to("cpu")
        self.scene_size = scene_size
        self.new_length = new_length
        self.hull = hull
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.total_reseeded = 0
        self.centre = torch.zeros(3) if centre is None else centre.detach().cpu().float().reshape(3)

    def find(self, control_points: Tensor) -> Dict[str, Tensor]:
        """Which strokes of ``control_points`` (world frame) to re-seed, by reason."""
        cp = control_points.detach().cpu().float()
        lengths = curves.curve_lengths(cp)
        samples = curves.evaluate(cp, torch.linspace(0, 1, 32))
        size = self.scene_size
        found = {
            "collapsed": lengths < self.settings.min_length * size,
            "lost": outside_every_view(samples, self.cameras),
        }
        if self.hull is not None:  # inside the object: no camera sees any of it past the hull
            seen = self.hull.visible(samples.reshape(-1, 3), self.cameras).any(0)
            found["hidden"] = ~seen.reshape(samples.shape[:2]).any(1) & ~found["lost"]
        alive = ~torch.stack(list(found.values())).any(0)
        dup = torch.zeros_like(alive)
        if int(alive.sum()) > 1:
            dup[alive] = duplicates(
                samples[alive], lengths[alive], self.settings.duplicate_radius * size, self.settings.duplicate_share
            )
        found["duplicate"] = dup
        return found

    def new_strokes(self, keep: Tensor, count: int, degree: int) -> Tensor:
        """``count`` new strokes (world frame), away from the kept strokes ``[K, D+1, 3]``."""
        samples = curves.evaluate(keep.double(), torch.linspace(0, 1, 64, dtype=torch.double)).reshape(-1, 3).float()
        strokes = []
        starts = samples if len(samples) else self.centre[None]  # every stroke re-seeded: around the scene's centre
        if self.hull is not None:
            strokes = self.hull.trace_strokes(
                count, degree, max_length=4.0 * self.new_length, short_length=self.new_length, existing=samples
            )
        while len(strokes) < count:
            centre = starts[int(torch.randint(len(starts), (1,), generator=self.generator))]
            direction = torch.randn(3, generator=self.generator)
            direction = direction / direction.norm()
            steps = torch.linspace(-0.5, 0.5, degree + 1)[:, None]
            strokes.append(centre + self.new_length * steps * direction)
        return torch.stack(strokes[:count])

    @torch.no_grad()
    def step(self, step: int, control_points: Tensor) -> Optional["Reseed"]:
        """What to re-seed among the strokes ``control_points`` ``[C, D+1, 3]`` (world frame) at training step ``step``:
        what :meth:`find` finds, with new strokes for them (None when nothing is, or outside ``(0, stop]``). The counts
        are logged; applying the decision to the parameters and optimiser is the model's
        (:meth:`nerfstudio_clipsketch.model.ClipSketchModel.apply_reseed`)."""
        from nerfstudio.utils import writer  # here: nerfstudio's writer cannot be imported before its configs

        if step == 0 or step > self.settings.stop:
            return None
        world = control_points.detach().cpu()
        found = self.find(world)
        reseed = torch.stack(list(found.values())).any(0)
        count = int(reseed.sum())
        for reason, mask in found.items():
            writer.put_scalar(name=f"lifecycle/{reason}", scalar=int(mask.sum()), step=step)
        if count == 0:
            return None
        fresh = self.new_strokes(world[~reseed], count, world.shape[1] - 1)
        self.total_reseeded += count
        reasons = ", ".join(f"{int(m.sum())} {r}" for r, m in found.items() if bool(m.any()))
        CONSOLE.log(f"clipsketch: step {step}: re-seeded {count} strokes ({reasons})")
        return Reseed(index=reseed.nonzero()[:, 0], control_points=fresh)


@dataclass
class Reseed:
    """A decision of the lifecycle: strokes ``index`` ``[K]`` start again as ``control_points`` ``[K, D+1, 3]``
    (world frame), with fresh optimiser state."""

    index: Tensor
    control_points: Tensor
