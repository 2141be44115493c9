import math

import pytest
import torch

from nerfstudio_clipsketch import curves


def random_cp(num=5, degree=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(num, degree + 1, 3, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("degree", [1, 2, 3, 5])
def test_endpoints_are_first_and_last_control_points(degree):
    cp = random_cp(degree=degree)
    pts = curves.evaluate(cp, torch.tensor([0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(pts[:, 0], cp[:, 0])
    torch.testing.assert_close(pts[:, 1], cp[:, -1])


def test_cubic_matches_closed_form():
    cp = random_cp()
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    p0, p1, p2, p3 = cp.unbind(1)
    tt = t[None, :, None]
    expected = (
        (1 - tt) ** 3 * p0[:, None] + 3 * (1 - tt) ** 2 * tt * p1[:, None] + 3 * (1 - tt) * tt**2 * p2[:, None]
        + tt**3 * p3[:, None]
    )
    torch.testing.assert_close(curves.evaluate(cp, t), expected)


def test_derivative_matches_closed_form_and_end_tangents():
    cp = random_cp()
    t = torch.linspace(0, 1, 7, dtype=torch.float64)
    p0, p1, p2, p3 = cp.unbind(1)
    tt = t[None, :, None]
    expected = 3 * (1 - tt) ** 2 * (p1 - p0)[:, None] + 6 * (1 - tt) * tt * (p2 - p1)[:, None] + 3 * tt**2 * (
        p3 - p2
    )[:, None]
    torch.testing.assert_close(curves.evaluate_derivative(cp, t), expected)
    # B'(0) = n (P1 - P0), B'(1) = n (Pn - Pn-1)
    ends = curves.evaluate_derivative(cp, torch.tensor([0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(ends[:, 0], 3 * (p1 - p0))
    torch.testing.assert_close(ends[:, 1], 3 * (p3 - p2))


def test_derivative_of_a_line_is_constant():
    cp = random_cp(degree=1)
    d = curves.evaluate_derivative(cp, torch.linspace(0, 1, 4, dtype=torch.float64))
    torch.testing.assert_close(d, (cp[:, 1] - cp[:, 0])[:, None].expand_as(d))


def test_per_curve_parameters():
    cp = random_cp(num=2)
    t = torch.tensor([[0.0, 0.5], [0.25, 1.0]], dtype=torch.float64)
    pts = curves.evaluate(cp, t)
    torch.testing.assert_close(pts[1, 0], curves.evaluate(cp[1:], torch.tensor([0.25], dtype=torch.float64))[0, 0])


def test_arc_length_of_a_quarter_circle_approximation():
    # The standard cubic approximation of a unit quarter circle has length within 0.03 % of pi/2.
    k = 4 / 3 * (math.sqrt(2) - 1)
    cp = torch.tensor([[[1, 0, 0], [1, k, 0], [k, 1, 0], [0, 1, 0]]], dtype=torch.float64)
    assert curves.curve_lengths(cp, resolution=2048).item() == pytest.approx(math.pi / 2, rel=3e-4)


def test_arc_length_parameters_are_evenly_spaced():
    # Control points bunched at one end make uniform t very uneven in arc length.
    cp = torch.tensor([[[0, 0, 0], [0.01, 0, 0], [0.02, 0, 0], [1, 1, 0]]], dtype=torch.float64)
    cp = torch.cat([cp, random_cp(num=3)])
    t = curves.arc_length_parameters(cp, 20, resolution=4096)
    assert t.shape == (4, 20)
    torch.testing.assert_close(t[:, 0], torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(t[:, -1], torch.ones(4, dtype=torch.float64))
    # Spacing measured on a much finer polyline than the one used to invert the arc length.
    fine = torch.linspace(0, 1, 20001, dtype=torch.float64)
    for c in range(4):
        pts = curves.evaluate(cp[c : c + 1], fine)[0]
        cum = torch.cat([torch.zeros(1, dtype=torch.float64), (pts[1:] - pts[:-1]).norm(dim=-1).cumsum(0)])
        s = torch.from_numpy(__import__("numpy").interp(t[c].numpy(), fine.numpy(), cum.numpy()))
        gaps = s[1:] - s[:-1]
        assert gaps.std() / gaps.mean() < 1e-3, gaps
    uniform = torch.linspace(0, 1, 20, dtype=torch.float64)
    pts = curves.evaluate(cp[:1], uniform)[0]
    gaps = (pts[1:] - pts[:-1]).norm(dim=-1)
    assert gaps.std() / gaps.mean() > 0.3  # the case above really is uneven without re-spacing


def test_degenerate_curve_gets_uniform_parameters():
    cp = torch.zeros(1, 4, 3)
    t = curves.arc_length_parameters(cp, 5)
    torch.testing.assert_close(t, torch.linspace(0, 1, 5)[None])


def test_bad_degree_and_sample_count():
    with pytest.raises(ValueError, match="degree"):
        curves.bernstein_basis(torch.zeros(3), 0)
    with pytest.raises(ValueError, match="samples per curve"):
        curves.arc_length_parameters(random_cp(), 1)
