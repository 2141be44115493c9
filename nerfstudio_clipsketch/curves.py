"""Bézier curves in 3D and the Gaussian centres sampled along them.

The only learned tensor of a sketch is ``control_points: [num_curves, degree + 1, 3]``. Gaussian centres are the
curves evaluated at fixed parameters (:func:`evaluate_at`: sample ``k`` is curve ``curve_index[k]`` at ``t[k]``);
those parameters are chosen evenly in arc length by :func:`arc_length_samples`, which runs between optimisation steps
(outside the autograd graph), so the training step itself has a fixed number of Gaussians and no host
synchronisation.

:func:`allocate_samples` and :func:`sample_curves` are the one way curves become points for everything else: evenly
in arc length, either a fixed count per curve (polylines, tubes, SVG paths) or a total shared in proportion to length
(metrics, where a share of points is then a share of length).
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
from jaxtyping import Float, Int
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


def evaluate_at(
    control_points: Float[Tensor, "num_curves degree_plus_one dim"],
    curve_index: Int[Tensor, "num_samples"],
    t: Float[Tensor, "num_samples"],
) -> Float[Tensor, "num_samples dim"]:
    """Points at parameter ``t[k]`` of curve ``curve_index[k]``: a flat set of samples, any number per curve."""
    degree = control_points.shape[-2] - 1
    basis = bernstein_basis(t.to(control_points.dtype), degree)  # [N, D+1]
    return torch.einsum("nk,nkd->nd", basis, control_points[curve_index])


@torch.no_grad()
def arc_length_samples(
    control_points: Float[Tensor, "num_curves degree_plus_one dim"],
    counts: Int[Tensor, "num_curves"],
    resolution: int = 256,
) -> Tuple[Int[Tensor, "num_samples"], Float[Tensor, "num_samples"]]:
    """``counts[c]`` parameters per curve ``c`` that place its samples evenly in arc length, both ends included
    (a curve with one sample gets its start). Returns ``(curve_index, t)``, flat and grouped by curve.

    The arc length is tabulated on a fine polyline and inverted by piecewise-linear interpolation, which is exact to
    within the polyline's error (O(1/resolution^2) for smooth curves). Degenerate curves (zero length) fall back to
    uniform ``t``. Runs outside the autograd graph; the number of samples is ``counts.sum()``, read once.
    """
    cp = control_points.detach()
    counts = torch.as_tensor(counts, device=cp.device).long()
    if counts.shape != (cp.shape[0],):
        raise ValueError(f"counts must have one entry per curve ({cp.shape[0]}), got shape {tuple(counts.shape)}")
    if bool((counts < 1).any()):
        raise ValueError(f"every curve needs at least one sample, got counts {counts.tolist()}")
    total_samples = int(counts.sum())
    t_fine = torch.linspace(0, 1, resolution + 1, device=cp.device, dtype=cp.dtype)
    points = evaluate(cp, t_fine)
    seg = (points[:, 1:] - points[:, :-1]).norm(dim=-1)  # [C, R]
    cum = torch.cat([torch.zeros_like(seg[:, :1]), seg.cumsum(-1)], dim=-1)  # [C, R+1]
    curves_range = torch.arange(cp.shape[0], device=cp.device)
    curve_index = torch.repeat_interleave(curves_range, counts, output_size=total_samples)
    first = torch.cumsum(counts, 0) - counts
    local = torch.arange(total_samples, device=cp.device) - first[curve_index]
    uniform = local.to(cp.dtype) / (counts[curve_index] - 1).clamp_min(1).to(cp.dtype)  # [N] in [0, 1]
    rows = cum[curve_index]  # [N, R+1]
    total = rows[:, -1]
    target = uniform * total
    idx = torch.searchsorted(rows.contiguous(), target[:, None].contiguous()).squeeze(-1).clamp(1, resolution)
    lo, hi = rows.gather(1, (idx - 1)[:, None])[:, 0], rows.gather(1, idx[:, None])[:, 0]
    frac = ((target - lo) / (hi - lo).clamp_min(torch.finfo(cp.dtype).tiny)).clamp(0, 1)
    t = (t_fine[idx - 1] + frac * (t_fine[idx] - t_fine[idx - 1])).clamp(0, 1)
    degenerate = total <= torch.finfo(cp.dtype).eps
    return curve_index, torch.where(degenerate, uniform, t)


@torch.no_grad()
def arc_length_parameters(
    control_points: Float[Tensor, "num_curves degree_plus_one dim"], num_samples: int, resolution: int = 256
) -> Float[Tensor, "num_curves num_samples"]:
    """``num_samples`` parameters per curve, evenly in arc length, both ends included (:func:`arc_length_samples`
    with the same count for every curve)."""
    if num_samples < 2:
        raise ValueError(f"samples per curve must be at least 2, got {num_samples}")
    num_curves = control_points.shape[0]
    counts = torch.full((num_curves,), num_samples, dtype=torch.long, device=control_points.device)
    _, t = arc_length_samples(control_points, counts, resolution)
    return t.reshape(num_curves, num_samples)


def allocate_samples(
    lengths: Float[Tensor, "num_curves"], total: int, minimum: int = 2
) -> Int[Tensor, "num_curves"]:
    """Share ``total`` samples among curves in proportion to their lengths, at least ``minimum`` each, summing to
    ``total`` exactly (largest remainders get the spare ones). Curves of zero total length share evenly."""
    num_curves = lengths.shape[0]
    if total < minimum * num_curves:
        raise ValueError(f"{total} samples cannot give {num_curves} curves {minimum} each")
    lengths = lengths.detach().double().cpu().clamp_min(0)
    spare = total - minimum * num_curves
    weights = lengths / lengths.sum() if float(lengths.sum()) > 0 else torch.full_like(lengths, 1.0 / num_curves)
    exact = weights * spare
    counts = exact.floor().long()
    remainder = spare - int(counts.sum())
    if remainder > 0:
        counts[torch.argsort(exact - counts, descending=True, stable=True)[:remainder]] += 1
    return counts + minimum


def sample_curves(
    control_points: Float[Tensor, "num_curves degree_plus_one 3"],
    samples_per_curve: int,
    by_length: bool = False,
) -> Float[Tensor, "num_samples 3"]:
    """Points evenly in arc length along every curve, both ends included, grouped by curve (differentiable in the
    control points).

    ``samples_per_curve`` each (``[C * S, 3]``, reshape to ``[C, S, 3]``), or with ``by_length`` about ``C * S`` in
    all shared in proportion to the curves' lengths (:func:`allocate_samples`), so that a share of the points is a
    share of the length and a curve shrunk to a dot weighs next to nothing.
    """
    if samples_per_curve < 2:
        raise ValueError(f"samples per curve must be at least 2, got {samples_per_curve}")
    num_curves = control_points.shape[0]
    if by_length:
        counts = allocate_samples(curve_lengths(control_points), num_curves * samples_per_curve)
    else:
        counts = torch.full((num_curves,), samples_per_curve, dtype=torch.long)
    curve_index, t = arc_length_samples(control_points, counts.to(control_points.device))
    return evaluate_at(control_points, curve_index, t)
