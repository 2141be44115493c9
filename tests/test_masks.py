"""Issue 27: a capture's object masks (nerfstudio's per-frame ``mask_path``) are its silhouettes: they carve the
visual hull, paint everything off the object as paper in the targets, and a view whose mask is empty is skipped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nerfstudio_clipsketch.clip_guidance import ClipGuidanceConfig
from nerfstudio_clipsketch.datamanager import ClipSketchDataManagerConfig
from nerfstudio_clipsketch.dataparsers import ClipSketchDataError
from nerfstudio_clipsketch.dataparsers.auto import ClipSketchDataParserConfig
from nerfstudio_clipsketch.lifecycle import LifecycleSettings
from nerfstudio_clipsketch.model import ClipSketchModelConfig
from nerfstudio_clipsketch.pipeline import ClipSketchPipelineConfig
from tests.helpers import console_text, nerfstudio_capture_from

VIEWS = 16


def cluttered_capture(tiny_scene: Path, out: Path, masks: bool = True, empty=()) -> Path:
    """The built-in house (dark lines on white) re-laid as an ns-process-data capture and pasted onto random
    clutter, so that no background colour separates it; with ``masks``, each frame's ``mask_path`` is the house's
    exact silhouette (all black for the views in ``empty``)."""
    nerfstudio_capture_from(tiny_scene, out, count=VIEWS)
    meta = json.loads((out / "transforms.json").read_text())
    rng = np.random.default_rng(0)
    (out / "masks").mkdir()
    for i, frame in enumerate(meta["frames"]):
        path = out / frame["file_path"]
        clean = np.asarray(Image.open(path).convert("RGB"))
        on_object = (np.abs(clean.astype(np.int16) - 255).max(-1) > 25) & (i not in empty)
        clutter = rng.integers(0, 256, clean.shape, dtype=np.uint8)
        Image.fromarray(np.where(on_object[..., None], clean, clutter)).save(path)
        if masks:
            frame["mask_path"] = f"masks/frame_{i:05d}.png"
            Image.fromarray(on_object.astype(np.uint8) * 255).save(out / frame["mask_path"])
    (out / "transforms.json").write_text(json.dumps(meta))
    return out


def pipeline_for(scene: Path, tiny_clip_config: Path, **datamanager):
    clip = ClipGuidanceConfig(model_name=tiny_clip_config.stem, pretrained="none", model_config=tiny_clip_config)
    parser = ClipSketchDataParserConfig(data=scene)
    config = ClipSketchPipelineConfig(
        datamanager=ClipSketchDataManagerConfig(dataparser=parser, views_per_step=2, **datamanager),
        model=ClipSketchModelConfig(
            num_curves=4, clip=clip, init="auto", hull_resolution=32, lifecycle=LifecycleSettings(every=0)
        ),
    )
    return config.setup(device="cpu", test_mode="val")


def test_masks_carve_the_hull_of_a_cluttered_capture_as_a_clean_backdrop_would(tiny_scene, tiny_clip_config, tmp_path):
    """Without masks the clutter hides the house (no hull, a random start); with them the hull is the one the
    clean, white-backdrop capture gives, voxel for voxel, and the strokes start on it."""
    clean = pipeline_for(nerfstudio_capture_from(tiny_scene, tmp_path / "clean", count=VIEWS), tiny_clip_config)
    unmasked = pipeline_for(cluttered_capture(tiny_scene, tmp_path / "bare", masks=False), tiny_clip_config)
    masked = pipeline_for(cluttered_capture(tiny_scene, tmp_path / "masked"), tiny_clip_config)
    hull, why = unmasked.visual_hull(resolution=32)
    assert hull is None and "not uniform" in why
    assert unmasked.model.init_method != "hull"
    reference, _ = clean.visual_hull(resolution=32)
    hull, why = masked.visual_hull(resolution=32)
    assert hull is not None and reference is not None, why
    assert torch.equal(hull.occupancy, reference.occupancy)
    assert hull.fit > 0.9 and masked.model.init_method == "hull"


def test_off_the_mask_is_paper_in_the_targets(tiny_scene, tiny_clip_config, tmp_path):
    """The targets CLIP and the edge term compare the strokes with: the photo on the object, white paper off it
    (not the clutter, and not the clutter's mean colour as paper)."""
    pipeline = pipeline_for(cluttered_capture(tiny_scene, tmp_path / "masked"), tiny_clip_config)
    style = pipeline.model.style
    torch.testing.assert_close(style.background, torch.ones(3))
    cameras, batch = pipeline.datamanager.next_train(0)
    assert batch["mask"].shape == (2, 64, 64, 1) and batch["mask"].dtype == torch.bool
    target = style.composite(batch["image"], batch["mask"])
    mask = batch["mask"][..., 0]
    assert bool((target[~mask] == 1.0).all())
    torch.testing.assert_close(target[mask], batch["image"][mask].float())
    assert float(batch["image"][~mask].float().std()) > 0.2  # clutter under it
    losses = pipeline.model.get_loss_dict(pipeline.model(cameras), batch)
    assert all(bool(torch.isfinite(value)) for value in losses.values())


def test_a_view_whose_mask_is_empty_is_skipped_with_a_warning(tiny_scene, tiny_clip_config, tmp_path, capsys):
    scene = cluttered_capture(tiny_scene, tmp_path / "masked", empty=(2, 5))
    pipeline = pipeline_for(scene, tiny_clip_config)
    log = console_text(capsys.readouterr().out)
    assert "Skipping 2 of" in log and "frame_00002.png" in log and "frame_00005.png" in log
    names = {Path(name).name for name in pipeline.datamanager.train_dataparser_outputs.image_filenames}
    assert len(names) == len(pipeline.datamanager.train_dataset) and not {"frame_00002.png", "frame_00005.png"} & names
    assert len(pipeline.datamanager.train_dataset.cameras) == len(names)
    for view in pipeline.datamanager.cached_train:
        assert bool(view["mask"].any())


def test_every_mask_empty_is_one_message(tiny_scene, tmp_path):
    scene = cluttered_capture(tiny_scene, tmp_path / "masked", empty=range(VIEWS))
    config = ClipSketchDataManagerConfig(dataparser=ClipSketchDataParserConfig(data=scene))
    with pytest.raises(ClipSketchDataError, match="Every training mask of .* is empty"):
        config.setup(device="cpu")


def test_the_clipasso3d_layout_reads_mask_paths_and_refuses_them_on_some_frames_only(tmp_path):
    from nerfstudio_clipsketch.dataparsers.clipasso3d import Clipasso3dDataParserConfig
    from tests.helpers import SIZE, make_clipasso3d_scene

    make_clipasso3d_scene(tmp_path)
    path = tmp_path / "transforms_train.json"
    meta = json.loads(path.read_text())
    (tmp_path / "masks").mkdir()
    for i, frame in enumerate(meta["frames"]):
        frame["mask_path"] = f"./masks/r_{i}.png"
        Image.new("L", (SIZE, SIZE), 255).save(tmp_path / "masks" / f"r_{i}.png")
    path.write_text(json.dumps(meta))
    outputs = Clipasso3dDataParserConfig(data=tmp_path).setup().get_dataparser_outputs("train")
    assert [Path(p).name for p in outputs.mask_filenames] == [f"r_{i}.png" for i in range(len(meta["frames"]))]
    assert Clipasso3dDataParserConfig(data=tmp_path).setup().get_dataparser_outputs("val").mask_filenames is None
    del meta["frames"][1]["mask_path"]
    path.write_text(json.dumps(meta))
    with pytest.raises(ClipSketchDataError, match="Frame 1 of .* has no 'mask_path' but other frames do"):
        Clipasso3dDataParserConfig(data=tmp_path).setup().get_dataparser_outputs("train")


def test_a_bright_part_on_transparent_alpha_is_carved_from_its_alpha(tiny_clip_config, tmp_path, capsys):
    """Issue 26's bright hex nut: nerfstudio composites RGBA onto white, where a near-white face reads as background;
    the hull is carved from the files' alpha instead."""
    from tests.helpers import make_blender_scene

    make_blender_scene(tmp_path)
    for path in tmp_path.glob("*/r_*.png"):
        rgba = np.asarray(Image.open(path)).copy()
        rgba[..., :3] = np.where(rgba[..., 3:] > 0, 250, 0)
        Image.fromarray(rgba).save(path)
    pipeline = pipeline_for(tmp_path, tiny_clip_config)
    hull, why = pipeline.visual_hull(resolution=32)
    assert hull is not None and hull.fit > 0.9, why
    log = console_text(capsys.readouterr().out)
    assert "views' alpha" in log and "object found" not in log
