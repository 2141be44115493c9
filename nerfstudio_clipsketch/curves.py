"""Bézier curves in 3D and the Gaussian centres sampled along them.

The only learned tensor of a sketch is ``control_points: [num_curves, degree + 1, 3]``. Gaussian centres are the
curves evaluated at fixed parameters ``t: [num_curves, samples_per_curve]``; those parameters are chosen evenly in
arc length by :func:`arc_length_parameters`, which runs between optimisation steps (outside the autograd graph), so
the training step itself has a fixed number of Gaussians and no host synchronisation.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor


def bernstein_basis(t: Float[Tensor, "*batch"], degree: int) -> Float[Tensor, "*batch degree_plus_one"]:
    """Bernstein polynomials ``B_{i,n}(t) = C(n, i) t^i (1 - t)^(n - i)`` for ``i = 0..n``."""
    if degree < 1:
        raise ValueError(f"Bézier degree must be at least 1, got {degree}")
    i = torch.arange(degree + 1, device=t.device, dtype=t.dtype)
    binom = torch.tensor([math.comb(degree, k) for k in range(degree + 1)], device=t.device, dtype=t.dtype)
    t = t.unsqueeze(-1)
    return binom * t**i * (1 - t) ** (degree - i)


def evaluate(
    control_points: Float[Tensor, "num_curves degree_plus_one dim"], t: Float[Tensor, "*num_curves num_samples"]
) -> Float[Tensor, "num_curves num_samples dim"]:
    """Points on each curve at parameters ``t`` (shared ``[S]`` or per curve ``[C, S]``)."""
    degree = control_points.shape[-2] - 1
    basis = bernstein_basis(t.to(control_points.dtype), degree)  # [(C,) S, D+1]
    if basis.dim() == 2:
        return torch.einsum("sk,ckd->csd", basis, control_points)
    return torch.einsum("csk,ckd->csd", basis, control_points)


def derivative_control_points(
    control_points: Float[Tensor, "num_curves degree_plus_one dim"],
) -> Float[Tensor, "num_curves degree dim"]:
    """Control points of the hodograph: ``B'(t)`` is a Bézier curve of degree ``n - 1`` with these points."""
    degree = control_points.shape[-2] - 1
    return degree * (control_points[:, 1:] - control_points[:, :-1])


def evaluate_derivative(
    control_points: Float[Tensor, "num_curves degree_plus_one dim"], t: Float[Tensor, "*num_curves num_samples"]
) -> Float[Tensor, "num_curves num_samples dim"]:
    """Tangent vectors ``dB/dt`` at parameters ``t``."""
    hodograph = derivative_control_points(control_points)
    if hodograph.shape[-2] == 1:  # a straight segment: constant tangent
        shape = (control_points.shape[0], t.shape[-1], control_points.shape[-1])
        return hodograph.expand(shape)
    return evaluate(hodograph, t)


@torch.no_grad()
def curve_lengths(
    control_points: Float[Tensor, "num_curves degree_plus_one dim"], resolution: int = 256
) -> Float[Tensor, "num_curves"]:
    """Arc length of each curve, from a polyline of ``resolution`` segments."""
    t = torch.linspace(0, 1, resolution + 1, device=control_points.device, dtype=control_points.dtype)
    points = evaluate(control_points, t)
    return (points[:, 1:] - points[:, :-1]).norm(dim=-1).sum(-1)


@torch.no_grad()
def arc_length_parameters(
    control_points: Float[Tensor, "num_curves degree_plus_one dim"], num_samples: int, resolution: int = 256
) -> Float[Tensor, "num_curves num_samples"]:
    """Parameters ``t`` that place ``num_samples`` points evenly in arc length along each curve, both ends included.

    The arc length is tabulated on a fine polyline and inverted by piecewise-linear interpolation, which is exact to
    within the polyline's error (O(1/resolution^2) for smooth curves). Degenerate curves (zero length) fall back to
    uniform ``t``.
    """
    if num_samples < 2:
        raise ValueError(f"samples per curve must be at least 2, got {num_samples}")
    cp = control_points.detach()
    num_curves = cp.shape[0]
    t_fine = torch.linspace(0, 1, resolution + 1, device=cp.device, dtype=cp.dtype)
    points = evaluate(cp, t_fine)
    seg = (points[:, 1:] - points[:, :-1]).norm(dim=-1)  # [C, R]
    cum = torch.cat([torch.zeros_like(seg[:, :1]), seg.cumsum(-1)], dim=-1)  # [C, R+1]
    total = cum[:, -1:]
    uniform = torch.linspace(0, 1, num_samples, device=cp.device, dtype=cp.dtype).expand(num_curves, -1)
    target = uniform * total  # [C, S]
    idx = torch.searchsorted(cum.contiguous(), target.contiguous()).clamp(1, resolution)
    lo, hi = cum.gather(1, idx - 1), cum.gather(1, idx)
    frac = ((target - lo) / (hi - lo).clamp_min(torch.finfo(cp.dtype).tiny)).clamp(0, 1)
    t = (t_fine[idx - 1] + frac * (t_fine[idx] - t_fine[idx - 1])).clamp(0, 1)
    degenerate = total.squeeze(-1) <= torch.finfo(cp.dtype).eps
    return torch.where(degenerate[:, None], uniform, t)
