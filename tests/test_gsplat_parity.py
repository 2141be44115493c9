"""The gsplat call checked without a GPU: what :func:`nerfstudio_clipsketch.rendering.render` hands
``gsplat.rasterization`` (:func:`~nerfstudio_clipsketch.rendering.gsplat_arguments`) goes through gsplat's own
pure-torch reference projection (``gsplat.cuda._torch_impl``: EWA with the Jacobian clamp, eps2d, the antialiasing
compensation, the near plane), which must give our CPU projection's 2D means, depths, conics, opacities and radii.
gsplat's reference rasterizer needs CUDA (and nerfacc), so the images themselves are compared only on a GPU."""

import math

import pytest
import torch

from nerfstudio_clipsketch.cameras import get_viewmats
from nerfstudio_clipsketch.rendering import gsplat_arguments, project_isotropic, render
from tests.helpers import look_at

torch_impl = pytest.importorskip("gsplat.cuda._torch_impl")


def scene(num_cameras=3, n=300, seed=0, width=64, height=48):
    """Gaussians around the origin, some behind the near plane of a camera and some outside its view, seen by
    cameras on a circle (nerfstudio's camera-to-world matrices turned into viewmats as the model does)."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) - 0.5) * 2.5
    scales = 0.005 + 0.03 * torch.rand(n, generator=g)
    opacities = 0.2 + 0.8 * torch.rand(n, generator=g)
    colors = torch.rand(n, 3, generator=g)
    c2w = torch.stack(
        [look_at((2.0 * math.cos(a), 2.0 * math.sin(a), 0.7)) for a in torch.linspace(0.3, 4.0, num_cameras).tolist()]
    )
    viewmats = get_viewmats(c2w.float())
    Ks = torch.tensor([[70.0, 0.0, width / 2 + 1.5], [0.0, 66.0, height / 2 - 2.0], [0.0, 0.0, 1.0]]).expand(
        num_cameras, 3, 3
    )
    return means, scales, opacities, colors, viewmats, Ks.contiguous(), width, height


def reference_projection(args: dict):
    """gsplat's pure-torch projection of the arguments :func:`gsplat_arguments` made, as ``rasterization`` runs it."""
    covars, _ = torch_impl._quat_scale_to_covar_preci(
        args["quats"], args["scales"], compute_covar=True, compute_preci=False, triu=False
    )
    radii, means2d, depths, conics, compensations = torch_impl._fully_fused_projection(
        args["means"], covars, args["viewmats"], args["Ks"], args["width"], args["height"], eps2d=args["eps2d"],
        near_plane=args["near_plane"], calc_compensations=args["rasterize_mode"] == "antialiased",
    )  # fmt: skip
    opacities = args["opacities"][None].expand_as(depths)
    if compensations is not None:
        opacities = opacities * compensations
    return radii, means2d, depths, conics, opacities


def compare(inputs: tuple, args: dict, eps2d: float, near_plane: float, antialiased: bool) -> None:
    """Our projection of the scene ``inputs`` against gsplat's reference projection of ``args`` (what we hand gsplat
    for them), for the Gaussians gsplat draws (radius > 0)."""
    means, scales, opacities, _, viewmats, Ks, width, height = inputs
    ours = project_isotropic(means, scales, opacities, viewmats, Ks, width, height, eps2d, near_plane, antialiased)
    radii, means2d, depths, conics, ref_opacities = reference_projection(args)
    drawn = radii > 0
    assert drawn.sum() > 50 and (~drawn).sum() > 0  # both kinds present: the comparison means something
    torch.testing.assert_close(ours.depths, depths)
    torch.testing.assert_close(ours.means2d[drawn], means2d[drawn], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(ours.conics[drawn], conics[drawn], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours.opacities[drawn], ref_opacities[drawn], rtol=1e-4, atol=1e-6)
    # gsplat's radius is the 3-sigma extent of the larger eigenvalue, rounded up; ours is the 1-sigma extent.
    torch.testing.assert_close(torch.ceil(3.0 * ours.radii[drawn]).int(), radii[drawn])
    # Gaussians gsplat culls for the near plane are culled by us too (ours keeps those outside the image: the CPU
    # rasterizer clips them to it).
    behind = depths <= near_plane
    assert behind.any() and (ours.radii[behind] == 0).all()


@pytest.mark.parametrize("antialiased", [True, False])
@pytest.mark.parametrize("eps2d", [0.3, 0.1])
def test_projection_handed_to_gsplat_matches_ours(antialiased, eps2d):
    inputs = scene()
    near_plane = 0.6  # some Gaussians lie nearer the cameras than this
    args = gsplat_arguments(*inputs, eps2d, near_plane, antialiased)
    assert args["render_mode"] == "RGB+ED" and args["rasterize_mode"] == ("antialiased" if antialiased else "classic")
    compare(inputs, args, eps2d, near_plane, antialiased)


@pytest.mark.parametrize(
    "mistake",
    ["viewmats transposed", "camera-to-world instead of viewmats", "eps2d dropped", "antialiasing dropped",
     "scales as variances", "near plane dropped"],
)  # fmt: skip
def test_parity_check_fails_on_a_wrong_call(mistake):
    """The comparison above can fail: each of these mistakes in what is handed to gsplat makes it fail."""
    inputs = scene()
    eps2d, near_plane = 0.3, 0.6
    args = gsplat_arguments(*inputs, eps2d, near_plane, True)
    if mistake == "viewmats transposed":
        args["viewmats"] = args["viewmats"].transpose(1, 2).contiguous()
    elif mistake == "camera-to-world instead of viewmats":
        args["viewmats"] = torch.linalg.inv(args["viewmats"])
    elif mistake == "eps2d dropped":
        args["eps2d"] = 0.0
    elif mistake == "antialiasing dropped":
        args["rasterize_mode"] = "classic"
    elif mistake == "scales as variances":
        args["scales"] = args["scales"] ** 2
    elif mistake == "near plane dropped":
        args["near_plane"] = 0.01
    with pytest.raises(AssertionError):
        compare(inputs, args, eps2d, near_plane, True)


def per_camera_scene():
    means, scales, opacities, colors, viewmats, Ks, width, height = scene(num_cameras=3, n=200)
    g = torch.Generator().manual_seed(5)
    per_camera = opacities[None] * (torch.rand(3, means.shape[0], generator=g) > 0.4)  # some hidden from each camera
    return means, scales, per_camera, colors, viewmats, Ks, width, height


@pytest.mark.skipif(not torch.cuda.is_available(), reason="No CUDA device")
def test_gsplat_per_camera_opacities_match_torch_renderer():
    """On CUDA, opacities per camera ([C, N], the occlusion's) go through gsplat one camera at a time: the images
    match the CPU rasterizer's."""
    means, scales, opacities, colors, viewmats, Ks, width, height = per_camera_scene()
    args = (means, scales, opacities, colors, viewmats, Ks, width, height, torch.ones(3))
    ref = render(*args, backend="torch")
    out = render(*(a.cuda() if torch.is_tensor(a) else a for a in args), backend="gsplat")
    torch.testing.assert_close(out.alpha.cpu(), ref.alpha, atol=2e-2, rtol=0)
    torch.testing.assert_close(out.rgb.cpu(), ref.rgb, atol=2e-2, rtol=0)
    drawn = ref.alpha > 0.5
    torch.testing.assert_close(out.depth.cpu()[drawn], ref.depth[drawn], atol=1e-2, rtol=1e-2)
