import math

import torch

from nerfstudio_clipsketch.cameras import camera_axes_centre
from nerfstudio_clipsketch.initialisation import points_init, sphere_init
from tests.helpers import look_at


def test_axes_centre_recovers_the_point_the_cameras_look_at():
    centre = torch.tensor([12.8, 13.2, 5.6], dtype=torch.float64)
    c2w = torch.stack(
        [look_at((centre + 8 * torch.tensor([math.cos(a), math.sin(a), 0.3])).tolist(), centre.tolist())
         for a in torch.linspace(0, 5, 7).tolist()]
    )
    torch.testing.assert_close(camera_axes_centre(c2w), centre)


def test_a_single_camera_gets_a_point_in_front_of_it():
    c2w = look_at((0.0, -3.0, 0.0), (0.0, 0.0, 0.0))[None]
    centre = camera_axes_centre(c2w)
    torch.testing.assert_close(centre, torch.zeros(3, dtype=torch.float64), atol=1e-9, rtol=0)
    # Forward-facing cameras whose axes do not pass near the origin: a point in front, not a camera position.
    c2w = torch.stack([look_at((x, 5.0, 0.0), (x, 6.0, 0.0)) for x in (-0.1, 0.0, 0.1)])
    centre = camera_axes_centre(c2w)
    assert centre[1] > 5.5


def test_sphere_init_inside_the_ball_with_the_given_length():
    g = torch.Generator().manual_seed(0)
    cp = sphere_init(200, 3, torch.tensor([1.0, 2.0, 3.0]), radius=0.5, length=0.1, generator=g)
    mid = cp.mean(1)
    assert ((mid - torch.tensor([1.0, 2.0, 3.0])).norm(dim=-1) <= 0.5 + 1e-6).all()
    torch.testing.assert_close((cp[:, -1] - cp[:, 0]).norm(dim=-1), torch.full((200,), 0.1))


def test_points_init_spreads_over_the_cloud_and_ignores_outliers():
    g = torch.Generator().manual_seed(0)
    cloud = torch.rand(2000, 3, generator=g)
    outliers = torch.full((20, 3), 50.0)
    cp = points_init(torch.cat([cloud, outliers]), 16, 3, length=0.05, generator=g)
    mid = cp.mean(1)
    assert (mid.norm(dim=-1) < 2.0).all()  # no stroke on the outliers
    assert torch.cdist(mid, mid).add(torch.eye(16) * 10).min() > 0.15  # spread out, not clumped
