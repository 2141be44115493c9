"""The dense baseline of benchmarks/ renders what the pair-list renderer renders, so the benchmark compares like with
like."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from nerfstudio_clipsketch.rendering import render

_spec = importlib.util.spec_from_file_location(
    "dense_renderer", Path(__file__).resolve().parents[1] / "benchmarks" / "dense_renderer.py"
)
dense_renderer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dense_renderer)

WIDTH, HEIGHT = 40, 28


def _scene(dtype=torch.float32):
    """Two cameras around 60 overlapping Gaussians of 0.3-2.5 px, plus a stack of nearly opaque ones at one spot that
    drives the transmittance below the 1e-4 cut-off."""
    g = torch.Generator().manual_seed(0)
    n = 60
    x, y, z = torch.rand(3, n, generator=g)
    means = torch.stack([(x - 0.5) * 2.0, (y - 0.5) * 1.4, 4.0 + z], dim=-1)
    stack = torch.tensor([[0.3, 0.2, 4.0 + 0.2 * k] for k in range(6)])
    means = torch.cat([means, stack]).to(dtype)
    scales = torch.cat([0.02 + 0.15 * torch.rand(n, generator=g), torch.full((6,), 0.2)]).to(dtype)
    opacities = torch.cat([0.2 + 0.8 * torch.rand(n, generator=g), torch.ones(6)]).to(dtype)
    colors = torch.rand(n + 6, 3, generator=g).to(dtype)
    angle = math.radians(15.0)
    cos, sin = math.cos(angle), math.sin(angle)
    turn = torch.tensor([[cos, 0, -sin, 1.0], [0, 1, 0, 0], [sin, 0, cos, 0.2], [0, 0, 0, 1]])
    viewmats = torch.stack([torch.eye(4), turn]).to(dtype)
    K = torch.tensor([[45.0, 0, WIDTH / 2], [0, 45.0, HEIGHT / 2], [0, 0, 1]])
    Ks = K.expand(2, 3, 3).to(dtype)
    background = torch.tensor([1.0, 1.0, 1.0], dtype=dtype)
    return means, scales, opacities, colors, viewmats, Ks, background


@pytest.mark.parametrize("antialiased", [True, False])
def test_dense_renderer_matches_pair_renderer(antialiased):
    means, scales, opacities, colors, viewmats, Ks, background = _scene()
    args = (means, scales, opacities, colors, viewmats, Ks, WIDTH, HEIGHT, background)
    pair = render(*args, antialiased=antialiased, backend="torch")
    dense = dense_renderer.render_dense(*args, antialiased=antialiased)
    # The scene must exercise compositing: overlaps and the early stop under the opaque stack.
    assert (pair.alpha > 0.5).sum() > 50
    assert pair.alpha.max() > 0.999
    # Both compute the same float32 expression per (pixel, Gaussian) with the same skip and stop rules; they differ
    # only in how transmittance is formed (a float32 cumprod against exp of a float64 cumsum of float32 logs), a few
    # ulps per factor over at most ~10 overlapping factors here: 1e-5 is ~100x float32 epsilon.
    torch.testing.assert_close(dense.rgb, pair.rgb, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dense.alpha, pair.alpha, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dense.depth, pair.depth, rtol=1e-5, atol=1e-4)


def test_dense_renderer_gradients_match_pair_renderer():
    means, scales, opacities, colors, viewmats, Ks, background = _scene(torch.float64)
    target = torch.rand(2, HEIGHT, WIDTH, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = []
    for fn in (lambda *a: render(*a, backend="torch"), dense_renderer.render_dense):
        leaves = [t.clone().requires_grad_(True) for t in (means, opacities, colors)]
        out = fn(leaves[0], scales, leaves[1], leaves[2], viewmats, Ks, WIDTH, HEIGHT, background)
        ((out.rgb - target) ** 2).mean().backward()
        grads.append([leaf.grad for leaf in leaves])
    # In float64 the two differ only by rounding, so the gradients must agree to near machine precision.
    for dense_grad, pair_grad in zip(grads[1], grads[0]):
        assert pair_grad.abs().sum() > 0
        torch.testing.assert_close(dense_grad, pair_grad, rtol=1e-9, atol=1e-12)
