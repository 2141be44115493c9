import pytest
import torch

from nerfstudio_clipsketch.cameras import get_viewmats
from nerfstudio_clipsketch.rendering import render
from nerfstudio_clipsketch.strokes import stroke_sigma
from tests.helpers import look_at


def pinhole(fx, fy, cx, cy, dtype=torch.float32):
    return torch.tensor([[[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]], dtype=dtype)


def identity_view(dtype=torch.float32):
    return torch.eye(4, dtype=dtype)[None]


def one_gaussian(x, y, z, sigma=0.01, dtype=torch.float32):
    means = torch.tensor([[x, y, z]], dtype=dtype)
    return means, torch.tensor([sigma], dtype=dtype), torch.ones(1, dtype=dtype), torch.zeros(1, 3, dtype=dtype)


def test_known_point_lands_on_known_pixel():
    W, H, f = 40, 30, 50.0
    K = pinhole(f, f, W / 2, H / 2)
    # u = f x / z + cx = 12.5 is the centre of pixel column 12; v = 20.5 is the centre of row 20.
    z = 2.0
    x, y = (12.5 - W / 2) * z / f, (20.5 - H / 2) * z / f
    means, scales, opac, col = one_gaussian(x, y, z, sigma=0.04)  # 1 px
    out = render(means, scales, opac, col, identity_view(), K, W, H, torch.ones(3))
    alpha = out.alpha[0, :, :, 0]
    row, column = divmod(int(alpha.argmax()), W)
    assert (row, column) == (20, 12)
    # Symmetric around the pixel centre: the neighbours left/right and up/down get equal alpha.
    torch.testing.assert_close(alpha[20, 11], alpha[20, 13])
    torch.testing.assert_close(alpha[19, 12], alpha[21, 12])
    assert out.depth[0, 20, 12, 0].item() == pytest.approx(z, rel=1e-5)
    assert out.rgb[0, 20, 12].max() < 0.5 and out.rgb[0, 0, 0].min() == 1.0  # dark stroke on white


def test_opengl_camera_to_world_conversion_places_points_like_a_pinhole():
    W = H = 32
    K = pinhole(40.0, 40.0, 16.0, 16.0)
    c2w = look_at((0.0, -3.0, 0.0), (0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)).float()
    viewmat = get_viewmats(c2w[None])
    # World +x is image right and +z image up: (0.3375, 0, 0.4875) projects to u = 20.5, v = 9.5, the centre of
    # pixel column 20, row 9.
    means, scales, opac, col = one_gaussian(0.3375, 0.0, 0.4875, sigma=0.05)
    out = render(means, scales, opac, col, viewmat, K, W, H, torch.ones(3))
    row, column = divmod(int(out.alpha[0, :, :, 0].argmax()), W)
    assert (column, row) == (20, 9)


def test_nearer_strokes_occlude_farther_ones():
    W = H = 16
    K = pinhole(20.0, 20.0, 8.0, 8.0)
    means = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 2.0]])
    scales = torch.tensor([0.15, 0.3])  # both 3 px on screen: the same footprint
    colors = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    out = render(means, scales, torch.ones(2), colors, identity_view(), K, W, H, torch.zeros(3))
    centre = out.rgb[0, 8, 8]
    assert centre[0] > 0.9 and centre[2] < 0.1
    assert out.depth[0, 8, 8, 0].item() == pytest.approx(1.0, abs=0.1)  # expected depth: mostly the near one
    # Swap which one is nearer: now blue wins, whatever the order of the input.
    out = render(means.flip(0), scales.flip(0), torch.ones(2), colors, identity_view(), K, W, H, torch.zeros(3))
    assert out.rgb[0, 8, 8, 2] > 0.9


def test_behind_camera_and_outside_image_draw_nothing():
    K = pinhole(20.0, 20.0, 8.0, 8.0)
    means = torch.tensor([[0.0, 0.0, -1.0], [50.0, 0.0, 1.0]])
    out = render(means, torch.full((2,), 0.05), torch.ones(2), torch.zeros(2, 3), identity_view(), K, 16, 16,
                 torch.ones(3))
    assert out.alpha.abs().max() == 0
    torch.testing.assert_close(out.rgb, torch.ones_like(out.rgb))


