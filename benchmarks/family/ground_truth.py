"""A part's exact ground truth, written where :func:`nerfstudio_clipsketch.evaluation.references.abcnef_ground_truth`
reads ABC-NEF's.

- The part is placed as ABC-NEF places its objects (:func:`normalise`): scaled by ``1 / (longest bbox side)`` and
  moved so the bbox centre is at (0.5, 0.5, 0.5). That is the scene's world frame: the cameras are posed and the
  images rendered in it, and everything in ``gt/`` is written in it, so the reader's own normalisation (from
  ``stats.json``) is the identity.
- Sharp edges (:func:`sharp_edges`): mesh edges whose two faces meet at more than 30 degrees (the angle between their
  normals). Round surfaces are tessellated finely enough (:mod:`.shapes`) that their facets never qualify.
- Curves (:func:`edge_chains`): sharp edges joined into polylines, broken where other than two sharp edges meet or
  where a polyline turns by more than 30 degrees; ``type`` is ``Line``, ``Circle`` (a closed or open arc) or
  ``Other``. Every curve has ``sharp: true``.
- NEF's protocol scores against the listed vertices themselves, so each curve's ``vert_indices`` also lists points
  added every :data:`GT_SPACING` along its edges (:func:`densify`). The added points are appended to the ``.obj``
  after the mesh's vertices; no face uses them (load it with ``trimesh.load(..., process=False)`` to keep them).

Files (``<name>`` is the part's name, following ABC's ``<id>_..._000`` names)::

    gt/<name>_trimesh_000.obj   the mesh (world frame) and, after its vertices, the added edge points
    gt/<name>_features_000.yml  ``curves: [{sharp, type, vert_indices}]`` and ``surfaces: []``
    gt/stats.json               ``bbox`` [min xyz, max xyz, ranges], ``diag``, ``curves`` (types), ``#sharp``
    gt/surface.npy              surface samples [N, 3] float32, uniform by area (world frame)
"""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
import yaml

SHARP_ANGLE_DEG = 30.0
"""A mesh edge is sharp when its faces' normals differ by more than this."""
GT_SPACING = 0.005
"""Largest gap between ground-truth points along a sharp edge, in the unit cube's units."""
SURFACE_SAMPLES = 100_000


@dataclass(frozen=True)
class GroundTruth:
    """What ``gt/`` holds: ``vertices`` are the mesh's followed by the added edge points; ``curves`` index them."""

    vertices: np.ndarray  # [V + added, 3]
    curves: list[np.ndarray]  # one index array per curve, in order along it
    types: list[str]

    @property
    def points(self) -> np.ndarray:
        """The points NEF's protocol scores against: every curve's vertices in turn (shared endpoints repeated)."""
        return self.vertices[np.concatenate(self.curves)]


