import json
import shutil

import pytest
import torch
from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig

from nerfstudio_clipsketch.datamanager import ClipSketchDataManagerConfig
from nerfstudio_clipsketch.dataparsers.auto import ClipSketchDataParserConfig
from tests.helpers import console_text


def make(scene, views):
    config = ClipSketchDataManagerConfig(dataparser=ClipSketchDataParserConfig(data=scene), views_per_step=views)
    return config.setup(device="cpu")


def test_several_views_per_step(tiny_scene):
    datamanager = make(tiny_scene, views=3)
    seen = set()
    for step in range(3):
        cameras, batch = datamanager.next_train(step)
        assert cameras.shape == (3,)
        assert batch["image"].shape == (3, 64, 64, 3)
        assert cameras.metadata["image_size"] == (64, 64)
        assert len(set(batch["image_idx"])) == 3
        for i, idx in enumerate(batch["image_idx"]):
            torch.testing.assert_close(batch["image"][i], datamanager.cached_train[idx]["image"])
            torch.testing.assert_close(cameras.camera_to_worlds[i], datamanager.train_cameras.camera_to_worlds[idx])
        seen.update(batch["image_idx"])
    assert len(seen) == 9  # without replacement within an epoch


def test_one_view_per_step_has_the_same_shapes_and_carries_its_size(tiny_scene):
    cameras, batch = make(tiny_scene, views=1).next_train(0)
    assert cameras.shape == (1,) and batch["image"].shape == (1, 64, 64, 3)
    assert cameras.metadata["image_size"] == (64, 64) and len(batch["image_idx"]) == 1


def scene_without(tiny_scene, folder, splits):
    """A copy of the tiny scene without the camera files of ``splits``."""
    scene = folder / "scene"
    shutil.copytree(tiny_scene, scene)
    for split in splits:
        (scene / f"transforms_{split}.json").unlink()
    return scene


@pytest.mark.parametrize(
    "parser, missing, test_mode, used",
    [
        ("clipsketch-data", ["test"], "test", "val"),  # export, eval, ns-render on a scene shipped without test views
        ("clipsketch-data", ["test", "val"], "test", "train"),
        ("clipsketch-data", ["val"], "val", "test"),  # training
        ("blender-data", ["test"], "inference", "val"),  # nerfstudio's own parser, as ns-render loads it
    ],
)
def test_evaluation_falls_back_to_a_split_the_scene_has(parser, missing, test_mode, used, tiny_scene, tmp_path, capsys):
    scene = scene_without(tiny_scene, tmp_path, missing)
    parsers = {"clipsketch-data": ClipSketchDataParserConfig, "blender-data": BlenderDataParserConfig}
    dataparser = parsers[parser](data=scene)
    datamanager = ClipSketchDataManagerConfig(dataparser=dataparser).setup(device="cpu", test_mode=test_mode)
    assert datamanager.test_split == used
    views = json.loads((scene / f"transforms_{used}.json").read_text())["frames"]
    assert len(datamanager.eval_dataset) == len(views)
    wanted = "val" if test_mode == "val" else "test"
    output = console_text(capsys.readouterr().out)
    assert f"No usable '{wanted}' split" in output and f"evaluating on the '{used}' views instead" in output
