import pytest
import torch

from nerfstudio_clipsketch import curves
from nerfstudio_clipsketch.cameras import get_viewmats
from nerfstudio_clipsketch.model_config import ClipSketchConfigError
from nerfstudio_clipsketch.rendering import render
from nerfstudio_clipsketch.strokes import parse_color, stroke_sigma
from tests.helpers import make_model, ring_cameras


def test_outputs_for_one_and_several_cameras():
    model = make_model()
    cams = ring_cameras()
    model.setup_from_data(cams, background=torch.zeros(3))
    one = model.get_outputs_for_camera(cams[0:1])  # nerfstudio's boundary: one view, [H, W, *]
    assert one["rgb"].shape == (48, 48, 3) and one["accumulation"].shape == (48, 48, 1)
    assert one["depth"].shape == (48, 48, 1)
    several = model.get_outputs(cams[torch.tensor([0, 3, 5])])
    assert several["rgb"].shape == (3, 48, 48, 3)
    torch.testing.assert_close(several["rgb"][0], one["rgb"])
    # Dark background → light strokes, and something is drawn.
    torch.testing.assert_close(model.style.color, torch.ones(3))
    assert one["accumulation"].max() > 0.5


def test_only_control_points_are_learned_and_clip_is_not_saved(tiny_guidance):
    model = make_model(tiny_guidance)
    assert [n for n, p in model.named_parameters() if p.numel()] == ["curves.control_points"]
    assert list(model.get_param_groups()) == ["control_points"]
    assert not any("clip" in k or "visual" in k for k in model.state_dict())
    assert model.control_points.shape == (4, 4, 3)


def test_stroke_width_in_pixels_of_a_224_pixel_view_at_the_scene_centre():
    model = make_model(stroke_width=3.0)
    cams = ring_cameras(radius=3.0, focal=60.0, size=48)
    model.setup_from_data(cams)
    distance = cams.camera_to_worlds[:, :, 3].norm(dim=-1).median().item()  # the cameras look at the origin
    # 3 px of a 224-px view at that distance, seen by a 48-px camera with a 60 px focal length: 3 * 48 / 224 of its
    # pixels, each distance / 60 world units wide.
    expected = stroke_sigma(3.0 * 48 / 224) * distance / 60.0
    assert model.style.sigma().item() == pytest.approx(expected, rel=1e-4)


def test_strokes_take_the_same_share_of_the_view_at_any_resolution():
    """The same cameras at 4x the resolution: the same world width, so the ink covers about the same share of the
    image (sub-pixel strokes blur a little wider: 4 stroke pixels are 1.7 px of these 96-px views)."""
    small, large = ring_cameras(size=96, focal=120.0), ring_cameras(size=384, focal=480.0)
    models = []
    for cams in (small, large):
        model = make_model(stroke_width=4.0)
        model.setup_from_data(cams, background=torch.ones(3))
        models.append(model)
    torch.testing.assert_close(models[0].style.sigma(), models[1].style.sigma())
    ink = [m.get_outputs_for_camera(c[0:1])["accumulation"].mean().item() for m, c in zip(models, (small, large))]
    assert ink[0] > 0.005 and ink[1] == pytest.approx(ink[0], rel=0.25), ink


def test_sphere_init_is_around_the_point_the_cameras_look_at():
    centre = (5.0, -2.0, 1.0)
    model = make_model(init_radius=0.2)
    model.setup_from_data(ring_cameras(centre=centre))
    cp = model.world_control_points()
    assert ((cp - torch.tensor(centre)).norm(dim=-1) < 0.2 * 3.0 + 0.1 * 3.0).all()


def test_points_init_uses_the_dataparser_points():
    points = torch.randn(500, 3) * 0.05 + torch.tensor([0.5, 0.0, 0.0])
    model = make_model(init="auto")
    model.setup_from_data(ring_cameras(), points=points)
    cp = model.world_control_points()
    assert ((cp - torch.tensor([0.5, 0.0, 0.0])).norm(dim=-1) < 0.5).all()
    with pytest.raises(ClipSketchConfigError, match="init sphere"):
        make_model(init="points").setup_from_data(ring_cameras(), points=None)


def test_colours_and_bad_settings():
    assert parse_color("#ff8000", "x") == (1.0, 128 / 255, 0.0)
    assert parse_color("0.1, 0.2,0.3", "x") == (0.1, 0.2, 0.3)
    with pytest.raises(ClipSketchConfigError, match="'purple'.*#rrggbb"):
        make_model(stroke_color="purple")
    with pytest.raises(ClipSketchConfigError, match="num_curves"):
        make_model(num_curves=0)
    model = make_model(stroke_color="#ff0000", background_color="white")
    model.setup_from_data(ring_cameras(), background=torch.zeros(3))  # an explicit colour beats the data's
    torch.testing.assert_close(model.style.background, torch.ones(3))
    torch.testing.assert_close(model.style.color, torch.tensor([1.0, 0.0, 0.0]))


