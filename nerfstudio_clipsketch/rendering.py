"""Rendering isotropic, fixed-appearance Gaussians: gsplat on CUDA, a pure-PyTorch rasterizer elsewhere.

Both backends follow gsplat's conventions, so a sketch renders the same wherever it runs:

- cameras are ``viewmats: [C, 4, 4]`` world-to-camera matrices in OpenCV axes (x right, y down, z forward) and
  pinhole intrinsics ``Ks: [C, 3, 3]``; pixel ``(i, j)`` has its centre at ``(i + 0.5, j + 0.5)``;
- the 2D covariance is the EWA projection plus ``eps2d`` on the diagonal; with ``antialiased=True`` the opacity is
  scaled by ``sqrt(det(cov) / det(cov + eps2d I))`` (gsplat's ``rasterize_mode="antialiased"``), which keeps strokes
  of 1-2 px from flickering or thickening as they shrink below a pixel;
- per pixel, Gaussians are composited front to back by camera depth with ``alpha = min(0.999, o exp(-q/2))``; a
  Gaussian with ``alpha < 1/255`` is skipped and compositing stops before transmittance falls to ``1e-4``;
- depth is the expected depth (gsplat's ``"RGB+ED"``): the alpha-weighted camera ``z`` divided by the alpha.

The CPU rasterizer works on a list of (pixel, Gaussian) pairs — only pixels within reach of each Gaussian — sorted
by pixel then depth, with transmittance from a segmented cumulative sum of ``log(1 - alpha)``. Memory and time grow
with the number of pairs (roughly the inked area times the overlap), not with ``H * W * N`` as a dense renderer's do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_clipsketch.cameras import project_points

ALPHA_MAX = 0.999
ALPHA_MIN = 1.0 / 255.0
TRANSMITTANCE_MIN = 1e-4

Backend = Literal["auto", "gsplat", "torch"]


@dataclass
class RenderOutput:
    """What :func:`render` returns, one image per camera."""

    rgb: Float[Tensor, "num_cameras height width 3"]
    """The strokes composited over the background colour."""
    alpha: Float[Tensor, "num_cameras height width 1"]
    """Accumulated opacity of the strokes."""
    depth: Float[Tensor, "num_cameras height width 1"]
    """Expected camera-space depth of the strokes (0 where nothing is drawn)."""


@dataclass
class ProjectedGaussians:
    """Screen-space Gaussians for every camera: ``[C, N, ...]``."""

    means2d: Float[Tensor, "num_cameras num_gaussians 2"]
    depths: Float[Tensor, "num_cameras num_gaussians"]
    conics: Float[Tensor, "num_cameras num_gaussians 3"]
    """Upper triangle ``(a, b, c)`` of the inverse 2D covariance."""
    opacities: Float[Tensor, "num_cameras num_gaussians"]
    """Opacity after the antialiasing compensation."""
    radii: Float[Tensor, "num_cameras num_gaussians"]
    """Square root of the larger eigenvalue of the 2D covariance, in pixels (0 for culled Gaussians)."""


def project_isotropic(
    means: Float[Tensor, "num_gaussians 3"],
    scales: Float[Tensor, "num_gaussians"],
    opacities: Float[Tensor, "*num_cameras num_gaussians"],
    viewmats: Float[Tensor, "num_cameras 4 4"],
    Ks: Float[Tensor, "num_cameras 3 3"],
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    antialiased: bool = True,
) -> ProjectedGaussians:
    """EWA-project isotropic 3D Gaussians (standard deviation ``scales``) into every camera, as gsplat does."""
    uv, z = project_points(means, viewmats, Ks, near_plane)
    in_front = z > near_plane
    z_safe = torch.where(in_front, z, torch.ones_like(z))
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    u, v = uv.unbind(-1)
    # gsplat clamps the Jacobian's x/z and y/z to 30 % of the half field of view beyond the image, so that Gaussians
    # far outside it do not get huge footprints (gsplat's persp_proj: tan_fov = 0.5 * width / fx).
    margin_x, margin_y = 0.3 * 0.5 * width / fx, 0.3 * 0.5 * height / fy
    lim_x_pos, lim_x_neg = (width - cx) / fx + margin_x, cx / fx + margin_x
    lim_y_pos, lim_y_neg = (height - cy) / fy + margin_y, cy / fy + margin_y
    tx = z_safe * torch.minimum(lim_x_pos, torch.maximum(-lim_x_neg, (u - cx) / fx))
    ty = z_safe * torch.minimum(lim_y_pos, torch.maximum(-lim_y_neg, (v - cy) / fy))
    # For an isotropic Gaussian the camera-space covariance is s^2 I whatever the rotation, so cov2d = s^2 J J^T.
    j00, j02 = fx / z_safe, -fx * tx / z_safe**2
    j11, j12 = fy / z_safe, -fy * ty / z_safe**2
    s2 = scales[None, :] ** 2
    a = s2 * (j00**2 + j02**2)
    b = s2 * (j02 * j12)
    c = s2 * (j11**2 + j12**2)
    det_orig = a * c - b * b
    a, c = a + eps2d, c + eps2d
    det = a * c - b * b
    opac = opacities.expand_as(a)  # [N] for every camera, or [C, N] one set per camera
    if antialiased:
        opac = opac * torch.sqrt((det_orig / det).clamp_min(0.0))
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)
    mid = 0.5 * (a + c)
    lambda_max = mid + torch.sqrt((mid * mid - det).clamp_min(0.01))
    radii = torch.where(in_front & (det > 0), torch.sqrt(lambda_max), torch.zeros_like(lambda_max))
    return ProjectedGaussians(means2d=uv, depths=z, conics=conics, opacities=opac, radii=radii)


def _rasterize_torch(
    proj: ProjectedGaussians,
    colors: Float[Tensor, "num_gaussians 3"],
    width: int,
    height: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Front-to-back alpha compositing over (pixel, Gaussian) pairs. Returns summed colour, alpha and depth."""
    C, N = proj.depths.shape
    device = proj.depths.device
    num_pixels = C * height * width
    with torch.no_grad():
        # Reach of a Gaussian: the distance where o * exp(-q/2) drops below 1/255, which is what gsplat skips.
        log_reach = (255.0 * proj.opacities.detach()).clamp_min(1.0).log()
        reach = torch.sqrt(2.0 * log_reach) * proj.radii
        u, v = proj.means2d.detach().unbind(-1)
        x0 = torch.ceil(u - 0.5 - reach).clamp(0, width).long()
        x1 = torch.floor(u - 0.5 + reach).clamp(-1, width - 1).long()
        y0 = torch.ceil(v - 0.5 - reach).clamp(0, height).long()
        y1 = torch.floor(v - 0.5 + reach).clamp(-1, height - 1).long()
        nx, ny = (x1 - x0 + 1).clamp_min(0), (y1 - y0 + 1).clamp_min(0)
        counts = torch.where((reach > 0) & (proj.radii > 0), nx * ny, torch.zeros_like(nx)).flatten()  # [C*N]
        owner = torch.repeat_interleave(torch.arange(C * N, device=device), counts)  # [P]
        starts = torch.cumsum(counts, 0) - counts
        local = torch.arange(owner.numel(), device=device) - starts[owner]
        nx_o = nx.flatten()[owner]
        px = x0.flatten()[owner] + local % nx_o
        py = y0.flatten()[owner] + torch.div(local, nx_o, rounding_mode="floor")
        cam = torch.div(owner, N, rounding_mode="floor")
        pixel = (cam * height + py) * width + px
        # Sort by pixel, then by depth within the pixel (ties keep index order, as gsplat's stable sort does).
        depth_rank = torch.empty_like(proj.depths, dtype=torch.long)
        depth_rank.scatter_(1, torch.argsort(proj.depths.detach(), dim=1, stable=True), torch.arange(N).expand(C, N))
        order = torch.argsort(pixel * N + depth_rank.flatten()[owner])
        owner, pixel, px, py = owner[order], pixel[order], px[order], py[order]

    mean2d = proj.means2d.reshape(-1, 2)[owner]
    conic = proj.conics.reshape(-1, 3)[owner]
    dx = mean2d[:, 0] - (px.to(mean2d.dtype) + 0.5)
    dy = mean2d[:, 1] - (py.to(mean2d.dtype) + 0.5)
    q = conic[:, 0] * dx * dx + 2.0 * conic[:, 1] * dx * dy + conic[:, 2] * dy * dy
    alpha = (proj.opacities.reshape(-1)[owner] * torch.exp(-0.5 * q)).clamp_max(ALPHA_MAX)
    visible = (alpha >= ALPHA_MIN) & (q >= 0)
    alpha = torch.where(visible, alpha, torch.zeros_like(alpha))

    # Transmittance before each pair: exp of the exclusive, per-pixel cumulative sum of log(1 - alpha). The running
    # sum spans all pixels, so it is kept in float64 to subtract segment offsets without cancellation.
    log_t = torch.log1p(-alpha)
    running = torch.cumsum(log_t.double(), 0)
    exclusive = running - log_t.double()
    with torch.no_grad():
        first = torch.ones_like(pixel, dtype=torch.bool)
        first[1:] = pixel[1:] != pixel[:-1]
        seg_start = torch.cummax(torch.where(first, torch.arange(pixel.numel(), device=device), 0), 0).values
    transmittance = torch.exp((exclusive - exclusive[seg_start]).to(alpha.dtype))
    with torch.no_grad():
        composited = visible & (transmittance * (1.0 - alpha) > TRANSMITTANCE_MIN)
    weight = torch.where(composited, alpha * transmittance, torch.zeros_like(alpha))

    z = proj.depths.reshape(-1)[owner]
    rgb = torch.zeros(num_pixels, colors.shape[-1], device=device, dtype=weight.dtype)
    rgb = rgb.index_add(0, pixel, weight[:, None] * colors[owner % N])
    depth = torch.zeros(num_pixels, device=device, dtype=weight.dtype).index_add(0, pixel, weight * z)
    kept_log_t = torch.where(composited, log_t, torch.zeros_like(log_t))
    log_final = torch.zeros(num_pixels, device=device, dtype=weight.dtype).index_add(0, pixel, kept_log_t)
    alpha_img = 1.0 - torch.exp(log_final)
    return (
        rgb.reshape(C, height, width, -1),
        alpha_img.reshape(C, height, width, 1),
        depth.reshape(C, height, width, 1),
    )


