"""The visual hull of the object, carved from the training silhouettes, and where on it strokes should start.

When the training views have silhouettes (object masks, an alpha channel, or a uniform background:
:mod:`.silhouettes`), every voxel of a grid around the point the cameras look at that projects outside the object in
some view is carved away (:func:`carve`: vectorised, coarse then fine). The remaining voxels' surface is scored by how
consistently it projects onto edges of the training images (:func:`edge_scores`, on Canny's one-pixel edges,
:func:`~nerfstudio_clipsketch.edge_maps.thin_edges`): silhouette rims and creases score high in many views, flat
interiors low, and so do smooth round surfaces, whose shading gives no consistent edge. :class:`VisualHull` keeps the
well-scored surface points, pulled onto the middle of the bands they form along each edge (:func:`onto_ridges`), and
:meth:`VisualHull.trace_strokes` grows strokes along them: each new stroke starts at the scored point farthest from
the strokes so far and follows the ridge of scored points both ways until it turns a corner or runs out, then becomes
a Bézier curve fitted to its trace. Isolated points (specks of noise on the hull) get no stroke.

Scenes without silhouettes (photographs without masks, forward-facing captures) have no hull, and initialisation
falls back to the dataparser's points or a sphere.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from nerfstudio.cameras.cameras import Cameras
from torch import Tensor

from nerfstudio_clipsketch import curves
from nerfstudio_clipsketch.cameras import camera_axes_centre, get_viewmats, project_points
from nerfstudio_clipsketch.silhouettes import on_paper, training_silhouettes

logger = logging.getLogger(__name__)

MASK_SIZE = 256
"""Silhouettes and edges are carved at this many pixels across their longer side, whatever the photos' size."""


def _resample(maps: Float[Tensor, "N H W"], size: int, mode: str = "area") -> Tensor:
    """Maps ``size`` pixels across their longer side: scaled down by averaging (``area``) or keeping the maximum
    (``max``: thin lines stay), scaled up bilinearly."""
    scale = size / max(maps.shape[1:])
    shape = (max(1, round(maps.shape[1] * scale)), max(1, round(maps.shape[2] * scale)))
    if scale > 1.0:
        return F.interpolate(maps[:, None].float(), size=shape, mode="bilinear", align_corners=False)[:, 0]
    if mode == "max":
        return F.adaptive_max_pool2d(maps[:, None].float(), shape)[:, 0]
    return F.interpolate(maps[:, None].float(), size=shape, mode="area")[:, 0]


def _dilate(masks: Tensor, pixels: int) -> Tensor:
    if pixels <= 0:
        return masks
    wide = F.max_pool2d(masks[:, None].float(), (2 * pixels + 1, 1), stride=1, padding=(pixels, 0))  # separable
    return F.max_pool2d(wide, (1, 2 * pixels + 1), stride=1, padding=(0, pixels))[:, 0] > 0.5


def _project(points: Tensor, cameras: Cameras, scale: float) -> Tuple[Tensor, Tensor]:
    """Pixel coordinates ``[N, M, 2]`` (of images scaled by ``scale``) and depths ``[N, M]`` of ``points``."""
    viewmats = get_viewmats(cameras.camera_to_worlds.float())
    Ks = cameras.get_intrinsics_matrices().float()
    Ks[:, :2] *= scale
    return project_points(points, viewmats, Ks)


def _lookup(maps: Tensor, uv: Tensor, depth: Tensor) -> Tuple[Tensor, Tensor]:
    """Values of ``maps [N, H, W]`` at pixels ``uv [N, M, 2]``, and whether each point is in view."""
    height, width = maps.shape[1:]
    col, row = uv[..., 0].floor().long(), uv[..., 1].floor().long()
    inside = (depth > 0) & (col >= 0) & (col < width) & (row >= 0) & (row < height)
    views = torch.arange(maps.shape[0])[:, None].expand_as(col)
    values = maps[views, row.clamp(0, height - 1), col.clamp(0, width - 1)]
    return values, inside


