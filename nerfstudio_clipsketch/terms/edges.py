"""The image structure term: pull the sketch's ink onto the training views' edges.

CLIP's terms say whether a view *reads* like the object; nothing in them says where the object's edges are in 3D. This
term does: each training view's edge map (:func:`nerfstudio_clipsketch.edge_maps.edge_map`) is computed once and
cached, and the loss compares the rendered ink (the sketch's alpha) with it after Gaussian blurs at several scales.
The coarse scales pull strokes toward edges from afar, the fine ones put them on the edge; summed over views, only
strokes on the object's real 3D edges satisfy every view at once.

The loss is one minus the cosine similarity of the blurred ink and the blurred edges, averaged over the scales and
the views: 0 when the ink follows the edges in proportion, 1 when it lies nowhere near them. Being a cosine, it does
not depend on how much ink there is or how strong the edges are, only on where both are.

Balanced on the ink (``balanced = "ink"``): with a single stroke colour the render is ``paper + ink * (colour -
paper)``, so CLIP's gradient on the rendered RGB is also a gradient on the ink, and the model's balancer keeps this
term's gradient at ``weight`` times CLIP's there (:class:`nerfstudio_clipsketch.balance.TermBalancer`): CLIP stays the
main signal whatever its weights (pretrained, or random as in tests), and the weight means the same on every scene.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Hashable, List, Optional, Sequence, Tuple, Type

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from nerfstudio_clipsketch.edge_maps import edge_map, gaussian_blur, view_pixels
from nerfstudio_clipsketch.terms.base import GuidanceTerm, GuidanceTermConfig, TermContext, TermInputs


@dataclass
class EdgeTermConfig(GuidanceTermConfig):
    """The image structure term: ink pulled onto the training views' edges."""

    _target: Type = field(default_factory=lambda: EdgeTerm)
    weight: float = 0.5
    """Its gradient on the ink, as a fraction of CLIP's terms' gradient there. 0: off (CLIP alone)."""
    scales: Tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    """Blur standard deviations at which ink and edges are compared, in pixels of a 224-pixel view."""

    def problems(self, name: str) -> List[Tuple[bool, str]]:
        bad_scales = not self.scales or any(not s > 0 for s in self.scales)
        return [
            *super().problems(name),
            (bad_scales, f"{name}.scales must be positive pixel sizes, got {tuple(self.scales)}"),
        ]


class EdgeTerm(GuidanceTerm):
    """Rendered ink against the cached, blurred edge maps of the target views (loss ``edges``)."""

    name = "edges"
    balanced = "ink"
    config: EdgeTermConfig

    def __init__(self, config: EdgeTermConfig, context: Optional[TermContext] = None) -> None:
        super().__init__(config, context or TermContext())
        self.scales = tuple(float(s) for s in config.scales)
        self._cache: Dict[Hashable, Tensor] = {}

    def blurred_edges(self, target: Float[Tensor, "H W 3"], key: Optional[Hashable]) -> Float[Tensor, "S H W"]:
        """The target's edge map blurred at every scale, computed once per ``key`` (a training view)."""
        if key is not None and key in self._cache and self._cache[key].device == target.device:
            return self._cache[key]
        edges = edge_map(target)
        unit = view_pixels(*target.shape[:2])
        blurred = torch.stack([gaussian_blur(edges[None], s * unit)[0] for s in self.scales])
        if key is not None:
            self._cache[key] = blurred
        return blurred

    def raw_loss(
        self,
        ink: Float[Tensor, "V H W 1"],
        targets: Float[Tensor, "V H W 3"],
        keys: Optional[Sequence[Hashable]] = None,
    ) -> Tensor:
        """``1 - cos(G_s * ink, G_s * edges)``, averaged over scales ``s`` and views (unweighted)."""
        assert ink.shape[:3] == targets.shape[:3], (ink.shape, targets.shape)
        unit = view_pixels(*ink.shape[1:3])
        edges = torch.stack(
            [self.blurred_edges(targets[v], keys[v] if keys is not None else None) for v in range(ink.shape[0])]
        )  # [V, S, H, W]
        drawn = torch.stack([gaussian_blur(ink[..., 0], s * unit) for s in self.scales], dim=1)
        cosine = F.cosine_similarity(drawn.flatten(2), edges.flatten(2), dim=-1, eps=1e-8)  # [V, S]
        return (1.0 - cosine).mean()

    def loss(self, inputs: TermInputs) -> Dict[str, Tensor]:
        return {self.name: self.raw_loss(inputs.ink, inputs.target, inputs.keys)}
