"""Bigger photos neither change the sketch nor its cost: stroke widths are a share of the view, CLIP's loss (and its
augmentations) work at CLIP's input size, large training images are scaled down once, and strokes stay solid however
long they grow."""

from __future__ import annotations

import shutil

import pytest
import torch
from PIL import Image

from nerfstudio_clipsketch import curves
from nerfstudio_clipsketch.cameras import get_viewmats, project_points
from nerfstudio_clipsketch.clip_guidance import ClipGuidanceConfig
from nerfstudio_clipsketch.datamanager import ClipSketchDataManagerConfig
from nerfstudio_clipsketch.dataparsers.auto import ClipSketchDataParserConfig
from nerfstudio_clipsketch.dataparsers.builtin import ensure_builtin_scene
from nerfstudio_clipsketch.evaluation.metrics import curve_metrics
from nerfstudio_clipsketch.hull import carve_hull
from nerfstudio_clipsketch.lifecycle import LifecycleSettings
from nerfstudio_clipsketch.model import ClipSketchModelConfig
from nerfstudio_clipsketch.pipeline import ClipSketchPipelineConfig
from nerfstudio_clipsketch.scripts.common import load_run
from nerfstudio_clipsketch.terms.edges import EdgeTermConfig
from nerfstudio_clipsketch.terms.ridges import RidgeTermConfig
from tests.helpers import make_model, ring_cameras, train_args, train_in_process

SIZE = 96


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """The built-in scene at 96 px, and a copy of it upscaled 4x (same cameras: the focal length follows)."""
    root = tmp_path_factory.mktemp("resolution")
    small = ensure_builtin_scene(root / "cache", image_size=SIZE)
    large = root / "large"
    shutil.copytree(small, large)
    for png in large.rglob("*.png"):
        with Image.open(png) as image:
            upscaled = image.resize((4 * image.width, 4 * image.height), Image.Resampling.BICUBIC)
        upscaled.save(png)
    return small, large


def pipeline(scene, clip_config, stroke_width: float = 6.0, edge_weight: float = 0.0, **datamanager):
    """The training pipeline, its strokes started the same way at any resolution (a sphere: the hull's traced start
    has its own test below), with the image terms alone (the ridge term works in 3D, whatever the resolution)."""
    clip = ClipGuidanceConfig(
        model_name=clip_config.stem, pretrained="none", model_config=clip_config, layer_weights=(0.0, 1.0, 1.0, 1.0)
    )
    config = ClipSketchPipelineConfig(
        datamanager=ClipSketchDataManagerConfig(dataparser=ClipSketchDataParserConfig(data=scene), **datamanager),
        model=ClipSketchModelConfig(
            num_curves=8,
            stroke_width=stroke_width,
            clip=clip,
            init="sphere",
            edges=EdgeTermConfig(weight=edge_weight),
            lifecycle=LifecycleSettings(every=0),
            ridges=RidgeTermConfig(weight=0.0),
        ),  # fmt: skip
    )
    return config.setup(device="cpu", test_mode="val")


def first_gradients(pipe, steps: int = 2) -> torch.Tensor:
    """The control points' loss gradient on the first ``steps`` training views, each ``[num_curves * 4 * 3]``."""
    model = pipe.model
    grads = []
    for step in range(steps):
        cameras, batch = pipe.datamanager.next_train(step)
        model.control_points.grad = None
        model.generator.manual_seed(step)
        sum(model.get_loss_dict(model.get_outputs(cameras), batch).values()).backward()
        grads.append(model.control_points.grad.flatten().clone())
    return torch.stack(grads)


def test_a_4x_upscaled_copy_pulls_the_curves_the_same_way(scenes, tiny_clip_config):
    """CLIP's terms and the edge term, each: the first steps' gradients of the upscaled copy point the same way."""
    small, large = scenes
    cosine = torch.nn.functional.cosine_similarity
    reference = first_gradients(pipeline(small, tiny_clip_config))
    upscaled = first_gradients(pipeline(large, tiny_clip_config))
    assert float(cosine(reference, upscaled, dim=-1).mean()) > 0.6, cosine(reference, upscaled, dim=-1)
    # Strokes as wide in pixels of the training images as before (a quarter of the view share) pull elsewhere.
    in_image_pixels = first_gradients(pipeline(large, tiny_clip_config, stroke_width=6.0 / 4))
    assert float(cosine(reference, in_image_pixels, dim=-1).mean()) < 0.4
    edges = [first_gradients(pipeline(scene, tiny_clip_config, edge_weight=1.0)) for scene in (small, large)]
    assert float(cosine(*edges, dim=-1).mean()) > 0.9  # the edge term dominates these gradients


