"""The object found in photos that have no masks and no uniform backdrop (a phone capture on a desk), with no
learned model: where the cameras look, a classical segmenter, and the views made to agree.

An object-centric capture looks at one thing from around it. :func:`find_object`:

1. **Where and how big** (:func:`estimate_region`): the point closest to every camera's optical axis, and a ball
   around it that fills most of the views; with the capture's sparse 3D points (COLMAP's, nerfstudio's
   ``ply_file_path``), the ball is fitted to the points near that point instead. ``--pipeline.model.object-region
   x,y,z,r`` gives it by hand.
2. **Per view**: OpenCV's GrabCut, seeded with the ball's projection (inside: probably the object; well outside:
   background), on the photo scaled to :data:`SEGMENT_SIZE` pixels.
3. **Agreement**: a voxel of the ball's box is kept when most views that see it put it on the object (a vote, so one
   bad segmentation does not carve the object away), the largest connected piece is kept, and each view is segmented
   again seeded with that piece's projection; the views vote again on those, and each view's silhouette is its new
   segmentation within the projection of what they agree on (that projection itself where GrabCut lost the object).

The silhouettes then serve as a capture's own masks would (:mod:`.silhouettes`): the visual hull, its ridges and
occlusion, and the targets' background painted as paper. Captures whose cameras do not surround one point
(forward-facing, a room) are left alone (:func:`object_centric` says why), as are those the segmenter cannot split.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from nerfstudio.cameras.cameras import Cameras
from torch import Tensor

from nerfstudio_clipsketch.cameras import look_at_centre
from nerfstudio_clipsketch.hull import _project, carve

SEGMENT_SIZE = 192
"""Photos are segmented at this many pixels across their longer side, whatever their size."""
GRID = 64
"""Voxels across the box in which the views vote on the object."""
MIN_SPREAD_DEGREES = 20.0
"""Cameras whose directions from the centre all lie within this angle of their mean do not surround an object."""


class SegmentationError(ValueError):
    """A ``--pipeline.model.object-region`` that cannot be read."""


def parse_region(value: str) -> Union[str, Tuple[Tensor, float]]:
    """``auto``, ``off``, or ``x,y,z,r`` (a ball in nerfstudio's normalised frame, as the viewer shows it)."""
    text = value.strip().lower()
    if text in ("auto", "off"):
        return text
    try:
        numbers = [float(part) for part in text.split(",")]
    except ValueError:
        numbers = []
    if len(numbers) != 4 or not all(math.isfinite(n) for n in numbers) or not numbers[3] > 0:
        raise SegmentationError(
            f"object-region must be 'auto', 'off' or 'x,y,z,r' (the object's centre and a radius > 0 in nerfstudio's "
            f"normalised frame, as the viewer shows it), got {value!r}"
        )
    return torch.tensor(numbers[:3]), numbers[3]


@dataclass
class FoundObject:
    """Where the object is, and its silhouette in every view it was found in."""

    centre: Float[Tensor, "3"]
    radius: float
    source: str
    """What the region came from: 'the cameras', 'sparse points' or 'the setting'."""
    masks: List[Bool[Tensor, "H W"]]
    """One per view, at the view's image size."""
    seconds: float


def object_centric(camera_to_worlds: Float[Tensor, "N 3 4"]) -> Optional[str]:
    """None when the cameras surround a point they all look at, else why not (for the log)."""
    try:
        centre = look_at_centre(camera_to_worlds)
    except ValueError:
        return "the cameras' optical axes are parallel (a forward-facing capture): there is no one object to find"
    directions = camera_to_worlds[:, :3, 3].double() - centre.double()
    directions = directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    mean = directions.mean(0)
    spread = torch.rad2deg(torch.acos((directions @ (mean / mean.norm())).clamp(-1, 1))).max()
    if float(spread) < MIN_SPREAD_DEGREES:
        return (
            f"the cameras see the point they look at from within {float(spread):.0f} degrees of one direction, not "
            "from around it: a scene rather than an object"
        )
    return None


def estimate_region(cameras: Cameras, points: Optional[Tensor] = None) -> Tuple[Tensor, float, str]:
    """The object's centre, a radius that holds it, and what they came from (see the module docstring)."""
    c2w = cameras.camera_to_worlds.float()
    centre = look_at_centre(c2w).float()
    distance = float((c2w[:, :3, 3] - centre).norm(dim=-1).median())
    half_fov = float(torch.atan(0.5 * torch.minimum(cameras.width, cameras.height).float() / cameras.fy.float()).min())
    radius = 0.7 * distance * math.sin(half_fov)  # a ball filling 70 % of the shorter side of a median view
    if points is not None and len(points) >= 50:
        near = points[(points.float() - centre).norm(dim=-1) < 1.5 * radius].float()
        if len(near) >= 50:
            middle = near.median(0).values
            spread = float(torch.quantile((near - middle).norm(dim=-1), 0.9))
            return middle, min(1.5 * radius, 1.2 * spread), "sparse points"
    return centre, radius, "the cameras"


def _small(image: Tensor) -> np.ndarray:
    """An image ``[H, W, C]`` as uint8 RGB at :data:`SEGMENT_SIZE` pixels across its longer side."""
    import cv2

    rgb = image[..., :3].float()
    rgb = (rgb / 255.0 if image.dtype == torch.uint8 else rgb).clamp(0, 1)
    array = (rgb.cpu().numpy() * 255).round().astype(np.uint8)
    scale = min(1.0, SEGMENT_SIZE / max(array.shape[:2]))
    size = (max(1, round(array.shape[1] * scale)), max(1, round(array.shape[0] * scale)))
    return np.ascontiguousarray(cv2.resize(array, size, interpolation=cv2.INTER_AREA))


def _grabcut(image: np.ndarray, likely: np.ndarray, possible: np.ndarray, iterations: int = 4) -> np.ndarray:
    """GrabCut's object pixels, seeded: ``likely`` probably the object, ``possible`` probably not, the rest surely
    background."""
    import cv2

    seeds = np.full(image.shape[:2], cv2.GC_BGD, np.uint8)
    seeds[possible] = cv2.GC_PR_BGD
    seeds[likely] = cv2.GC_PR_FGD
    if not likely.any() or likely.all():
        return likely.copy()
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(image, seeds, None, background, foreground, iterations, cv2.GC_INIT_WITH_MASK)
    return (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)


def _pixels(points: Tensor, cameras: Cameras, shape: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
    """Pixel coordinates ``[N, M, 2]`` of ``points`` in the views scaled to ``shape`` ``(h, w)``, and their depths."""
    return _project(points.float(), cameras, shape[0] / float(cameras.height.reshape(-1)[0]))


def _ball_masks(centre: Tensor, radius: float, cameras: Cameras, shape: Tuple[int, int], grow: float) -> Tensor:
    """Where a ball of ``radius * grow`` about ``centre`` covers each view ``[N, h, w]``."""
    uv, depth = _pixels(centre[None], cameras, shape)
    rows, cols = torch.meshgrid(torch.arange(shape[0]) + 0.5, torch.arange(shape[1]) + 0.5, indexing="ij")
    focal = cameras.fy.float().reshape(-1) * shape[0] / cameras.height.float().reshape(-1)
    pixels = focal * radius * grow / depth[:, 0].clamp_min(1e-6)
    gap = (cols - uv[:, 0, 0, None, None]) ** 2 + (rows - uv[:, 0, 1, None, None]) ** 2
    return gap <= pixels[:, None, None] ** 2


def _vote(masks: Tensor, cameras: Cameras, centre: Tensor, radius: float, share: float = 0.8) -> Tuple[Tensor, float]:
    """The voxels ``[M, 3]`` of the ball's box on the object in all views but a ``1 - share`` of them (the visual
    hull's carving, allowing misses), the largest connected piece, and the voxel size."""
    from scipy import ndimage

    box = torch.full((3,), float(radius))
    misses = int((1.0 - share) * len(masks))
    occupancy, origin, size = carve(cameras, masks, centre - box, centre + box, GRID, misses=misses)
    labels, count = ndimage.label(occupancy.numpy())
    if count == 0:
        return torch.zeros(0, 3), size
    largest = 1 + int(np.argmax(ndimage.sum_labels(np.ones_like(labels), labels, range(1, count + 1))))
    return torch.from_numpy(np.argwhere(labels == largest)).float() * size + origin, size


def _drawn(voxels: Tensor, size: float, cameras: Cameras, shape: Tuple[int, int], grow: int) -> Tensor:
    """Each view's pixels ``[N, h, w]`` covered by the voxels (cubes of ``size``), widened by ``grow`` pixels."""
    uv, depth = _pixels(voxels, cameras, shape)
    drawn = torch.zeros(len(cameras), *shape, dtype=torch.bool)
    col, row = uv[..., 0].floor().long(), uv[..., 1].floor().long()
    inside = (depth > 0) & (col >= 0) & (col < shape[1]) & (row >= 0) & (row < shape[0])
    views = torch.arange(len(cameras))[:, None].expand_as(col)
    drawn[views[inside], row[inside], col[inside]] = True
    focal = float(cameras.fy.float().max()) * shape[0] / float(cameras.height.float().min())
    pixels = int(math.ceil(focal * size / float(depth[depth > 0].min()))) + grow
    return F.max_pool2d(drawn[:, None].float(), 2 * pixels + 1, stride=1, padding=pixels)[:, 0] > 0.5


def find_object(
    cameras: Cameras,
    images: Sequence[Float[Tensor, "H W C"]],
    points: Optional[Tensor] = None,
    region: Optional[Tuple[Tensor, float]] = None,
) -> Tuple[Optional[FoundObject], str]:
    """The object the ``cameras`` look at in ``images`` (RGB, uint8 or [0, 1]), found as the module docstring says,
    or None and why not. ``points``: the capture's sparse 3D points, if any; ``region``: a given centre and radius."""
    import cv2

    start = time.perf_counter()
    cameras = cameras.reshape(-1).to("cpu")
    why = object_centric(cameras.camera_to_worlds.float())
    if why is not None and region is None:
        return None, why
    if region is not None:
        centre, radius, source = region[0].float(), float(region[1]), "the setting"
    else:
        centre, radius, source = estimate_region(cameras, points)
    small = [_small(image) for image in images]
    shape = small[0].shape[:2]
    if any(s.shape[:2] != shape for s in small):
        return None, "the photos have several sizes; give masks (mask_path) instead"
    likely = _ball_masks(centre, radius, cameras, shape, 1.0).numpy()
    possible = _ball_masks(centre, radius, cameras, shape, 1.3).numpy()
    first = torch.from_numpy(np.stack([_grabcut(s, lk, ps) for s, lk, ps in zip(small, likely, possible)]))
    voxels, size = _vote(first, cameras, centre, 1.3 * radius)
    if len(voxels) == 0:
        return None, f"no part of the region ({_describe(centre, radius, source)}) is the object in most views"
    hull = _drawn(voxels, size, cameras, shape, grow=0)
    margin = _drawn(voxels, size, cameras, shape, grow=max(2, SEGMENT_SIZE // 64)).numpy()
    second = torch.from_numpy(np.stack([_grabcut(s, h, m) for s, h, m in zip(small, hull.numpy(), margin)]))
    # The views vote again on the sharper segmentations; each view's silhouette is its segmentation within the
    # agreed piece's projection, or that projection where GrabCut lost the object (an empty view would carve the
    # whole hull away).
    agreed, agreed_size = _vote(second & hull, cameras, centre, 1.3 * radius)
    if len(agreed) > 0:
        voxels, size = agreed, agreed_size
    agreed_views = _drawn(voxels, size, cameras, shape, grow=0)
    sharp = second & agreed_views
    failed = sharp.flatten(1).sum(1) < 0.5 * agreed_views.flatten(1).sum(1)  # GrabCut lost the object there
    silhouettes = torch.where(failed[:, None, None], agreed_views, sharp).numpy()
    masks = []
    for view, image in zip(silhouettes, images):
        full = cv2.resize(view.astype(np.uint8) * 255, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
        masks.append(torch.from_numpy(full > 127))
    return FoundObject(centre, radius, source, masks, time.perf_counter() - start), "found"


def _describe(centre: Tensor, radius: float, source: str) -> str:
    x, y, z = (float(c) for c in centre)
    return f"centre {x:.3g},{y:.3g},{z:.3g}, radius {radius:.3g}, from {source}"


def describe(found: FoundObject) -> str:
    """The found object for the log, with how to override it."""
    area = float(torch.stack([m.float().mean() for m in found.masks]).mean()) if found.masks else 0.0
    return (
        f"object found ({_describe(found.centre, found.radius, found.source)}), segmented in {len(found.masks)} views "
        f"in {found.seconds:.1f} s, covering {area:.0%} of a view on average. If that is not the object, give "
        f"--pipeline.model.object-region x,y,z,r (the viewer's coordinates) or masks (mask_path), or 'off'."
    )