def normalise(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """``mesh`` in ABC-NEF's frame: longest bbox side 1, bbox centre at (0.5, 0.5, 0.5) (coordinates rounded to
    1e-9, what the .obj keeps)."""
    low, high = mesh.bounds
    vertices = (mesh.vertices - (low + high) / 2) / float(np.max(high - low)) + 0.5
    return trimesh.Trimesh(np.round(vertices, 9), mesh.faces.copy(), process=False)


def sharp_edges(mesh: trimesh.Trimesh, angle_deg: float = SHARP_ANGLE_DEG) -> np.ndarray:
    """``[E, 2]`` vertex indices of the edges whose two faces' normals differ by more than ``angle_deg``.

    Raises:
        ValueError: the mesh is not closed (an edge without exactly two faces has no dihedral angle).
    """
    if not mesh.is_watertight:
        raise ValueError("sharp edges need a closed mesh: every edge shared by exactly two faces")
    sharp = mesh.face_adjacency_angles > math.radians(angle_deg)
    return np.sort(mesh.face_adjacency_edges[sharp], axis=1)


def edge_chains(vertices: np.ndarray, edges: np.ndarray, turn_deg: float = SHARP_ANGLE_DEG) -> list[np.ndarray]:
    """The edges joined into polylines of vertex indices (a closed loop repeats its first vertex at the end).

    A polyline ends at a vertex where other than two edges meet, or where it turns by more than ``turn_deg``.
    """
    neighbours: dict[int, list[int]] = defaultdict(list)
    for a, b in edges.tolist():
        neighbours[a].append(b)
        neighbours[b].append(a)
    cos_turn = math.cos(math.radians(turn_deg))

    def ends_here(v: int) -> bool:
        if len(neighbours[v]) != 2:
            return True
        before, after = vertices[v] - vertices[neighbours[v][0]], vertices[neighbours[v][1]] - vertices[v]
        return float(before @ after) < cos_turn * np.linalg.norm(before) * np.linalg.norm(after)

    used: set = set()

    def walk(start: int, first: int) -> np.ndarray:
        chain, previous, current = [start, first], start, first
        used.add((min(start, first), max(start, first)))
        while current != start and not ends_here(current):
            a, b = neighbours[current]
            previous, current = current, (b if a == previous else a)
            used.add((min(previous, current), max(previous, current)))
            chain.append(current)
        return np.array(chain, dtype=np.int64)

    chains = []
    for start in sorted(v for v in neighbours if ends_here(v)):
        for first in neighbours[start]:
            if (min(start, first), max(start, first)) not in used:
                chains.append(walk(start, first))
    for a, b in edges.tolist():  # what is left are loops without an end
        if (a, b) not in used:
            chains.append(walk(a, b))
    return chains


def densify(vertices: np.ndarray, chains: list[np.ndarray], spacing: float = GT_SPACING):
    """Points added along every edge of ``chains`` so that neighbours lie at most ``spacing`` apart.

    Returns ``(vertices with the added points appended, chains with the added points' indices in place)``.
    """
    added: list[np.ndarray] = []
    dense_chains = []
    count = len(vertices)
    for chain in chains:
        indices = [int(chain[0])]
        for a, b in itertools.pairwise(chain):
            steps = math.ceil(np.linalg.norm(vertices[b] - vertices[a]) / spacing)
            if steps > 1:
                t = np.arange(1, steps)[:, None] / steps
                added.append(vertices[a] * (1 - t) + vertices[b] * t)
                indices += range(count, count + steps - 1)
                count += steps - 1
            indices.append(int(b))
        dense_chains.append(np.array(indices, dtype=np.int64))
    return np.concatenate([vertices, *added]) if added else vertices, dense_chains


def curve_type(points: np.ndarray, tolerance: float = 1e-6) -> str:
    """``Line`` if the points are collinear, ``Circle`` if they lie on one circle (a full circle or an arc),
    else ``Other`` (``tolerance`` is relative to the points' extent)."""
    centred = points - points.mean(0)
    extent = float(np.ptp(points, axis=0).max())
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    spread = singular / math.sqrt(len(points))
    if len(points) < 3 or spread[1] <= tolerance * extent:
        return "Line"
    if len(points) < 4 or spread[2] > tolerance * extent:
        return "Other"
    xy = centred @ axes[:2].T  # coordinates in the curve's plane
    design = np.column_stack([xy, np.ones(len(xy))])
    solution, *_ = np.linalg.lstsq(design, (xy**2).sum(1), rcond=None)
    centre = solution[:2] / 2
    radius = math.sqrt(max(solution[2] + centre @ centre, 0.0))
    residual = np.abs(np.linalg.norm(xy - centre, axis=1) - radius).max()
    return "Circle" if residual <= tolerance * extent else "Other"


def ground_truth(mesh: trimesh.Trimesh, spacing: float = GT_SPACING) -> GroundTruth:
    """The sharp curves of ``mesh`` (already in the world frame), densified."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    chains = edge_chains(vertices, sharp_edges(mesh))
    types = [curve_type(vertices[chain[:-1] if chain[0] == chain[-1] else chain]) for chain in chains]
    dense, curves = densify(vertices, chains, spacing)
    return GroundTruth(dense, curves, types)


def write_ground_truth(
    mesh: trimesh.Trimesh,
    gt_dir: Path,
    name: str,
    spacing: float = GT_SPACING,
    surface_samples: int = SURFACE_SAMPLES,
    seed: int = 0,
) -> GroundTruth:
    """Writes ``gt/`` (see the module docstring) for ``mesh`` (already in the world frame); returns what it wrote."""
    gt = ground_truth(mesh, spacing)
    gt_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"v {x:.9f} {y:.9f} {z:.9f}" for x, y, z in gt.vertices.tolist()]
    lines += [f"f {a} {b} {c}" for a, b, c in (mesh.faces + 1).tolist()]
    (gt_dir / f"{name}_trimesh_000.obj").write_text("\n".join(lines) + "\n")
    features = {
        "curves": [{"sharp": True, "type": t, "vert_indices": c.tolist()} for t, c in zip(gt.types, gt.curves)],
        "surfaces": [],
    }
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    with open(gt_dir / f"{name}_features_000.yml", "w", encoding="utf-8") as f:
        yaml.dump(features, f, Dumper=dumper, default_flow_style=None, sort_keys=False, width=120)
    low, high = mesh.bounds
    stats = {
        "bbox": [*low.tolist(), *high.tolist(), *(high - low).tolist()],
        "diag": float(np.linalg.norm(high - low)),
        "curves": gt.types,
        "#sharp": len(gt.curves),
    }
    (gt_dir / "stats.json").write_text(json.dumps(stats, indent=1))
    surface = trimesh.sample.sample_surface(mesh, surface_samples, seed=seed)[0]
    np.save(gt_dir / "surface.npy", surface.astype(np.float32))
    return gt