def test_a_capture_on_a_dark_backdrop_is_drawn_in_black_on_white_paper():
    """CLIPasso's setting: the photos' uniform backdrop becomes the white paper in the targets, strokes are black."""
    photo = torch.zeros(8, 8, 3)
    photo[2:6, 2:6] = torch.tensor([0.6, 0.05, 0.05])  # a red object on the photos' black backdrop
    model = make_model()
    model.setup_from_data(ring_cameras(), background=torch.zeros(3), uniform_background=True)
    torch.testing.assert_close(model.style.background, torch.ones(3))
    torch.testing.assert_close(model.style.color, torch.zeros(3))
    target = model.style.composite(photo)
    torch.testing.assert_close(target[0, 0], torch.ones(3))  # the backdrop became the paper
    torch.testing.assert_close(target[3, 3], photo[3, 3])  # the object is kept
    # Photos without a uniform backdrop keep their own background; explicit black paper is not repainted either.
    for kwargs, uniform in (({}, False), ({"background_color": "black"}, True)):
        model = make_model(**kwargs)
        model.setup_from_data(ring_cameras(), background=torch.zeros(3), uniform_background=uniform)
        torch.testing.assert_close(model.style.background, torch.zeros(3))
        torch.testing.assert_close(model.style.composite(photo), photo)


def test_loss_terms_and_gradients_reach_the_control_points(tiny_guidance):
    model = make_model(tiny_guidance)
    cams = ring_cameras()
    model.setup_from_data(cams, background=torch.ones(3))
    outputs = model.get_outputs(cams[0:1])
    assert outputs["rgb"].shape == (1, 48, 48, 3)  # one convention inside the model: [V, H, W, *]
    batch = {"image": torch.rand(1, 48, 48, 4), "image_idx": [0]}
    losses = model.get_loss_dict(outputs, batch)
    assert set(losses) == {"clip_layer1", "clip_layer2", "clip_layer3", "clip_fc", "edges"}
    sum(losses.values()).backward()
    assert model.control_points.grad is not None and model.control_points.grad.abs().sum() > 0


def test_resampling_keeps_gaussians_evenly_spaced(tiny_guidance):
    model = make_model()
    model.setup_from_data(ring_cameras())
    with torch.no_grad():
        model.control_points[:, 1] += torch.tensor([0.3, 0.0, 0.0])  # bend every curve: the old spacing is stale

    def unevenness():
        means = curves.evaluate_at(
            model.world_control_points().detach(), model.curves.sample_curve, model.curves.sample_t
        )
        worst = 0.0
        for c in range(model.control_points.shape[0]):
            points = means[model.curves.sample_curve == c]
            gaps = (points[1:] - points[:-1]).norm(dim=-1)
            worst = max(worst, (gaps.std() / gaps.mean()).item())
        return worst

    stale = unevenness()
    model.resample_gaussians(step=1)
    assert unevenness() < 0.1 < stale


def test_curves_move_toward_the_strokes_they_are_shown(tiny_guidance):
    """Views of one known curve, drawn as the model draws, pull a nearby, displaced curve toward it (tiny random
    CLIP, low layers, and the edge term)."""
    torch.manual_seed(0)
    cams = ring_cameras(n=8, size=48, focal=60.0)
    truth = torch.tensor([[[-0.6, -0.2, 0.0], [-0.2, 0.4, 0.2], [0.2, -0.4, 0.1], [0.6, 0.2, 0.0]]])
    model = make_model(tiny_guidance, num_curves=1, gaussians_per_curve=64, stroke_width=6.0, resample_every=10)
    model.setup_from_data(cams, background=torch.ones(3))
    t = curves.arc_length_parameters(truth, 64)
    means = curves.evaluate(truth, t).reshape(-1, 3)
    targets = render(
        means,
        model.style.sigma().expand(64),
        torch.ones(64),
        torch.zeros(64, 3),
        get_viewmats(cams.camera_to_worlds),
        cams.get_intrinsics_matrices(),
        48,
        48,
        torch.ones(3),
    ).rgb
    with torch.no_grad():
        model.control_points.copy_((truth + torch.tensor([0.0, 0.0, 0.25]) - model.curves.anchor) / model.curves.unit)

    def distance():
        return (model.world_control_points() - truth).norm(dim=-1).mean().item()

    before = distance()
    optimiser = torch.optim.Adam([model.control_points], lr=5e-3)
    for step in range(40):
        i = step % 8
        outputs = model.get_outputs(cams[i : i + 1])
        loss = sum(model.get_loss_dict(outputs, {"image": targets[i : i + 1], "image_idx": [i]}).values())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 10 == 9:
            model.resample_gaussians(step)
    assert distance() < 0.6 * before, (before, distance())


def test_empty_pixels_are_far_for_the_viewer_depth():
    model = make_model()
    cams = ring_cameras()
    model.setup_from_data(cams)
    model.eval()
    out = model.get_outputs_for_camera(cams[0:1])
    empty = out["accumulation"][..., 0] == 0
    assert empty.any() and (~empty).any()
    assert (out["depth"][empty] == out["depth"].max()).all()
    assert (out["depth"][~empty] < out["depth"].max()).any()


def test_a_warning_when_curves_outgrow_their_gaussians(capsys):
    model = make_model(gaussians_per_curve=32)
    model.setup_from_data(ring_cameras())
    model.resample_gaussians(step=1)
    assert "looks dotted" not in capsys.readouterr().out
    with torch.no_grad():
        model.control_points[0, -1] += torch.tensor([3.0, 0.0, 0.0])  # one curve three camera distances long
    model.resample_gaussians(step=2)
    out = " ".join(capsys.readouterr().out.split())
    assert "looks dotted" in out and "--pipeline.model.gaussians-per-curve" in out
    model.resample_gaussians(step=3)
    assert "looks dotted" not in capsys.readouterr().out  # said once