def test_a_4x_upscaled_copy_gives_the_same_sketch(scenes, tiny_clip_config, tmp_path):
    """Six steps from the same start end in nearly the same curves, far closer than another seed's sketch."""

    def train(scene, name, *extra):
        args = train_args(scene, tiny_clip_config, tmp_path / name, steps=6)
        args[args.index("--pipeline.model.timelapse-every") + 1] = 0
        config = train_in_process([*args, "--pipeline.model.init", "sphere", *extra])
        points = load_run(config).pipeline.model.world_control_points().detach()
        return curves.sample_curves(points, 100, by_length=True)

    small, large = scenes
    reference = train(small, "small")
    upscaled = train(large, "large")
    other_seed = train(small, "seed", "--pipeline.model.seed", "7", "--machine.seed", "7")
    same = curve_metrics(upscaled, reference)["chamfer/diag"]
    different = curve_metrics(other_seed, reference)["chamfer/diag"]
    assert same < 0.25 * different, (same, different)


def test_a_4x_upscaled_copy_carves_the_same_hull(scenes):
    """The visual hull (carved at a fixed silhouette resolution) and its scored rims of both copies coincide."""
    small, large = scenes
    hulls = []
    for scene in small, large:
        datamanager = ClipSketchDataManagerConfig(dataparser=ClipSketchDataParserConfig(data=scene)).setup(device="cpu")
        images = [cached["image"] for cached in datamanager.cached_train]
        hull, why = carve_hull(datamanager.train_dataset.cameras, images, torch.ones(3), resolution=64)
        assert hull is not None, why
        hulls.append(hull)
    assert abs(hulls[0].diagonal - hulls[1].diagonal) < 2 * hulls[0].voxel_size
    both = [hull.occupied(hulls[0].surface_points).float().mean() for hull in hulls]
    assert float(both[1]) > 0.85 * float(both[0])
    metrics = curve_metrics(hulls[1].points, hulls[0].points)
    assert metrics["chamfer"] < 2 * hulls[0].voxel_size, metrics


def test_large_training_images_are_scaled_down_once_with_their_cameras(scenes, tiny_clip_config):
    _, large = scenes
    datamanager = ClipSketchDataManagerConfig(
        dataparser=ClipSketchDataParserConfig(data=large), max_image_size=128
    ).setup(device="cpu")
    cameras, batch = datamanager.next_train(0)
    assert batch["image"].shape == (1, 128, 128, 3)
    assert (int(cameras.width[0]), int(cameras.height[0])) == (128, 128)
    full = datamanager.train_dataparser_outputs.cameras
    torch.testing.assert_close(cameras.fx[0], full.fx[0] * 128 / (4 * SIZE))
    assert datamanager.eval_dataset.cameras.width[0] == 4 * SIZE  # renders for people keep the photos' size


def test_a_stroke_stretched_across_the_scene_renders_without_gaps():
    """One curve grown to the scene's size takes the Gaussians it needs from the short ones: its ink has no gaps."""
    cameras = ring_cameras(size=96, focal=120.0)
    model = make_model(num_curves=4, gaussians_per_curve=48, stroke_width=3.0)
    model.setup_from_data(cameras, background=torch.ones(3))
    long_curve = torch.tensor([[-1.2, -0.6, 0.0], [-0.4, 0.6, 0.0], [0.4, -0.6, 0.0], [1.2, 0.6, 0.0]])
    with torch.no_grad():
        model.control_points[0] = (long_curve - model.curves.anchor) / model.curves.unit
    model.resample_gaussians()
    counts = torch.bincount(model.curves.sample_curve, minlength=4)
    assert counts[0] > 0.6 * model.curves.num_gaussians  # the fixed budget follows length
    camera = cameras[2:3]
    alpha = model.get_outputs_for_camera(camera)["accumulation"][..., 0]
    centre_line = curves.evaluate(long_curve[None], torch.linspace(0.05, 0.95, 400))[0]
    uv, depth = project_points(centre_line, get_viewmats(camera.camera_to_worlds), camera.get_intrinsics_matrices())
    inside = (uv[0] >= 0).all(-1) & (uv[0, :, 0] < 96) & (uv[0, :, 1] < 96) & (depth[0] > 0)
    pixels = uv[0][inside].floor().long()
    assert len(pixels) > 200
    ink = alpha[pixels[:, 1], pixels[:, 0]]
    assert float(ink.min()) > 0.5, float(ink.min())
    # The same curve with a per-curve share of the Gaussians (48) is dotted.
    fixed = curves.arc_length_parameters(long_curve[None], 48)
    spacing = (curves.evaluate(long_curve[None], fixed)[0].diff(dim=0).norm(dim=-1)).max()
    assert spacing > 2.0 * model.style.sigma()
