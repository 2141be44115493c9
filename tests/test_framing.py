"""Training views framed on the object: the crop follows the visual hull, and the framed camera sees in its framed
image what the whole camera saw in the photo."""

from __future__ import annotations

import torch

from nerfstudio_clipsketch.cameras import get_viewmats, project_points
from nerfstudio_clipsketch.framing import Frame, frame_cameras, frame_view, object_frames
from nerfstudio_clipsketch.hull import carve_hull
from tests.test_hull import SIZE, sphere_cameras, sphere_images

RADIUS = 0.45  # about a quarter of the 64-pixel views across


def silhouette_box(image: torch.Tensor):
    rows, cols = torch.nonzero(image.sum(-1) > 0, as_tuple=True)
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def test_a_small_ball_fills_its_framed_views_and_the_framed_cameras_see_it_where_the_image_shows_it():
    cameras = sphere_cameras(12)
    images = sphere_images(cameras, RADIUS)
    hull, why = carve_hull(cameras, list(images), torch.zeros(3), resolution=48)
    assert hull is not None, why
    frames, why = object_frames(cameras, hull, margin=0.1, size=16)  # no floor: it fills them
    assert frames is not None, why
    size = 96
    framed = frame_cameras(cameras, frames, size)
    assert framed.width.reshape(-1).tolist() == [size] * 12 and framed.height.reshape(-1).tolist() == [size] * 12
    uv, _ = project_points(torch.zeros(1, 3), get_viewmats(framed.camera_to_worlds), framed.get_intrinsics_matrices())
    for i, (image, frame) in enumerate(zip(images, frames)):
        before = silhouette_box(image)
        assert before[2] - before[0] < 0.4 * SIZE  # the ball is small in the photo
        view = frame_view({"image": image, "mask": image.sum(-1, keepdim=True) > 0}, frame, size)
        assert view["image"].shape == (size, size, 3) and view["mask"].shape == (size, size, 1)
        left, top, right, bottom = silhouette_box(view["image"])
        # it fills the frame but for the margin (and the hull's voxel of slack), and the mask came along with it
        assert 0.65 * size < right - left <= size and 0.65 * size < bottom - top <= size, (i, frame)
        mask, seen = view["mask"][..., 0], view["image"].mean(-1) > 0.2  # half the darkest shade
        assert (mask & seen).sum() > 0.9 * (mask | seen).sum()  # they differ only on the blurred rim
        assert (torch.nonzero(mask).float().mean(0) - torch.nonzero(seen).float().mean(0)).abs().max() < 0.5
        # the ball's centre, seen through the framed camera, is the middle of its framed silhouette
        assert abs(float(uv[i, 0, 0]) - (left + right) / 2) < 2.0 and abs(float(uv[i, 0, 1]) - (top + bottom) / 2) < 2.0


def test_beyond_the_photo_a_frame_repeats_its_edge_and_holds_no_object():
    image = torch.zeros(8, 8, 3, dtype=torch.uint8)
    image[:, :, 0] = torch.arange(8, dtype=torch.uint8)[None, :] * 10  # red grows to the right
    mask = torch.ones(8, 8, 1, dtype=torch.bool)
    view = frame_view({"image": image, "mask": mask, "image_idx": 3}, Frame(left=4, top=-4, side=8), size=8)
    assert view["image"].dtype == torch.uint8 and view["image_idx"] == 3
    assert (view["image"][:, 4:, 0] == 70).all()  # columns 8-11 of the photo: its last column again
    assert (view["image"][4:, :4, 0] == torch.tensor([40, 50, 60, 70], dtype=torch.uint8)).all()
    assert not view["mask"][:4].any() and view["mask"][4:, :4].all() and not view["mask"][4:, 4:].any()