def test_several_cameras_batch_like_single_ones():
    g = torch.Generator().manual_seed(0)
    means = torch.randn(50, 3, generator=g) * 0.3
    scales, opac, col = torch.full((50,), 0.02), torch.full((50,), 0.8), torch.rand(50, 3, generator=g)
    c2ws = torch.stack([look_at((3.0, 0.0, 1.0)), look_at((0.0, 3.0, -1.0))]).float()
    viewmats, Ks = get_viewmats(c2ws), pinhole(30.0, 30.0, 12.0, 10.0).expand(2, 3, 3)
    both = render(means, scales, opac, col, viewmats, Ks, 24, 20, torch.ones(3))
    for i in range(2):
        one = render(means, scales, opac, col, viewmats[i : i + 1], Ks[i : i + 1], 24, 20, torch.ones(3))
        torch.testing.assert_close(both.rgb[i], one.rgb[0])
        torch.testing.assert_close(both.alpha[i], one.alpha[0])


def test_gradients_match_finite_differences():
    g = torch.Generator().manual_seed(1)
    N, W, H = 6, 12, 10
    K = pinhole(15.0, 15.0, 6.0, 5.0, dtype=torch.float64)
    means = (torch.rand(N, 3, generator=g, dtype=torch.float64) - 0.5) * torch.tensor([0.6, 0.6, 0.5]) + torch.tensor(
        [0.0, 0.0, 2.0]
    )
    scales = torch.full((N,), 0.08, dtype=torch.float64)
    opac = torch.full((N,), 0.7, dtype=torch.float64)
    colors = torch.rand(N, 3, generator=g, dtype=torch.float64)
    weights = torch.rand(1, H, W, 3, generator=g, dtype=torch.float64)
    bg = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)

    def f(m, c, s):
        out = render(m, s, opac, c, identity_view(torch.float64), K, W, H, bg)
        return (out.rgb * weights).sum() + out.alpha.sum() + (out.depth * out.alpha).sum()

    inputs = (means.clone().requires_grad_(), colors.clone().requires_grad_(), scales.clone().requires_grad_())
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_stroke_sigma_is_full_width_at_half_maximum():
    sigma = stroke_sigma(2.0)
    assert torch.exp(torch.tensor(-0.5 * (1.0 / sigma) ** 2)).item() == pytest.approx(0.5)


def test_bad_backend_and_shapes():
    means, scales, opac, col = one_gaussian(0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="backend"):
        render(means, scales, opac, col, identity_view(), pinhole(1, 1, 1, 1), 4, 4, torch.ones(3), backend="nope")
    with pytest.raises(ValueError, match="CUDA"):
        render(means, scales, opac, col, identity_view(), pinhole(1, 1, 1, 1), 4, 4, torch.ones(3), backend="gsplat")
    with pytest.raises(AssertionError):
        render(means[0], scales, opac, col, identity_view(), pinhole(1, 1, 1, 1), 4, 4, torch.ones(3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="No CUDA device")
def test_gsplat_matches_torch_renderer():
    g = torch.Generator().manual_seed(0)
    N, W, H = 400, 64, 48
    means = (torch.rand(N, 3, generator=g) - 0.5) * torch.tensor([1.0, 0.8, 0.5]) + torch.tensor([0.0, 0.0, 2.5])
    scales = torch.full((N,), 0.01)
    opac = torch.full((N,), 0.9)
    colors = torch.rand(N, 3, generator=g)
    K = pinhole(60.0, 60.0, W / 2, H / 2)
    args = (means, scales, opac, colors, identity_view(), K, W, H, torch.ones(3))
    ref = render(*args, backend="torch")
    out = render(*(a.cuda() if torch.is_tensor(a) else a for a in args), backend="gsplat")
    torch.testing.assert_close(out.alpha.cpu(), ref.alpha, atol=2e-2, rtol=0)
    torch.testing.assert_close(out.rgb.cpu(), ref.rgb, atol=2e-2, rtol=0)
