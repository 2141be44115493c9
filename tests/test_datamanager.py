import torch

from nerfstudio_clipsketch.datamanager import ClipSketchDataManagerConfig
from nerfstudio_clipsketch.dataparsers.auto import ClipSketchDataParserConfig


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