def gsplat_arguments(
    means: Float[Tensor, "num_gaussians 3"],
    scales: Float[Tensor, "num_gaussians"],
    opacities: Float[Tensor, "num_gaussians"],
    colors: Float[Tensor, "num_gaussians 3"],
    viewmats: Float[Tensor, "num_cameras 4 4"],
    Ks: Float[Tensor, "num_cameras 3 3"],
    width: int,
    height: int,
    eps2d: float,
    near_plane: float,
    antialiased: bool,
) -> dict:
    """What :func:`render` hands ``gsplat.rasterization`` for isotropic Gaussians with one set of opacities (kept apart
    so that tests check it against gsplat's pure-torch reference projection, which runs without CUDA)."""
    quats = torch.zeros(means.shape[0], 4, device=means.device, dtype=means.dtype)
    quats[:, 0] = 1.0  # identity rotation (w, x, y, z): an isotropic Gaussian has none
    return dict(
        means=means.contiguous(),  # [N, 3]
        quats=quats,  # [N, 4]
        scales=scales[:, None].expand(-1, 3).contiguous(),  # [N, 3]
        opacities=opacities.contiguous(),  # [N]
        colors=colors.contiguous(),  # [N, 3]
        viewmats=viewmats.contiguous(),  # [C, 4, 4]
        Ks=Ks.contiguous(),  # [C, 3, 3]
        width=width,
        height=height,
        near_plane=near_plane,
        eps2d=eps2d,
        render_mode="RGB+ED",
        rasterize_mode="antialiased" if antialiased else "classic",
    )


