"""A dense O(H * W * N) Gaussian renderer: the baseline the pair-list renderer is measured against.

This is the kind of rasterizer the seed project (clipasso3d) used: every pixel is compared with every Gaussian, the
Gaussians are depth-sorted once per camera, and transmittance is a cumulative product along the Gaussian axis of an
``[H, W, N]`` tensor. Memory and time grow with ``H * W * N`` however few pixels the strokes actually cover.

To be a fair baseline it takes the same inputs and follows the same conventions as
:func:`nerfstudio_clipsketch.rendering.render` (it reuses :func:`~nerfstudio_clipsketch.rendering.project_isotropic`
for the EWA projection, ``eps2d`` and the antialiased opacity compensation, OpenCV viewmats, pixel centres at +0.5),
and it applies the same compositing rules: ``alpha = min(0.999, o exp(-q/2))``, Gaussians with ``alpha < 1/255`` are
skipped, and compositing stops before the transmittance falls to ``1e-4``. Up to floating-point rounding it therefore
renders the same images as the pair-list renderer.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_clipsketch.rendering import (
    ALPHA_MAX,
    ALPHA_MIN,
    TRANSMITTANCE_MIN,
    RenderOutput,
    project_isotropic,
)


def render_dense(
    means: Float[Tensor, "num_gaussians 3"],
    scales: Float[Tensor, "num_gaussians"],
    opacities: Float[Tensor, "num_gaussians"],
    colors: Float[Tensor, "num_gaussians 3"],
    viewmats: Float[Tensor, "num_cameras 4 4"],
    Ks: Float[Tensor, "num_cameras 3 3"],
    width: int,
    height: int,
    background: Float[Tensor, "3"],
    *,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    antialiased: bool = True,
) -> RenderOutput:
    """Render isotropic Gaussians densely; arguments and outputs as :func:`nerfstudio_clipsketch.rendering.render`.

    Each camera allocates several ``[H, W, N]`` tensors (and autograd keeps some for the backward pass): at 224 x 224
    and 2,000 Gaussians that is 400 MB each in float32.
    """
    N, C = means.shape[0], viewmats.shape[0]
    assert means.shape == (N, 3), means.shape
    assert scales.shape == (N,), scales.shape
    assert opacities.shape == (N,), opacities.shape
    assert colors.shape == (N, 3), colors.shape
    assert viewmats.shape == (C, 4, 4), viewmats.shape
    assert Ks.shape == (C, 3, 3), Ks.shape
    assert background.shape == (3,), background.shape
    proj = project_isotropic(means, scales, opacities, viewmats, Ks, width, height, eps2d, near_plane, antialiased)
    px = torch.arange(width, device=means.device, dtype=means.dtype) + 0.5
    py = torch.arange(height, device=means.device, dtype=means.dtype) + 0.5
    rgbs, alphas, depths = [], [], []
    for c in range(C):
        order = torch.argsort(proj.depths[c].detach(), stable=True)
        mean2d, conic = proj.means2d[c, order], proj.conics[c, order]  # [N, 2], [N, 3]
        opacity, z, radius = proj.opacities[c, order], proj.depths[c, order], proj.radii[c, order]
        dx = mean2d[:, 0] - px[None, :, None]  # [1, W, N]
        dy = mean2d[:, 1] - py[:, None, None]  # [H, 1, N]
        q = conic[:, 0] * dx * dx + 2.0 * conic[:, 1] * dx * dy + conic[:, 2] * dy * dy  # [H, W, N]
        alpha = (opacity * torch.exp(-0.5 * q)).clamp_max(ALPHA_MAX)
        visible = (alpha >= ALPHA_MIN) & (q >= 0) & (radius > 0)
        alpha = torch.where(visible, alpha, torch.zeros_like(alpha))
        transmittance_after = torch.cumprod(1.0 - alpha, dim=-1)
        transmittance = torch.cat([torch.ones_like(alpha[..., :1]), transmittance_after[..., :-1]], dim=-1)
        composited = visible & (transmittance_after > TRANSMITTANCE_MIN)
        weight = torch.where(composited, alpha * transmittance, torch.zeros_like(alpha))  # [H, W, N]
        rgbs.append(weight @ colors[order])
        # The weights of a front-to-back prefix sum to 1 - (its transmittance): the accumulated opacity.
        alphas.append(weight.sum(-1, keepdim=True))
        depths.append(weight @ z[:, None])
    alpha = torch.stack(alphas)
    depth = torch.stack(depths) / alpha.clamp_min(1e-10)
    rgb = torch.stack(rgbs) + (1.0 - alpha) * background
    return RenderOutput(rgb=rgb, alpha=alpha, depth=depth)