def test_a_frame_shifts_and_scales_the_intrinsics():
    cameras = sphere_cameras(2)
    framed = frame_cameras(cameras, [Frame(10, 20, 32), Frame(0, 0, 64)], size=64)
    assert torch.allclose(framed.fx.reshape(-1), cameras.fx.reshape(-1) * torch.tensor([2.0, 1.0]))
    assert torch.allclose(framed.cx.reshape(-1), torch.tensor([(32 - 10) * 2.0, 32.0]))
    assert torch.allclose(framed.cy.reshape(-1), torch.tensor([(32 - 20) * 2.0, 32.0]))
    assert torch.equal(framed.camera_to_worlds, cameras.camera_to_worlds)
    assert torch.equal(cameras.fx.reshape(-1), torch.full((2,), cameras.fx.reshape(-1)[0].item()))  # untouched


def test_a_photo_is_cropped_never_enlarged_so_a_small_photo_stays_whole():
    """Framed ``size`` pixels across, a crop is at least that many pixels of the photo: a 64-pixel photo framed at 64
    is the whole photo, unchanged, and its camera too; framed at 32, the crop is 32 pixels or more, inside the photo."""
    cameras = sphere_cameras(6)
    images = sphere_images(cameras, RADIUS)
    hull, why = carve_hull(cameras, list(images), torch.zeros(3), resolution=32)
    whole, _ = object_frames(cameras, hull, margin=0.1, size=SIZE)
    assert all((f.left, f.top, f.side) == (0, 0, SIZE) for f in whole)
    photo = images[0]
    assert frame_view({"image": photo, "image_idx": 0}, whole[0], SIZE)["image"] is photo
    framed = frame_cameras(cameras, whole, SIZE)
    assert torch.equal(framed.get_intrinsics_matrices(), cameras.get_intrinsics_matrices())
    half, _ = object_frames(cameras, hull, margin=0.1, size=32)
    for frame in half:
        assert frame.side >= 32 and 0 <= frame.left <= SIZE - frame.side and 0 <= frame.top <= SIZE - frame.side


def test_a_masked_capture_trains_on_views_framed_on_its_object(tiny_scene, tiny_clip_config, tmp_path, capsys):
    """The pipeline frames the training views once the hull is carved: the batches are the framed photos and masks,
    the stroke width follows the frames (thinner on the object than on the whole photos), the log says so; with
    ``frame_object`` False (the default), the whole photos."""
    from tests.helpers import console_text
    from tests.test_masks import cluttered_capture, pipeline_for

    scene = cluttered_capture(tiny_scene, tmp_path / "masked")
    whole = pipeline_for(scene, tiny_clip_config)  # the default: the whole photos
    capsys.readouterr()
    framed = pipeline_for(scene, tiny_clip_config, frame_object=True, frame_size=32)
    log = console_text(capsys.readouterr().out)
    assert "training views framed on the object" in log and "drawn 32 pixels across" in log
    cameras, batch = framed.datamanager.next_train(0)
    assert batch["image"].shape == (2, 32, 32, 3) and batch["mask"].shape == (2, 32, 32, 1)
    assert cameras.metadata["image_size"] == (32, 32) and framed.model.train_cameras.width.unique().tolist() == [32]
    assert whole.datamanager.next_train(0)[1]["image"].shape == (2, 64, 64, 3)
    # the house fills more of a framed view than of its photo, and the strokes are as much thinner in the world
    zoom = framed.datamanager.train_cameras.fx.reshape(-1) / whole.datamanager.train_cameras.fx.reshape(-1)
    sides = 32 / zoom  # each frame's side in the photo's pixels
    assert float(sides.min()) < 60  # the house fills most of its photos
    for side, on_frame, on_photo in zip(sides, framed.datamanager.cached_train, whole.datamanager.cached_train):
        expected = float(on_photo["mask"].float().mean()) * (64 / float(side)) ** 2  # the object, cropped
        assert abs(float(on_frame["mask"].float().mean()) - expected) < 0.1 * expected
    ratio = float(framed.model.style.world_width()) / float(whole.model.style.world_width())
    assert ratio < 0.98 and abs(ratio - float(sides.median()) / 64) < 0.02  # a share of the frame, not the photo
    losses = framed.model.get_loss_dict(framed.model(cameras), batch)
    assert all(bool(torch.isfinite(value)) for value in losses.values())