def carve(
    cameras: Cameras,
    masks: Bool[Tensor, "N H W"],
    lo: Tensor,
    hi: Tensor,
    resolution: int,
    chunk: int = 1 << 18,
    misses: int = 0,
) -> Tuple[Bool[Tensor, "X Y Z"], Tensor, float]:
    """Occupancy of a grid over the box ``[lo, hi]`` whose longest side has ``resolution`` voxels: a voxel stays when
    it projects onto the object in every view that sees it but at most ``misses`` (0: every view, the visual hull;
    more for silhouettes found by a segmenter, which some views get wrong), and at least half the views see it.
    Returns the grid, the centre of its first voxel and the voxel size."""
    size = float((hi - lo).max()) / resolution
    dims = [max(1, int(math.ceil(float(hi[i] - lo[i]) / size))) for i in range(3)]
    axes = [lo[i] + (torch.arange(dims[i]) + 0.5) * size for i in range(3)]
    centres = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    keep, scale = torch.zeros(centres.shape[0], dtype=torch.bool), masks.shape[1] / float(cameras.height[0])
    for start in range(0, centres.shape[0], chunk):
        # View by view, only the voxels no earlier view carved: most of the box goes in the first few views.
        index = torch.arange(start, min(start + chunk, centres.shape[0]))
        seen, missed = torch.zeros(len(index)), torch.zeros(len(index))
        for view in range(len(masks)):
            uv, depth = _project(centres[index], cameras[view : view + 1], scale)
            on_object, in_view = _lookup(masks[view : view + 1], uv, depth)
            missed = missed + (in_view[0] & ~on_object[0]).float()
            stays = missed <= misses
            index, seen, missed = index[stays], seen[stays] + in_view[0, stays].float(), missed[stays]
        keep[index] = seen >= 0.5 * len(masks)
    return keep.reshape(dims), centres[0], size


def silhouette_fit(shell: Tensor, cameras: Cameras, masks: Tensor, voxel: float, chunk: int = 32) -> float:
    """Mean share of each view's silhouette ``masks [N, H, W]`` the hull's surface voxels ``shell`` cover, projected
    back as squares that hold a voxel's projection (at the nearest voxel; 2 pixels at least), not as points a coarse
    grid spreads apart: about 1 when cameras and images agree, less when carving kept only what wrong views share."""
    scale, radius = masks.shape[1] / float(cameras.height[0]), torch.zeros(len(masks), dtype=torch.long)
    drawn, covered = torch.zeros_like(masks), torch.zeros(len(masks))
    for first in range(0, len(masks), chunk):  # a few views at a time: memory bounded however many there are
        uv, depth = _project(shell, cameras[first : first + chunk], scale)
        col, row = uv[..., 0].floor().long(), uv[..., 1].floor().long()
        hit = (depth > 0) & (col >= 0) & (col < masks.shape[2]) & (row >= 0) & (row < masks.shape[1])
        views = torch.arange(first, first + len(uv))[:, None].expand_as(col)
        drawn[views[hit], row[hit], col[hit]] = True
        near = depth.masked_fill(~hit, math.inf).amin(1).clamp_min(1e-6)  # the nearest voxel's half diagonal
        half = 0.5 * math.sqrt(3) * voxel * scale * cameras.fy[first : first + chunk].reshape(-1).float() / near
        radius[first : first + len(uv)] = (half + 0.5).ceil().clamp(2, max(masks.shape[1:])).long()  # +floor()'s
    for pixels in radius.unique().tolist():  # views alike dilated together
        same = radius == pixels
        hits = (_dilate(drawn[same], pixels) & masks[same]).flatten(1).sum(1)
        covered[same] = hits / masks[same].flatten(1).sum(1).clamp_min(1)
    return float(covered.mean())


