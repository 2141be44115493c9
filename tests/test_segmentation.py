"""Issue 27, item 2: the object found in photos with neither masks nor a uniform backdrop, weight-free."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from nerfstudio.cameras.cameras import Cameras
from PIL import Image

from nerfstudio_clipsketch.cameras import get_viewmats
from nerfstudio_clipsketch.hull import carve_hull
from nerfstudio_clipsketch.model_config import ClipSketchConfigError
from nerfstudio_clipsketch.segmentation import SegmentationError, find_object, object_centric, parse_region
from tests.helpers import console_text, look_at

SIZE, FOCAL, RADIUS = 96, 110.0, 0.5


def orbit(count: int = 20, distance: float = 4.0, spread: float = 1.0) -> Cameras:
    """Cameras on a sphere around the origin looking at it; ``spread`` < 1 keeps them within that share of a half
    turn of the x axis."""
    eyes = []
    for i in range(count):
        z = spread * (1.0 - 2.0 * (i + 0.5) / count)
        r, a = math.sqrt(1 - z * z), i * math.pi * (3 - math.sqrt(5))
        a = a if spread == 1.0 else spread * math.pi * (math.remainder(a, 2 * math.pi) / (2 * math.pi))
        eyes.append((distance * r * math.cos(a), distance * r * math.sin(a), distance * z))
    c2w = torch.stack([look_at(e) for e in eyes]).float()
    return Cameras(camera_to_worlds=c2w, fx=FOCAL, fy=FOCAL, cx=SIZE / 2, cy=SIZE / 2, width=SIZE, height=SIZE)


def red_ball_on_clutter(cameras: Cameras, seed: int = 0):
    """Photos of a shaded red ball at the origin over smooth random blue/green/grey clutter, and its true masks."""
    generator = torch.Generator().manual_seed(seed)
    rows, cols = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
    images, masks = [], []
    for viewmat in get_viewmats(cameras.camera_to_worlds):
        d = torch.stack([(cols - SIZE / 2) / FOCAL, (rows - SIZE / 2) / FOCAL, torch.ones_like(rows)], -1)
        d = d / d.norm(dim=-1, keepdim=True)
        c = viewmat[:3, 3]
        along = d @ c
        hit = (c @ c - along**2) <= RADIUS**2
        shade = (0.5 + 0.5 * (1 - (along - c.norm()) / RADIUS).clamp(0, 1))[..., None]
        ball = shade * torch.tensor([0.85, 0.1, 0.1])
        coarse = torch.rand(3, 6, 6, generator=generator) * torch.tensor([0.3, 0.7, 0.8])[:, None, None]
        clutter = torch.nn.functional.interpolate(coarse[None], size=(SIZE, SIZE), mode="bicubic")[0].permute(1, 2, 0)
        clutter = (clutter + 0.05 * torch.rand(SIZE, SIZE, 3, generator=generator)).clamp(0, 1)
        images.append(torch.where(hit[..., None], ball, clutter))
        masks.append(hit)
    return images, masks


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum()) / max(1.0, float((a | b).sum()))


def test_a_red_ball_on_clutter_is_found_and_its_hull_carved_from_the_found_silhouettes():
    cameras = orbit()
    images, truth = red_ball_on_clutter(cameras)
    assert carve_hull(cameras, images, torch.zeros(3))[0] is None  # no backdrop colour separates it
    found, why = find_object(cameras, images)
    assert found is not None, why
    assert float(found.centre.norm()) < 0.05 and RADIUS < found.radius < 4 * RADIUS
    scores = sorted(iou(mask, true) for mask, true in zip(found.masks, truth))
    assert scores[len(scores) // 2] > 0.85 and scores[2] > 0.6, scores
    hull, why = carve_hull(cameras, images, torch.ones(3), resolution=48, masks=found.masks)
    assert hull is not None and hull.fit > 0.9, why
    centres = hull.occupancy.nonzero().float() * hull.voxel_size + hull.origin
    assert float(centres.norm(dim=-1).max()) < RADIUS * 1.25


def test_a_given_region_is_used_and_a_wrong_one_finds_nothing_like_the_ball():
    cameras = orbit()
    images, truth = red_ball_on_clutter(cameras)
    found, why = find_object(cameras, images, region=(torch.zeros(3), 0.8))
    assert found is not None and found.source == "the setting", why
    assert np.median([iou(m, t) for m, t in zip(found.masks, truth)]) > 0.85
    away, why = find_object(cameras, images, region=(torch.tensor([1.5, 1.5, 0.0]), 0.3))
    assert away is None or np.median([iou(m, t) for m, t in zip(away.masks, truth)]) < 0.2


def test_cameras_that_do_not_surround_a_point_are_not_an_object_capture():
    assert object_centric(orbit().camera_to_worlds) is None
    narrow = object_centric(orbit(spread=0.1).camera_to_worlds)
    assert narrow is not None and "not from around it" in narrow
    forward = torch.eye(4)[:3].expand(6, 3, 4).clone()
    forward[:, 0, 3] = torch.arange(6.0) * 0.1
    assert "forward-facing" in object_centric(forward)
    images, _ = red_ball_on_clutter(orbit(6, spread=0.1))
    found, why = find_object(orbit(6, spread=0.1), images)
    assert found is None and "not from around it" in why


@pytest.mark.parametrize("value", ["auto", "off", " 0.1,0,-0.2,0.5 "])
def test_region_settings_are_read(value):
    parsed = parse_region(value)
    if value.strip() in ("auto", "off"):
        assert parsed == value.strip()
    else:
        centre, radius = parsed
        assert centre.tolist() == pytest.approx([0.1, 0.0, -0.2]) and radius == 0.5


@pytest.mark.parametrize("value", ["somewhere", "1,2,3", "0,0,0,-1", "0,0,nan,1"])
def test_a_bad_region_is_one_message(value):
    from nerfstudio_clipsketch.model import ClipSketchModelConfig

    with pytest.raises(SegmentationError, match="object-region must be 'auto', 'off' or 'x,y,z,r'"):
        parse_region(value)
    with pytest.raises(ClipSketchConfigError, match=value):
        ClipSketchModelConfig(object_region=value).check()


def capture(root: Path, cameras: Cameras, images) -> Path:
    """An ns-process-data style capture (transforms.json, images/) of ``images`` seen by ``cameras``."""
    (root / "images").mkdir(parents=True)
    frames = []
    for i, (c2w, image) in enumerate(zip(cameras.camera_to_worlds, images)):
        Image.fromarray((image.numpy() * 255).round().astype(np.uint8)).save(root / "images" / f"frame_{i:05d}.png")
        pose = torch.cat([c2w, torch.tensor([[0.0, 0, 0, 1]])]).tolist()
        frames.append({"file_path": f"images/frame_{i:05d}.png", "transform_matrix": pose})
    meta = {"fl_x": FOCAL, "fl_y": FOCAL, "cx": SIZE / 2, "cy": SIZE / 2, "w": SIZE, "h": SIZE, "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


@pytest.mark.parametrize("region", ["auto", "off"])
def test_training_finds_the_object_in_a_cluttered_capture_unless_told_not_to(
    tiny_clip_config, tmp_path, capsys, region
):
    """The found silhouettes become the views' masks: the hull is carved from them, the strokes start on it, the
    paper is white and the targets are the ball on paper. With 'off', today's fallback, and the log says so."""
    from nerfstudio_clipsketch.clip_guidance import ClipGuidanceConfig
    from nerfstudio_clipsketch.datamanager import ClipSketchDataManagerConfig
    from nerfstudio_clipsketch.dataparsers.auto import ClipSketchDataParserConfig
    from nerfstudio_clipsketch.lifecycle import LifecycleSettings
    from nerfstudio_clipsketch.model import ClipSketchModelConfig
    from nerfstudio_clipsketch.pipeline import ClipSketchPipelineConfig

    cameras = orbit(24)
    images, _ = red_ball_on_clutter(cameras)
    clip = ClipGuidanceConfig(model_name=tiny_clip_config.stem, pretrained="none", model_config=tiny_clip_config)
    config = ClipSketchPipelineConfig(
        datamanager=ClipSketchDataManagerConfig(
            dataparser=ClipSketchDataParserConfig(data=capture(tmp_path, cameras, images))
        ),
        model=ClipSketchModelConfig(
            num_curves=4, clip=clip, hull_resolution=32, object_region=region, lifecycle=LifecycleSettings(every=0)
        ),
    )
    pipeline = config.setup(device="cpu", test_mode="val")
    log = console_text(capsys.readouterr().out)
    model = pipeline.model
    if region == "off":
        assert "no visual hull" in log and "object found" not in log and model.init_method != "hull"
        assert "mask" not in pipeline.datamanager.cached_train[0]
        return
    assert "object found (centre" in log and "--pipeline.model.object-region x,y,z,r" in log, log
    assert "visual hull carved from" in log and model.init_method == "hull"
    torch.testing.assert_close(model.style.background, torch.ones(3))
    _, batch = pipeline.datamanager.next_train(0)
    target = model.style.composite(batch["image"], batch["mask"])
    off = ~batch["mask"][..., 0]
    assert bool((target[off] == 1.0).all()) and 0.02 < float(batch["mask"].float().mean()) < 0.3


def test_sparse_points_fit_the_region_to_the_object_not_the_room():
    """A COLMAP-style cloud: a dense cluster on the object (off the cameras' focus) and points all over a room; the
    region is centred on the cluster and about its size, not the room's."""
    from nerfstudio_clipsketch.segmentation import estimate_region

    generator = torch.Generator().manual_seed(0)
    cameras = orbit()
    on_object = torch.randn(400, 3, generator=generator) * 0.15 + torch.tensor([0.2, -0.1, 0.0])
    room = (torch.rand(300, 3, generator=generator) - 0.5) * 8
    centre, radius, source = estimate_region(cameras, torch.cat([on_object, room]))
    assert source == "sparse points"
    assert float((centre - torch.tensor([0.2, -0.1, 0.0])).norm()) < 0.1
    assert 0.2 < radius < 0.8
    _, without, source = estimate_region(cameras)
    assert source == "the cameras" and without > radius
