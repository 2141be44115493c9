"""CLIPasso's term, the sketch's main signal: each rendered view against its photo inside the frozen CLIP encoder
(L2 on intermediate activations, cosine of the final embeddings, over joint augmentations:
:class:`nerfstudio_clipsketch.clip_guidance.ClipGuidance`).

It is always on and weights itself: its settings are the model's ``clip.*`` (``layer_weights``, ``fc_weight``,
``num_augmentations``, ...), which also choose the encoder that every CLIP-based term shares. The rendered views'
final embeddings are left in :attr:`TermInputs.shared` (``"clip_embeddings"``) for later terms (the text prompt's).
"""

from __future__ import annotations

from typing import Dict

from torch import Tensor

from nerfstudio_clipsketch.terms.base import GuidanceTerm, GuidanceTermConfig, TermContext, TermInputs

EMBEDDINGS = "clip_embeddings"
"""Key of the rendered views' CLIP embeddings (un-augmented, then each augmentation's) in :attr:`TermInputs.shared`."""


class ClipTerm(GuidanceTerm):
    """The losses ``clip_layer{i}`` and ``clip_fc`` (weights from ``clip.*``; none when every weight is 0)."""

    name = "clip"

    def __init__(self, context: TermContext) -> None:
        super().__init__(GuidanceTermConfig(weight=1.0), context)
        if context.clip is None:
            raise ValueError("the CLIP term needs the shared CLIP encoder (TermContext.clip)")
        self.clip = context.clip

    def loss(self, inputs: TermInputs) -> Dict[str, Tensor]:
        losses, embeddings = self.clip().compare(
            inputs.rgb, inputs.target, generator=inputs.generator, target_keys=inputs.keys, augment=inputs.training
        )
        if embeddings is not None:
            inputs.shared[EMBEDDINGS] = embeddings
        return losses