def _render_gsplat(means, scales, opacities, colors, viewmats, Ks, width, height, eps2d, near_plane, antialiased):
    from gsplat import rasterization  # imported here: gsplat loads its CUDA kernels on first use

    args = gsplat_arguments(
        means, scales, opacities, colors, viewmats, Ks, width, height, eps2d, near_plane, antialiased
    )
    renders, alphas, _ = rasterization(**args)
    return renders[..., :3], alphas, renders[..., 3:4]


def render(
    means: Float[Tensor, "num_gaussians 3"],
    scales: Float[Tensor, "num_gaussians"],
    opacities: Float[Tensor, "*num_cameras num_gaussians"],
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
    backend: Backend = "auto",
) -> RenderOutput:
    """Render isotropic Gaussians into every camera and composite them over ``background``.

    Args:
        means: Gaussian centres in world coordinates.
        scales: Standard deviation of each (isotropic) Gaussian, in world units.
        opacities: Peak opacity of each Gaussian, in [0, 1]: ``[N]``, or ``[C, N]`` for a set per camera (e.g.
            Gaussians hidden from some cameras).
        colors: RGB colour of each Gaussian, in [0, 1].
        viewmats: World-to-camera matrices, OpenCV axes (see :func:`nerfstudio_clipsketch.cameras.get_viewmats`).
        Ks: Pinhole intrinsics.
        width, height: Image size in pixels.
        background: RGB colour behind the strokes.
        eps2d: Added to the 2D covariance's diagonal, in pixels squared (gsplat's default 0.3).
        near_plane: Gaussians closer to the camera than this are not drawn.
        antialiased: Use gsplat's antialiased opacity compensation (recommended for thin strokes).
        backend: ``"gsplat"`` (CUDA only), ``"torch"`` (anywhere) or ``"auto"``: gsplat for CUDA tensors.

    Returns:
        :class:`RenderOutput` with ``rgb``, ``alpha`` and ``depth``, each ``[C, H, W, *]``.
    """
    N, C = means.shape[0], viewmats.shape[0]
    assert means.shape == (N, 3), means.shape
    assert scales.shape == (N,), scales.shape
    assert opacities.shape in ((N,), (C, N)), opacities.shape
    assert colors.shape == (N, 3), colors.shape
    assert viewmats.shape == (C, 4, 4), viewmats.shape
    assert Ks.shape == (C, 3, 3), Ks.shape
    assert background.shape == (3,), background.shape
    if backend == "auto":
        backend = "gsplat" if means.is_cuda else "torch"
    if backend == "gsplat":
        if not means.is_cuda:
            raise ValueError("The gsplat backend needs CUDA tensors; use backend='torch' (or 'auto') on the CPU.")
        if opacities.dim() == 1:
            rgb, alpha, depth = _render_gsplat(
                means, scales, opacities, colors, viewmats, Ks, width, height, eps2d, near_plane, antialiased
            )
        else:  # gsplat takes one set of opacities for all cameras: one camera at a time
            args = (width, height, eps2d, near_plane, antialiased)
            per_camera = [
                _render_gsplat(means, scales, o, colors, v[None], k[None], *args)
                for o, v, k in zip(opacities, viewmats, Ks)
            ]
            rgb, alpha, depth = (torch.cat(parts) for parts in zip(*per_camera))
    elif backend == "torch":
        proj = project_isotropic(means, scales, opacities, viewmats, Ks, width, height, eps2d, near_plane, antialiased)
        rgb, alpha, depth = _rasterize_torch(proj, colors, width, height)
        depth = depth / alpha.clamp_min(1e-10)
    else:
        raise ValueError(f"Unknown render backend {backend!r}; expected 'auto', 'gsplat' or 'torch'.")
    rgb = rgb + (1.0 - alpha) * background
    return RenderOutput(rgb=rgb, alpha=alpha, depth=depth)
