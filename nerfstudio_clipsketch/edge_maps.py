"""The training views' edges: image gradients (silhouettes, creases and texture boundaries), normalised so every view's
strongest edges are 1, and the blurs that compare them with a sketch at a few scales. Used by the image structure term
(:mod:`nerfstudio_clipsketch.terms.edges`) and by the visual hull to score its surface points
(:mod:`nerfstudio_clipsketch.hull`). Sizes are given in pixels of a 224-pixel view (CLIP's input size), so nothing
here depends on the photos' resolution."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

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


@torch.no_grad()
def thin_edges(
    image: Float[Tensor, "H W 3"], low: float = 0.1, high: float = 0.2, percentile: float = 0.99
) -> Float[Tensor, "H W"]:
    """Where an RGB image in [0, 1] has edges, one pixel wide (1) and not (0): Canny's detector (OpenCV) on its
    luminance, smoothed as in :func:`edge_map`, its hysteresis thresholds ``low`` and ``high`` times the gradient
    magnitude's ``percentile`` over the pixels where it is not flat. Only local maxima across an edge survive, so the
    smooth shading of a cylinder or a fillet, which :func:`edge_map` marks as a broad band, leaves nothing: the visual
    hull scores its surface on these (:func:`nerfstudio_clipsketch.hull.edge_scores`)."""
    import cv2

    height, width = image.shape[:2]
    luma = (image[..., :3].float().cpu() * torch.tensor(LUMA)).sum(-1)
    smooth = gaussian_blur(luma[None], 0.5 * view_pixels(height, width))[0]
    grey = (smooth.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    magnitude = torch.from_numpy(cv2.magnitude(gx, gy))
    active = magnitude[magnitude > 1e-3]
    if active.numel() == 0:
        return torch.zeros(height, width)
    scale = float(torch.quantile(active[:: max(1, active.numel() // 100_000)], percentile))
    edges = cv2.Canny(grey, low * scale, high * scale, L2gradient=True)
    return torch.from_numpy(edges > 0).float()