def surface(occupancy: Bool[Tensor, "X Y Z"]) -> Bool[Tensor, "X Y Z"]:
    """Occupied voxels with an empty (or out-of-grid) face neighbour."""
    padded = F.pad(occupancy[None, None].float(), (1, 1, 1, 1, 1, 1))
    interior = -F.max_pool3d(-padded, 3, stride=1)[0, 0] > 0.5  # eroded by a 3x3x3 box
    return occupancy & ~interior


def normals(occupancy: Bool[Tensor, "X Y Z"], indices: Tensor) -> Tensor:
    """Outward unit normals at voxels ``indices [M, 3]``: minus the gradient of the occupancy, smoothed."""
    smooth = F.avg_pool3d(F.pad(occupancy[None, None].float(), (2,) * 6), 5, stride=1)[0, 0]
    padded, at = F.pad(smooth, (1, 1, 1, 1, 1, 1)), indices + 1  # central differences along each axis
    steps = torch.eye(3, dtype=torch.long)
    gradient = torch.stack([padded[(at + e).unbind(-1)] - padded[(at - e).unbind(-1)] for e in steps], dim=-1)
    return -gradient / gradient.norm(dim=-1, keepdim=True).clamp_min(1e-6)


def edge_scores(
    points: Tensor, point_normals: Tensor, cameras: Cameras, edges: Float[Tensor, "N H W"], threshold: float = 0.3
) -> Tensor:
    """Share of the views facing each surface point (its normal toward the camera) in which it lands on (within a
    pixel of) an edge. Facing stands in for visibility: exact on convex shapes, and it ignores other parts in
    front."""
    on_edge = _dilate(edges > threshold, 1)
    uv, depth = _project(points, cameras, edges.shape[1] / float(cameras.height[0]))
    hits, in_view = _lookup(on_edge, uv, depth)
    towards = cameras.camera_to_worlds[:, None, :3, 3] - points[None]  # [N, M, 3]
    facing = in_view & ((towards * point_normals[None]).sum(-1) > 0.1 * towards.norm(dim=-1))
    return (hits & facing).float().sum(0) / facing.float().sum(0).clamp_min(1)


def onto_ridges(
    points: Float[Tensor, "P 3"], scores: Float[Tensor, "P"], voxel: float, radius: float = 3.0, iterations: int = 2
) -> Float[Tensor, "P 3"]:
    """Scored points moved onto the middle of their band: an edge seen in many views scores a band a few voxels
    wide, highest along the edge itself, so each point moves to the score-weighted mean of the points within
    ``radius`` voxels (``iterations`` times). Strokes traced along the result follow the edge, not the band."""
    from scipy.sparse import coo_matrix
    from scipy.spatial import cKDTree

    p, w = points.double().numpy(), scores.double().numpy()
    for _ in range(iterations):
        pairs = cKDTree(p).query_pairs(radius * voxel, output_type="ndarray")
        rows = np.concatenate([pairs[:, 0], pairs[:, 1], np.arange(len(p))])
        cols = np.concatenate([pairs[:, 1], pairs[:, 0], np.arange(len(p))])
        weights = coo_matrix((w[cols], (rows, cols)), shape=(len(p), len(p))).tocsr()
        p = (weights @ p) / np.asarray(weights.sum(1))
    return torch.from_numpy(p).to(points.dtype)


def fit_bezier(points: Float[Tensor, "M 3"], degree: int) -> Float[Tensor, "degree_plus_one 3"]:
    """Least-squares Bézier curve through a polyline, parameterised by chord length (ends interpolated)."""
    chords = (points[1:] - points[:-1]).norm(dim=-1)
    if len(points) < 2 * (degree + 1):  # too few points to pin the inner control points: a straight stroke
        steps = torch.linspace(0, 1, degree + 1, dtype=points.dtype)[:, None]
        return points[:1] + steps * (points[-1:] - points[:1])
    t = torch.cat([torch.zeros(1), chords.cumsum(0)]) / chords.sum().clamp_min(1e-12)
    basis = curves.bernstein_basis(t.double(), degree)  # [M, D+1]
    inner = basis[:, 1:-1]
    rhs = points.double() - basis[:, :1] * points[:1].double() - basis[:, -1:] * points[-1:].double()
    middle = torch.linalg.lstsq(inner, rhs).solution if degree > 1 else torch.zeros(0, 3, dtype=torch.double)
    return torch.cat([points[:1].double(), middle, points[-1:].double()]).to(points.dtype)


