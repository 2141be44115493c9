"""Weight-free geometric guidance: the target views' edges, and a loss that pulls the sketch's ink onto them.

CLIP's terms say whether a view *reads* like the object; nothing in them says where the object's edges are in 3D. The
structure term here does: each training view's edge map (:func:`edge_map`: image gradients, so silhouettes, creases
and texture boundaries) is computed once and cached, and the loss compares the rendered ink (the sketch's alpha)
with it after Gaussian blurs at several scales (:class:`EdgeGuidance`). The coarse scales pull strokes toward edges
from afar, the fine ones put them on the edge; summed over views, only strokes on the object's real 3D edges satisfy
every view at once. Scales are fractions of the view (pixels of a 224-pixel view), so the term does not depend on
the photos' resolution.

How strong the term is, is set relative to CLIP's (:class:`nerfstudio_clipsketch.balance.GradientBalance`): with a
single stroke colour the render is ``background + alpha * (colour - background)``, so CLIP's gradient on the rendered
RGB is also a gradient on the ink ``alpha``, the quantity the structure term's gradient lands on. Their norms are
tracked (running averages, no extra backward pass) and the term is scaled so that its gradient is ``weight`` times
CLIP's: CLIP stays the main signal whatever its weights (pretrained, or random as in tests), and the weight means the
same on every scene.

The loss is one minus the cosine similarity of the blurred ink and the blurred edges, averaged over the scales and
the views: 0 when the ink follows the edges in proportion, 1 when it lies nowhere near them. Being a cosine, it does
not depend on how much ink there is or how strong the edges are, only on where both are: strokes a little wider or
edges a little stronger (another resolution, another photo exposure) pull the same way.
"""

from __future__ import annotations

import math
from typing import Dict, Hashable, Optional, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from nerfstudio_clipsketch.balance import GradientBalance
from nerfstudio_clipsketch.strokes import REFERENCE_VIEW_PIXELS

LUMA = (0.299, 0.587, 0.114)


def gaussian_blur(images: Float[Tensor, "B H W"], sigma_px: float) -> Float[Tensor, "B H W"]:
    """Separable Gaussian blur with reflected borders (``sigma_px`` in pixels; 0 returns the images)."""
    if sigma_px <= 0:
        return images
    radius = max(1, int(math.ceil(3.0 * sigma_px)))
    x = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (x / sigma_px) ** 2)
    kernel = kernel / kernel.sum()
    out = images[:, None]
    pad = min(radius, images.shape[-1] - 1, images.shape[-2] - 1)
    if pad < radius:  # tiny images: zero padding where reflection cannot reach
        out = F.pad(out, (pad, pad, pad, pad), mode="reflect")
        out = F.pad(out, (radius - pad,) * 4)
    else:
        out = F.pad(out, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1))
    out = F.conv2d(out, kernel.view(1, 1, -1, 1))
    return out[:, 0]


def view_pixels(height: int, width: int) -> float:
    """Pixels of an image ``height x width`` per pixel of the same view drawn 224 pixels across its shorter side."""
    return min(height, width) / REFERENCE_VIEW_PIXELS


@torch.no_grad()
def edge_map(image: Float[Tensor, "H W 3"], percentile: float = 0.99, gamma: float = 0.5) -> Float[Tensor, "H W"]:
    """Edges of an RGB image in [0, 1]: the gradient magnitude of its luminance (slightly smoothed), divided by its
    ``percentile`` over the pixels where it is not flat, so the strongest edges of every view are 1, then raised to
    ``gamma``. The power compresses the range between silhouettes and creases: on a shaded object a crease between
    two faces of similar brightness is a tenth as strong as the silhouette against the background (0.1 -> 0.32 at
    0.5), and a sketch draws both with the same stroke."""
    height, width = image.shape[:2]
    luma = (image[..., :3] * torch.tensor(LUMA, device=image.device, dtype=image.dtype)).sum(-1)
    smooth = gaussian_blur(luma[None], 0.5 * view_pixels(height, width))
    padded = F.pad(smooth[:, None], (1, 1, 1, 1), mode="replicate")
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=image.device) / 8.0
    gx = F.conv2d(padded, sobel.view(1, 1, 3, 3).to(image.dtype))
    gy = F.conv2d(padded, sobel.T.reshape(1, 1, 3, 3).to(image.dtype))
    magnitude = torch.sqrt(gx * gx + gy * gy)[0, 0]
    active = magnitude[magnitude > 1e-3]
    if active.numel() == 0:
        return torch.zeros_like(magnitude)
    scale = torch.quantile(active.float()[:: max(1, active.numel() // 100_000)], percentile).clamp_min(1e-3)
    return (magnitude / scale).clamp(0.0, 1.0) ** gamma


class EdgeGuidance:
    """The structure term: rendered ink against the cached edge maps of the target views.

    Args:
        weight: the term's gradient on the ink, as a fraction of CLIP's (:meth:`balanced_loss`).
        scales: blur standard deviations, in pixels of a 224-pixel view.
    """

    def __init__(self, weight: float, scales: Sequence[float] = (1.0, 2.0, 4.0, 8.0)) -> None:
        if not scales or any(s <= 0 for s in scales):
            raise ValueError(f"edge blur scales must be positive pixel sizes, got {tuple(scales)}")
        self.scales = tuple(float(s) for s in scales)
        self.balance = GradientBalance(weight)
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

    def loss(
        self,
        ink: Float[Tensor, "V H W 1"],
        targets: Float[Tensor, "V H W 3"],
        keys: Optional[Sequence[Hashable]] = None,
    ) -> Tensor:
        """``1 - cos(G_s * ink, G_s * edges)``, averaged over scales ``s`` and views."""
        assert ink.shape[:3] == targets.shape[:3], (ink.shape, targets.shape)
        unit = view_pixels(*ink.shape[1:3])
        edges = torch.stack(
            [self.blurred_edges(targets[v], keys[v] if keys is not None else None) for v in range(ink.shape[0])]
        )  # [V, S, H, W]
        drawn = torch.stack([gaussian_blur(ink[..., 0], s * unit) for s in self.scales], dim=1)
        cosine = F.cosine_similarity(drawn.flatten(2), edges.flatten(2), dim=-1, eps=1e-8)  # [V, S]
        return (1.0 - cosine).mean()

    def balanced_loss(
        self,
        rgb: Float[Tensor, "V H W 3"],
        ink: Float[Tensor, "V H W 1"],
        targets: Float[Tensor, "V H W 3"],
        keys: Optional[Sequence[Hashable]],
        ink_colour: Float[Tensor, "3"],
        with_clip: bool,
    ) -> Tensor:
        """:meth:`loss` scaled so that its gradient on the ink is ``weight`` times CLIP's on the render ``rgb``
        (``ink_colour``: stroke minus paper colour, how ink changes the render). Without CLIP terms (``with_clip``
        False) the scale is the weight itself."""
        ink = ink * 1.0  # a node of its own: its gradient is this term's alone
        if not with_clip:
            return self.balance.weight * self.loss(ink, targets, keys)
        scale = self.balance.scale().to(ink)
        self.balance.watch(rgb, ink, scale, direction=ink_colour)
        return scale * self.loss(ink, targets, keys)
