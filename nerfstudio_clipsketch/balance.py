"""How strong a guidance term is: its gradient kept at a fixed share of a reference gradient.

CLIP's terms have no natural scale (random weights, as in tests, give losses a million times smaller than pretrained
ones), so a fixed loss weight would mean something different on every model and scene. The structure terms are
instead scaled so that the norm of their gradient on a quantity is ``weight`` times the norm of a reference gradient on
the same quantity: CLIP stays the main signal whatever its weights, and a weight means the same on every scene. The
model owns one :class:`TermBalancer`; each term says which quantity it is balanced on
(:attr:`nerfstudio_clipsketch.terms.base.GuidanceTerm.balanced`), and that fixes its reference:

- ``"ink"`` (:mod:`nerfstudio_clipsketch.terms.edges`): the gradient the CLIP terms (the terms that weight
  themselves: CLIPasso's, and the text prompt's) send to the rendered RGB, projected on the ink colour, i.e. their
  gradient on the ink. Other ink terms do not count: each reads a node of its own.
- ``"centres"`` (:mod:`nerfstudio_clipsketch.terms.ridges`): the gradient the render sends to the Gaussians' centres,
  i.e. that of every image term together, the ink terms included. (CLIP's share alone would need a second backward
  pass through the rasterizer.)
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Dict, Optional, Sequence

import torch
from torch import Tensor

if TYPE_CHECKING:
    from nerfstudio_clipsketch.terms.base import GuidanceTerm, TermInputs


class GradientBalance:
    """Keeps a term's gradient at ``weight`` times a reference gradient.

    Per training step: :meth:`scale` is what the raw term is multiplied by, ``weight * |g_reference| / |g_term|`` in
    running averages of the gradients' norms, which :meth:`watch` collects during the backward pass (as tensors: no
    host sync). Until both norms have been seen the scale is tiny (the term's gradient is measured first). A term that
    is silent (zero gradient: nothing to correct) leaves its running norm as it was. Without any reference gradient
    (all CLIP weights 0) the scale is ``weight``.
    """

    FIRST_STEP_SCALE = 1e-6

    def __init__(self, weight: float, momentum: float = 0.9) -> None:
        self.weight = weight
        self.momentum = momentum
        self.reference_norm: Optional[Tensor] = None
        self.term_norm: Optional[Tensor] = None

    def scale(self) -> Tensor:
        if self.reference_norm is None or self.term_norm is None:
            return torch.tensor(self.FIRST_STEP_SCALE)
        ratio = self.reference_norm / self.term_norm.clamp_min(1e-30)
        ratio = torch.where(self.reference_norm > 0, ratio, torch.ones_like(ratio))
        return torch.where(self.term_norm > 0, self.weight * ratio, torch.full_like(ratio, self.FIRST_STEP_SCALE))

    def _update(self, name: str, value: Tensor) -> None:
        old = getattr(self, name)
        if old is None:
            setattr(self, name, value)
        else:
            averaged = self.momentum * old + (1.0 - self.momentum) * value
            setattr(self, name, torch.where(value > 0, averaged, old))

    def watch(self, reference: Tensor, term: Tensor, scale: Tensor, direction: Optional[Tensor] = None) -> None:
        """Record the gradients that reach ``reference`` (from the other terms; projected on ``direction`` along its
        last axis when given) and ``term`` (from this term multiplied by ``scale``)."""
        if not (reference.requires_grad and term.requires_grad):
            return
        if direction is not None:
            along = direction.detach().to(reference)
            reference.register_hook(lambda g: self._update("reference_norm", (g * along).sum(-1).norm().detach()))
        else:
            reference.register_hook(lambda g: self._update("reference_norm", g.norm().detach()))
        term.register_hook(lambda g: self._update("term_norm", (g.norm() / scale).detach()))


class TermBalancer:
    """The model's guidance terms' losses from one render, each balanced term scaled by its own
    :class:`GradientBalance` against its reference (see the module docstring)."""

    def __init__(self, terms: Sequence["GuidanceTerm"] = ()) -> None:
        self.terms = list(terms)
        self.balances: Dict[str, GradientBalance] = {t.name: GradientBalance(t.weight) for t in terms if t.balanced}

    def losses(self, inputs: "TermInputs") -> Dict[str, Tensor]:
        """Every term's named losses, weighted, in a fixed order: the terms that weight themselves first, then those
        balanced on the ink, then those on the Gaussians' centres. Terms marked ``training_only`` are skipped outside
        training."""
        terms = [t for t in self.terms if inputs.training or not t.training_only]
        losses: Dict[str, Tensor] = {}
        for term in (t for t in terms if t.balanced is None):
            losses.update(term.loss(inputs))
        with_clip = bool(losses)
        for term in (t for t in terms if t.balanced == "ink"):
            ink = inputs.ink * 1.0  # a node of its own: its gradient is this term's alone
            balance = self.balances[term.name]
            if with_clip:
                scale = balance.scale().to(ink)
                balance.watch(inputs.rgb, ink, scale, direction=inputs.ink_colour)
            else:  # nothing to balance against (every CLIP weight 0): the weight is the scale
                scale = torch.tensor(balance.weight)
            losses.update({k: scale * v for k, v in term.loss(replace(inputs, ink=ink)).items()})
        for term in (t for t in terms if t.balanced == "centres"):
            centres = inputs.evaluate_centres()
            balance = self.balances[term.name]
            scale = balance.scale().to(centres)
            balance.watch(inputs.means, centres, scale)
            losses.update({k: scale * v for k, v in term.loss(replace(inputs, centres=centres)).items()})
        return losses
