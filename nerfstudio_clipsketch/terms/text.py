"""A text prompt beside the photos (CLIPDraw's and 3Doodle's text term): the rendered views' CLIP image embeddings
are pulled toward the embedding of a prompt such as "a rose", by the cosine distance between them.

The same CLIP model encodes both: its text tower is kept only when a prompt is given (it is freed after loading
otherwise), and the prompt goes through open_clip's own tokenizer for the architecture. Offline, missing weights stop
the run with the same message as for the image encoder. The views' embeddings are those CLIPasso's term computed this
step (over its augmentations), so the prompt costs no extra CLIP pass; without CLIPasso's term it encodes the views
itself.

What a prompt does to a sketch can only be judged with trained weights: with a random CLIP (tests, and every
benchmark run here) the prompt's embedding means nothing, and the term only shows that its gradient moves strokes
toward the embedding it is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Type

import torch.nn.functional as F
from torch import Tensor

from nerfstudio_clipsketch.terms.base import GuidanceTerm, GuidanceTermConfig, TermContext, TermInputs
from nerfstudio_clipsketch.terms.clip import EMBEDDINGS


@dataclass
class TextTermConfig(GuidanceTermConfig):
    """A text the sketch should read as, besides the photos."""

    _target: Type = field(default_factory=lambda: TextTerm)
    prompt: Optional[str] = None
    """What the sketch shows, in words (e.g. "a rose"); None: no text term, and CLIP's text tower is not kept."""
    weight: float = 0.1
    """Weight of the cosine distance between the views' CLIP embeddings and the prompt's (as clip.fc-weight weights
    the distance to the photos' embeddings)."""

    def problems(self, name: str) -> List[Tuple[bool, str]]:
        blank = self.prompt is not None and not self.prompt.strip()
        return [
            *super().problems(name),
            (blank, f"{name}.prompt must be some text (or left unset), got {self.prompt!r}"),
        ]

    @property
    def wanted(self) -> bool:
        """Whether a prompt is given and weighted (CLIP's text tower is kept only then)."""
        return self.prompt is not None and self.weight > 0


class TextTerm(GuidanceTerm):
    """The loss ``text``: ``weight * (1 - cos(view embedding, prompt embedding))``, averaged over the views."""

    name = "text"
    config: TextTermConfig

    def __init__(self, config: TextTermConfig, context: TermContext) -> None:
        super().__init__(config, context)
        if config.wanted and context.clip is None:
            raise ValueError("the text term needs the shared CLIP encoder (TermContext.clip)")
        self._prompt: Optional[Tensor] = None

    @property
    def enabled(self) -> bool:
        return self.config.wanted

    def prompt_embedding(self) -> Tensor:
        """The prompt's CLIP embedding ``[D]``, computed once."""
        assert self.context.clip is not None and self.config.prompt is not None
        clip = self.context.clip()
        if self._prompt is None or self._prompt.device != clip.device:
            self._prompt = clip.text_embedding(self.config.prompt)
        return self._prompt

    def loss(self, inputs: TermInputs) -> Dict[str, Tensor]:
        embeddings = inputs.shared.get(EMBEDDINGS)
        if embeddings is None:
            assert self.context.clip is not None
            embeddings = self.context.clip().embed(inputs.rgb, grad=True)
        prompt = self.prompt_embedding().to(embeddings)
        cosine = F.cosine_similarity(embeddings, prompt[None], dim=-1)
        return {self.name: self.config.weight * (1.0 - cosine).mean()}