@dataclass
class VisualHull:
    """The carved hull: its voxel grid, and the surface points that lie on image edges with their scores."""

    occupancy: Bool[Tensor, "X Y Z"]
    origin: Float[Tensor, "3"]
    """Centre of voxel (0, 0, 0)."""
    voxel_size: float
    points: Float[Tensor, "P 3"]
    """Surface points that land on image edges in a good share of their views (rims, creases)."""
    scores: Float[Tensor, "P"]
    """That share, in [0, 1]."""
    surface_points: Float[Tensor, "S 3"]
    """Every surface voxel's centre."""
    surface_scores: Float[Tensor, "S"]
    fit: float = 1.0
    """Mean share of a training silhouette the hull covers, projected back (:func:`silhouette_fit`)."""

    @property
    def diagonal(self) -> float:
        """Diagonal of the hull's bounding box."""
        idx = self.occupancy.nonzero().float()
        return float((idx.max(0).values - idx.min(0).values + 1).norm()) * self.voxel_size

    @torch.no_grad()
    def visible(self, points: Tensor, cameras: Cameras, start: float = 3.0, thickness: int = 1) -> Tensor:
        """``[C, N]``: whether each point sees each camera past the hull: fewer than ``thickness`` occupied voxels on
        the segment toward the camera, from ``start`` voxels away (a point on the surface must not hide itself) to
        where it leaves the hull's box. Points on the object's far side are hidden; its rims and creases facing a
        camera are not."""
        p = points.detach().float()  # on the points' device: no host sync in the training step
        origins = cameras.reshape(-1).camera_to_worlds[:, :3, 3].to(p)
        steps = torch.arange(start, start + 2.0 * max(self.occupancy.shape), 1.0, device=p.device) * self.voxel_size
        rows = []
        for origin in origins:
            towards = origin - p  # [N, 3]
            distance = towards.norm(dim=-1, keepdim=True)
            ray = p[:, None] + (towards / distance)[:, None] * steps[None, :, None]  # [N, K, 3]
            before_camera = steps[None, :] < distance
            blocked = self.occupied(ray.reshape(-1, 3)).reshape(ray.shape[:2]) & before_camera
            rows.append(blocked.sum(-1) < thickness)
        return torch.stack(rows)

    def occupied(self, points: Tensor) -> Tensor:
        """Whether each point lies in an occupied voxel (on the points' device)."""
        if self.occupancy.device != points.device:  # moved once, to where the sketch is
            self.occupancy, self.origin = self.occupancy.to(points.device), self.origin.to(points.device)
        idx = torch.round((points - self.origin) / self.voxel_size).long()
        dims = torch.tensor(self.occupancy.shape, device=points.device)
        valid = ((idx >= 0) & (idx < dims)).all(-1)
        safe = torch.minimum(idx.clamp_min(0), dims - 1)
        return valid & self.occupancy[safe[:, 0], safe[:, 1], safe[:, 2]]

    def trace_strokes(
        self, count: int, degree: int, max_length: float, short_length: float,
        existing: Optional[Float[Tensor, "K 3"]] = None, min_scale: float = 2.0,
    ) -> List[Float[Tensor, "degree_plus_one 3"]]:  # fmt: skip
        """Up to ``count`` new strokes along the scored surface points, each starting at the point farthest from
        ``existing`` points and the strokes traced before it (see the module docstring), and fewer when every scored
        point lies within ``min_scale`` voxels of a stroke. ``max_length`` bounds a trace; a trace shorter than
        ``min_scale`` voxels becomes a straight stroke ``short_length`` long along the local direction (a
        stroke, not a dot), and an isolated point (noise on the hull) no stroke."""
        from scipy.spatial import cKDTree

        points = self.points.double().numpy()
        if len(points) == 0:
            return []
        tree = cKDTree(points)
        covered = np.full(len(points), np.inf)
        if existing is not None and len(existing):
            covered = cKDTree(existing.double().numpy()).query(points)[0]
        strokes: List[Tensor] = []
        for _ in range(4 * count):  # isolated points are skipped, not drawn
            seed = int(np.argmax(covered))
            if len(strokes) == count or covered[seed] < min_scale * self.voxel_size:
                break  # enough strokes, or every scored point lies on a stroke already
            trace = _trace(points, tree, seed, self.voxel_size, max_length)
            if _length(trace) < min_scale * self.voxel_size:
                direction = _direction(points, tree, points[seed], 6.0 * self.voxel_size)
                if direction is None:  # a speck of noise on the hull
                    covered[tree.query_ball_point(points[seed], min_scale * self.voxel_size)] = 0.0
                    continue
                half = 0.5 * short_length * direction
                trace = np.stack([points[seed] - half, points[seed] + half])
            stroke = fit_bezier(torch.from_numpy(trace), degree).float()
            samples = curves.evaluate(stroke[None].double(), torch.linspace(0, 1, 64, dtype=torch.double))[0]
            covered = np.minimum(covered, cKDTree(samples.numpy()).query(points)[0])
            strokes.append(stroke)
        return strokes


