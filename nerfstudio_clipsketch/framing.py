"""Training views framed on the object: each training camera cropped to a square around the visual hull's projection,
rendered and compared at one size.

CLIPasso draws object-centred images; a capture's photos often show the object small in the middle of the frame (the
rose, the duck, the ABC-NEF renders and the family parts fill 20-40 % of the frame's width). CLIP then sees the object
at a third of its 224 pixels, and strokes whose width is a share of the view are as thick as the object's details.
Framed, the object fills each view CLIP sees, whatever the capture's framing, and the stroke width
(:func:`.strokes.world_per_stroke_pixel` on the framed cameras) becomes a share of the object's size in view.

The crop is the square around the hull's occupied voxels as each camera sees them, widened by ``margin`` on every
side, and never smaller than the framed view's own size: a photo is cropped, never enlarged. Enlarged 3x, the duck's
224-pixel photos (the duck 60-80 pixels across) became blurs, and its sketch lost a fifth of its surface precision
(0.809 to 0.648, BENCHMARKS.md); such captures are left as they are. What falls beyond the photo is its edge repeated
(and off the object mask, where the view has one). The camera's intrinsics follow the crop and the scaling, so the
framed view is the same pinhole camera seeing less.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from nerfstudio_clipsketch.cameras import get_viewmats, project_points
from nerfstudio_clipsketch.hull import VisualHull


@dataclass
class Frame:
    """One view's square crop, in the pixels of its image: left and top corner, side."""

    left: int
    top: int
    side: int


def object_frames(cameras, hull: VisualHull, margin: float, size: int) -> Tuple[Optional[List[Frame]], str]:
    """Each camera's square around the hull's occupied voxels, widened by ``margin`` of its side on every side, and
    never fewer than ``size`` pixels across (nor than the image's shorter side, when that is smaller): the photo is
    not enlarged, only cropped (or shrunk), so a small photo is not blurred. A square that fits in its image is moved
    into it. Or None and why (a camera inside the hull, or the hull beyond its image)."""
    points = hull.surface_points  # the voxels that bound the occupied ones
    cams = cameras.reshape(-1)
    viewmats = get_viewmats(cams.camera_to_worlds.float().cpu())
    pixels, depth = project_points(points.float().cpu(), viewmats, cams.get_intrinsics_matrices().float())
    frames = []
    for i in range(len(cams)):
        if not bool((depth[i] > 0).all()):
            return None, f"training view {i} has part of the visual hull behind its camera"
        low, high = pixels[i].min(0).values, pixels[i].max(0).values
        width, height = float(cams.width[i]), float(cams.height[i])
        if bool((high[0] < 0) | (high[1] < 0) | (low[0] > width) | (low[1] > height)):
            return None, f"training view {i} does not see the visual hull"
        centre, extent = (low + high) / 2, float((high - low).max())
        side = max(int(round(extent * (1 + 2 * margin))), min(size, int(min(width, height))))
        left, top = int(round(float(centre[0]) - side / 2)), int(round(float(centre[1]) - side / 2))
        if side <= width:
            left = min(max(left, 0), int(width) - side)
        if side <= height:
            top = min(max(top, 0), int(height) - side)
        frames.append(Frame(left, top, side))
    return frames, ""


def frame_cameras(cameras, frames: List[Frame], size: int):
    """The cameras seeing only their frames, drawn ``size`` pixels across (intrinsics shifted and scaled)."""
    cams = cameras.reshape(-1)
    framed = cams[torch.arange(len(cams))]  # a copy
    scale = torch.tensor([size / f.side for f in frames], dtype=cams.fx.dtype).reshape(-1, 1)
    left = torch.tensor([float(f.left) for f in frames], dtype=cams.cx.dtype).reshape(-1, 1)
    top = torch.tensor([float(f.top) for f in frames], dtype=cams.cy.dtype).reshape(-1, 1)
    framed.fx, framed.fy = cams.fx * scale, cams.fy * scale
    framed.cx, framed.cy = (cams.cx - left) * scale, (cams.cy - top) * scale
    framed.width = torch.full_like(cams.width, size)
    framed.height = torch.full_like(cams.height, size)
    return framed


def frame_view(view: Dict[str, Tensor], frame: Frame, size: int) -> Dict[str, Tensor]:
    """An image (and its mask, when it has one) cropped to ``frame`` and scaled to ``size`` pixels: beyond the photo,
    its edge repeated, and no object."""
    image = view["image"]
    height, width = image.shape[:2]
    if (frame.left, frame.top, frame.side) == (0, 0, size) and (height, width) == (size, size):
        return dict(view)  # the whole photo, at its own size
    pads = (max(0, -frame.left), max(0, frame.left + frame.side - width))
    pads_y = (max(0, -frame.top), max(0, frame.top + frame.side - height))
    x0, y0 = frame.left + pads[0], frame.top + pads_y[0]
    out = dict(view)
    chw = image.permute(2, 0, 1)[None].float()
    chw = F.pad(chw, (*pads, *pads_y), mode="replicate")[..., y0 : y0 + frame.side, x0 : x0 + frame.side]
    scaled = F.interpolate(chw, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    scaled = scaled.permute(1, 2, 0)
    out["image"] = (
        scaled.round().clamp(0, 255).to(image.dtype) if image.dtype == torch.uint8 else scaled.to(image.dtype)
    )
    if "mask" in view:
        mask = view["mask"].reshape(1, 1, height, width).float()
        mask = F.pad(mask, (*pads, *pads_y))[..., y0 : y0 + frame.side, x0 : x0 + frame.side]
        mask = F.interpolate(mask, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out["mask"] = (mask[0, 0] > 0.5)[..., None].to(view["mask"].device)
    return out
