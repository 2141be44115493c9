"""A part written as an ABC-NEF object folder, and the cache of the whole family.

Layout of ``<output>/<part>/`` (what ``ns-train clipsketch --data <part>`` and ``clipsketch-eval`` read as ABC-NEF)::

    transforms_train.json  transforms_val.json   :mod:`.views`
    train/<i>_colors.png   val/<i>_colors.png    RGBA renders (:mod:`.raster`), transparent background
    gt/                                          :mod:`.ground_truth`
    family.json                                  what was generated (name, kind, seed, size, version); written
                                                 last, so a folder without it is an interrupted generation
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from benchmarks.family.ground_truth import GT_SPACING, GroundTruth, normalise, write_ground_truth
from benchmarks.family.parts import PARTS, Part
from benchmarks.family.raster import corner_normals, render
from benchmarks.family.views import TRAIN_VIEWS, VAL_VIEWS, focal_length, image_name, poses, transforms

VERSION = 1
"""Bumped whenever a part, the cameras, the renderer or the ground truth change: cached parts of another version are
generated again."""
MANIFEST = "family.json"


def default_output() -> Path:
    """``$XDG_CACHE_HOME/nerfstudio-clipsketch/family`` (``~/.cache/...``), beside the built-in scene's cache."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "nerfstudio-clipsketch" / "family"


def write_part(
    part: Part,
    folder: Path,
    size: int = 400,
    train_views: int = TRAIN_VIEWS,
    val_views: int = VAL_VIEWS,
    spacing: float = GT_SPACING,
) -> GroundTruth:
    """Writes ``part`` into ``folder`` (created; existing files are overwritten) and returns its ground truth."""
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    started = time.perf_counter()
    mesh = normalise(part.mesh())
    gt = write_ground_truth(mesh, folder / "gt", part.name, spacing, seed=part.seed)
    normals = corner_normals(mesh)
    for split, count in (("train", train_views), ("val", val_views)):
        (folder / split).mkdir(parents=True, exist_ok=True)
        camera_to_worlds = poses(split, count)
        for i, c2w in enumerate(camera_to_worlds):
            rendered = render(mesh, c2w, focal_length(size), size, size, normals)
            Image.fromarray(rendered.rgba).save(folder / image_name(split, i), compress_level=3)
        (folder / f"transforms_{split}.json").write_text(
            json.dumps(transforms(split, camera_to_worlds, size), indent=1)
        )
    manifest = {
        "name": part.name, "kind": part.kind, "seed": part.seed, "size": size, "version": VERSION,
        "train_views": train_views, "val_views": val_views, "gt_spacing": spacing,
        "num_faces": len(mesh.faces), "num_curves": len(gt.curves), "num_gt_points": len(gt.points),
        "seconds": round(time.perf_counter() - started, 2),
    }  # fmt: skip
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return gt


def is_current(folder: Path, size: int) -> bool:
    """Whether ``folder`` holds a complete part generated at ``size`` by this :data:`VERSION`."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return manifest.get("version") == VERSION and manifest.get("size") == size


def ensure_family(output: Path, names: Iterable[str] | None = None, size: int = 400, log=print) -> list[Path]:
    """Generates the parts ``names`` (all of :data:`PARTS` when None) that ``output`` does not hold yet at ``size``;
    returns every requested part's folder.

    Raises:
        KeyError: an unknown part name (the message lists the known ones).
        FileExistsError: a part's folder exists, is not empty and was not written by this module.
    """
    names = list(PARTS) if names is None else list(names)
    unknown = [name for name in names if name not in PARTS]
    if unknown:
        raise KeyError(f"unknown part(s) {unknown}; the family has: {', '.join(PARTS)}")
    folders = []
    for name in names:
        folder = Path(output) / name
        folders.append(folder)
        if is_current(folder, size):
            continue
        if folder.exists() and any(folder.iterdir()):
            if not (folder / MANIFEST).exists() and not (folder / "gt").is_dir():
                raise FileExistsError(f"{folder} exists and is not a family part: choose another --output")
            shutil.rmtree(folder)
        started = time.perf_counter()
        gt = write_part(PARTS[name], folder, size)
        log(f"{name}: {len(gt.curves)} sharp curves, {len(gt.points)} points, {time.perf_counter() - started:.1f} s")
    return folders