def _length(trace: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(trace, axis=0), axis=-1).sum()) if len(trace) > 1 else 0.0


def _direction(points: np.ndarray, tree, centre: np.ndarray, radius: float) -> Optional[np.ndarray]:
    """Principal direction of the scored points near ``centre`` (None when they do not form a line)."""
    near = points[tree.query_ball_point(centre, radius)]
    if len(near) < 3:
        return None
    _, values, vectors = np.linalg.svd(near - near.mean(0), full_matrices=False)
    return vectors[0]


def _trace(
    points: np.ndarray,
    tree,
    seed: int,
    step: float,
    max_length: float,
    max_turn: float = 45.0,
    max_bend: float = 75.0,
    max_corner: float = 35.0,
    window: int = 3,
) -> np.ndarray:
    """Follow the ridge of scored points both ways from ``seed``, in steps of a voxel, until nothing is near, the
    path turns more than ``max_turn`` degrees in a step, ``max_corner`` degrees over ``window`` steps (a corner
    rounded off by the voxels) or ``max_bend`` degrees in all (a cubic is one smooth piece), or the trace is
    ``max_length`` long."""
    start = points[seed]
    direction = _direction(points, tree, start, 6.0 * step)
    if direction is None:
        return start[None]
    halves = []
    cos_turn, cos_bend = math.cos(math.radians(max_turn)), math.cos(math.radians(max_bend))
    cos_corner = math.cos(math.radians(max_corner))
    for sign in (1.0, -1.0):
        path, here, heading = [], start, sign * direction
        steps = [heading]
        while _length(np.array([start, *path])) < max_length / 2:
            near = tree.query_ball_point(here + 2.0 * step * heading, 1.5 * step)
            if not near:
                break
            step_to = points[near].mean(0) - here
            if np.linalg.norm(step_to) < 0.5 * step:
                break
            step_to = step_to / np.linalg.norm(step_to)
            if step_to @ heading < cos_turn or step_to @ (sign * direction) < cos_bend:
                break
            if len(steps) >= window and step_to @ steps[-window] < cos_corner:
                break
            steps.append(step_to)
            heading = step_to + heading
            heading /= np.linalg.norm(heading)
            here = here + step_to * min(2.0 * step, float(np.linalg.norm(points[near].mean(0) - here)))
            path.append(here)
        halves.append(path)
    return np.array([*halves[1][::-1], start, *halves[0]])


