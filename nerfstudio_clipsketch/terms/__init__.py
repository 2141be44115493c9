"""The sketch's guidance terms, one module each, all behind one seam (:mod:`nerfstudio_clipsketch.terms.base`):

- :mod:`~nerfstudio_clipsketch.terms.clip`: CLIPasso's term, each view against its photo inside CLIP (always on);
- :mod:`~nerfstudio_clipsketch.terms.text`: a text prompt's CLIP embedding (``text.prompt``);
- :mod:`~nerfstudio_clipsketch.terms.edges`: ink pulled onto the photos' edges (``edges.*``);
- :mod:`~nerfstudio_clipsketch.terms.ridges`: strokes held on the visual hull's rims and creases (``ridges.*``).

Adding a term is one new module with its settings (a :class:`GuidanceTermConfig`) and its term (a
:class:`GuidanceTerm`), and one field of those settings in
:class:`~nerfstudio_clipsketch.model_config.ClipSketchModelConfig`: :func:`build_terms` finds it there.
"""

from __future__ import annotations

from typing import List

from nerfstudio_clipsketch.terms.base import GuidanceTerm, GuidanceTermConfig, TermContext, TermInputs
from nerfstudio_clipsketch.terms.clip import ClipTerm

__all__ = ["GuidanceTerm", "GuidanceTermConfig", "TermContext", "TermInputs", "build_terms"]


def build_terms(config, context: TermContext) -> List[GuidanceTerm]:
    """The terms that are on for a model's settings ``config`` (a ClipSketchModelConfig) and the training data's
    ``context``: CLIPasso's, then every settings field that is a :class:`GuidanceTermConfig`, in field order, each
    built by its ``_target``."""
    terms: List[GuidanceTerm] = [ClipTerm(context)]
    terms += [settings.setup(context=context) for settings in config.terms().values()]
    return [term for term in terms if term.enabled]
