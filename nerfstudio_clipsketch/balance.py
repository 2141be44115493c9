"""How strong a guidance term is: its gradient kept at a fixed share of the render's.

CLIP's terms have no natural scale (random weights, as in tests, give losses a million times smaller than pretrained
ones), so a fixed loss weight would mean something different on every model and scene. The structure terms
(:mod:`nerfstudio_clipsketch.edges` on the ink, :mod:`nerfstudio_clipsketch.ridges` on the Gaussians' centres) are
instead scaled so that the norm of their gradient on a tensor is ``weight`` times the norm of the reference gradient on
the same quantity: CLIP stays the main signal whatever its weights, and a weight means the same on every scene.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


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
