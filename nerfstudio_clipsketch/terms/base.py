"""The seam every guidance term plugs into: its settings, what it is handed once at set-up, and what it reads each
step.

A term is one module under :mod:`nerfstudio_clipsketch.terms` with

- a settings dataclass, a :class:`GuidanceTermConfig` whose ``_target`` is the term (nerfstudio's way of building
  things: ``config.setup(context=...)``), whose :meth:`~GuidanceTermConfig.problems` names every bad value, and
  which is one field of :class:`~nerfstudio_clipsketch.model.ClipSketchModelConfig` (so ``--pipeline.model.<field>.*``
  sets it);
- a :class:`GuidanceTerm` built once, when the training data is known, from a :class:`TermContext` (the training
  cameras, the visual hull, the shared CLIP encoder), which says whether it is on (:attr:`GuidanceTerm.enabled`, and
  why not in the log) and returns its named losses from one :class:`TermInputs` (one render and its targets).

How strong a term is, is either its own business (the CLIP terms weight their losses themselves: ``balanced`` None)
or the model's balancer's (:class:`nerfstudio_clipsketch.balance.TermBalancer`): a term with ``balanced = "ink"``
reads :attr:`TermInputs.ink` and its gradient is kept at its ``weight`` times the CLIP terms' gradient on the ink;
one with ``balanced = "centres"`` reads :attr:`TermInputs.centres` and its gradient is kept at ``weight`` times the
render's gradient on the Gaussians' centres (every image term's, the ink terms' included).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    ClassVar,
    Dict,
    Hashable,
    List,
    Literal,
    Optional,
    Sequence,
    Tuple,
    Type,
)

import torch
from jaxtyping import Float
from nerfstudio.configs.base_config import InstantiateConfig
from torch import Tensor

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras

    from nerfstudio_clipsketch.clip_guidance import ClipGuidance
    from nerfstudio_clipsketch.hull import VisualHull


@dataclass
class TermContext:
    """What the training data decides, handed to every term once at set-up."""

    cameras: Optional["Cameras"] = None
    """The training cameras (nerfstudio's normalised frame, CPU); None before the data is known."""
    hull: Optional["VisualHull"] = None
    """The visual hull carved from the training silhouettes, when there is one."""
    clip: Optional[Callable[[], "ClipGuidance"]] = None
    """The shared CLIP encoder, built on first call (one model for every term that needs CLIP)."""


@dataclass
class TermInputs:
    """One render (training or evaluation) and what it is compared with: every tensor is ``[V, ...]`` over the
    ``V`` views rendered together."""

    rgb: Float[Tensor, "V H W 3"]
    """The rendered sketch."""
    ink: Float[Tensor, "V H W 1"]
    """The strokes' coverage (the render's alpha); a node of its own for each ``balanced = "ink"`` term."""
    target: Float[Tensor, "V H W 3"]
    """The training views, composited onto the sketch's paper."""
    keys: Optional[Sequence[Hashable]]
    """One key per view (its split and index) under which per-view results (CLIP features, edge maps) are cached;
    None: nothing is cached."""
    ink_colour: Float[Tensor, "3"]
    """Stroke minus paper colour: how ink changes the render (``rgb = paper + ink * ink_colour``)."""
    generator: torch.Generator
    """Source of the step's randomness (CLIP's augmentations)."""
    training: bool
    """A training step (augmentations on, training-only terms on)."""
    means: Float[Tensor, "N 3"]
    """The Gaussians' centres as the render drew them."""
    evaluate_centres: Callable[[], Float[Tensor, "N 3"]]
    """The Gaussians' centres evaluated afresh from the control points (a node apart from the render's)."""
    centres: Optional[Float[Tensor, "N 3"]] = None
    """Set by the balancer for ``balanced = "centres"`` terms."""
    shared: Dict[str, Any] = field(default_factory=dict)
    """What one term computed that a later one reuses within the step (the CLIP term leaves the rendered views'
    embeddings under ``"clip_embeddings"``)."""


@dataclass
class GuidanceTermConfig(InstantiateConfig):
    """Settings of one guidance term."""

    _target: Type = field(default_factory=lambda: GuidanceTerm)
    weight: float = 0.0
    """Strength of the term (what it is relative to is said by each term). 0: off."""

    def problems(self, name: str) -> List[Tuple[bool, str]]:
        """(is it wrong, what to say) for each setting, naming the setting (``name``: the term's field in the model's
        settings, e.g. ``ridges``) and what is allowed."""
        return [(not self.weight >= 0, f"{name}.weight must be 0 (off) or positive, got {self.weight}")]


class GuidanceTerm:
    """A loss term of the sketch (see the module docstring)."""

    name: ClassVar[str] = "term"
    balanced: ClassVar[Optional[Literal["ink", "centres"]]] = None
    training_only: ClassVar[bool] = False

    def __init__(self, config: GuidanceTermConfig, context: TermContext) -> None:
        self.config = config
        self.context = context

    @property
    def enabled(self) -> bool:
        return self.config.weight > 0

    @property
    def weight(self) -> float:
        return float(self.config.weight)

    def loss(self, inputs: TermInputs) -> Dict[str, Tensor]:
        raise NotImplementedError