def carve_hull(
    cameras: Cameras,
    images: Sequence[Float[Tensor, "H W C"]],
    background: Float[Tensor, "3"],
    resolution: int = 128,
    min_score: float = 0.5,
    masks: Optional[Sequence[Tensor]] = None,
    edges: Optional[Callable[[Tensor], Tensor]] = None,
    misses: float = 0.0,
) -> Tuple[Optional[VisualHull], str]:
    """The visual hull of the object in ``images`` (RGB or RGBA in [0, 1], seen by ``cameras``; RGB composited over
    ``background``), carved from the capture's object ``masks`` when it has them (:mod:`.silhouettes`), within the
    cube around the point the cameras look at that every camera sees whole, or None and the reason when there is
    none (no silhouettes, nothing left after carving). Its surface is scored on ``edges`` of the images (default
    :func:`~nerfstudio_clipsketch.edge_maps.thin_edges`; ``benchmarks/bench_starts.py`` compares others). A voxel
    may project off the silhouettes in a share ``misses`` of the views (0: none, the visual hull of exact masks)."""
    from nerfstudio_clipsketch.edge_maps import thin_edges

    edges = edges or thin_edges

    silhouettes, source = training_silhouettes(images, background, masks)
    if silhouettes is None:
        return None, source
    cameras = cameras.reshape(-1).to("cpu")
    c2w = cameras.camera_to_worlds.float()
    centre = camera_axes_centre(c2w)
    half_fov = torch.atan(0.5 * torch.minimum(cameras.width, cameras.height).float() / cameras.fy.float()).min()
    half_size = float((c2w[:, :3, 3] - centre).norm(dim=-1).min() * torch.tan(half_fov))
    on_edges = [edges(image) for image in on_paper(images, background.cpu().float(), masks)]
    masks = _dilate(_resample(silhouettes, MASK_SIZE) > 0.25, 1)
    edge_maps = _resample(torch.stack(on_edges), MASK_SIZE, mode="max")
    lo, hi = centre - half_size, centre + half_size
    # The coarse pass only bounds the object: its voxels' centres must not miss thin parts, so the silhouettes are
    # widened by a coarse voxel's size in pixels (at the nearest camera).
    coarse_resolution = max(16, resolution // 4)
    pixels_per_unit = float(cameras.fy.max()) * masks.shape[1] / float(cameras.height[0])
    nearest = float((c2w[:, :3, 3] - centre).norm(dim=-1).min() - half_size)
    widen = int(math.ceil(2.0 * half_size / coarse_resolution * pixels_per_unit / max(nearest, 1e-6)))
    allowed = int(misses * len(masks))
    coarse, origin, size = carve(cameras, _dilate(masks, widen), lo, hi, coarse_resolution, misses=allowed)
    occupied = coarse.nonzero()
    if len(occupied) == 0:
        return None, "no voxel projects onto the object in every view (are the cameras and images consistent?)"
    lo = origin + (occupied.min(0).values - 1.5) * size
    hi = origin + (occupied.max(0).values + 1.5) * size
    occupancy, origin, size = carve(cameras, masks, lo, hi, resolution, misses=allowed)
    if not bool(occupancy.any()):
        return None, "no voxel projects onto the object in every view (are the cameras and images consistent?)"
    shell_indices = surface(occupancy).nonzero()
    shell = shell_indices.float() * size + origin
    scores = edge_scores(shell, normals(occupancy, shell_indices), cameras, edge_maps)
    good = scores >= min(min_score, float(scores.max()))
    ridges = onto_ridges(shell[good], scores[good], size)
    fit = silhouette_fit(shell, cameras, masks, size)
    return VisualHull(occupancy, origin, size, ridges, scores[good], shell, scores, fit), "carved"
