"""Every measurement a trained sketch's dataset allows, as one JSON-ready report, and its tables for the terminal.

The sketch's curves are taken in the dataset's own coordinates (:meth:`ClipSketchPipeline.sketch`), sampled densely
and evenly in arc length over the whole sketch (each curve gets samples in proportion to its length, so that shares of
points are shares of length: a stroke shrunk to a dot counts for next to nothing; the report lists every curve's
length), and compared with whatever the dataset holds:

- ground-truth curves (the built-in scene: ``metadata["clipsketch_gt_curves"]``): :func:`.metrics.curve_metrics`
  against the ground-truth curves, sampled the same way (chamfer distance, precision, recall, F1);
- world-position images (clipasso3d scenes with ``world_pos/``): :func:`.metrics.surface_metrics` against the test
  split's surface points from :func:`.references.load_world_pos_points`; when too few pixels survive its reprojection
  filter (the duck scene's EXRs do not match its cameras), a note says so instead;
- on any dataset, per test view: the CLIP similarity (cosine of the final embeddings, with the run's own CLIP) of the
  sketch's render and the test image, next to that of a blank canvas (the background alone) as a floor; and, where a
  foreground mask can be derived (:func:`.references.foreground_mask`), :func:`.metrics.foreground_touch`, the share
  of the object's pixels within a few pixels of the sketch's ink.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nerfstudio_clipsketch import curves
from nerfstudio_clipsketch.curves import sample_curves
from nerfstudio_clipsketch.dataparsers import ClipSketchDataError
from nerfstudio_clipsketch.evaluation.metrics import (
    DEFAULT_THRESHOLDS,
    bbox_diagonal,
    curve_metrics,
    foreground_touch,
    nef_metrics,
    surface_metrics,
)
from nerfstudio_clipsketch.evaluation.references import (
    abcnef_ground_truth,
    foreground_mask,
    load_world_pos_points,
    world_pos_paths,
)
from nerfstudio_clipsketch.evaluation.symmetry import symmetry_section

NEF_SAMPLES = 500
"""Points per curve for ABC-NEF's metrics (NEF samples each of its cubics at 500 parameters)."""
ALIVE_SHARE = 0.02
"""A stroke is alive when it is at least this share of the reference's bounding-box diagonal long."""
JSON_FORMAT = "nerfstudio-clipsketch-eval"
JSON_VERSION = 1


class MetricOptionsError(ValueError):
    """A measurement option no measurement can use; the message names it and what is allowed."""


@dataclass
class MetricOptions:
    """How the sketch is measured (shared by the command line and :func:`evaluate_sketch`)."""

    samples_per_curve: int = 200
    """Points sampled along each curve (the sketch's and the ground truth's), evenly in arc length, ends included.
    Their spacing should stay well below the smallest threshold, so that point shares approximate length shares."""
    thresholds: Tuple[float, ...] = DEFAULT_THRESHOLDS
    """Distance thresholds, as fractions of the reference's bounding-box diagonal (ground-truth curves or surface)."""
    max_views: Optional[int] = None
    """Use only the first this many test views (surface points, CLIP similarity, foreground touch); all if None."""
    max_reproj_px: float = 1.0
    """A world-position pixel becomes a surface point only if it projects back within this many pixels of its own
    centre (this drops silhouette pixels, which blend the surface with the background's origin)."""
    min_surface_points: int = 1000
    """With fewer surface points than this left after the reprojection filter, no surface metrics are computed and a
    note says why."""
    dilation_px: float = 2.0
    """Foreground touch: a foreground pixel is touched when ink lies within this many pixels of it."""
    alpha_threshold: float = 0.5
    """Foreground touch: pixels where the sketch's accumulated opacity exceeds this are ink."""
    background_tolerance: float = 0.1
    """Background masks (rendered scenes without world positions): a pixel is foreground when some colour channel
    differs from the background colour by more than this (colours in [0, 1])."""

    def check(self) -> None:
        """Refuse values no measurement can use, naming the option and what is allowed."""
        problems = [
            (self.samples_per_curve < 2, f"--samples-per-curve must be at least 2, got {self.samples_per_curve}"),
            (
                not self.thresholds or any(not 0.0 < t < 1.0 for t in self.thresholds),
                f"--thresholds must be fractions in (0, 1), got {self.thresholds}",
            ),
            (
                self.max_views is not None and self.max_views < 1,
                f"--max-views must be at least 1 (or None for every test view), got {self.max_views}",
            ),
            (not self.max_reproj_px > 0, f"--max-reproj-px must be positive, got {self.max_reproj_px}"),
            (self.min_surface_points < 1, f"--min-surface-points must be at least 1, got {self.min_surface_points}"),
            (self.dilation_px < 0, f"--dilation-px must be non-negative, got {self.dilation_px}"),
            (not 0.0 <= self.alpha_threshold < 1.0, f"--alpha-threshold must be in [0, 1), got {self.alpha_threshold}"),
            (
                not 0.0 < self.background_tolerance < 1.0,
                f"--background-tolerance must be in (0, 1), got {self.background_tolerance}",
            ),
        ]
        for failed, message in problems:
            if failed:
                raise MetricOptionsError(message)


# ----------------------------------------------------------------------------------------------------------------------
# Sections of the report


def mean_spacing(control_points: Tensor, num_points: int) -> float:
    """Mean distance between neighbouring samples of ``sample_curves(..., by_length=True)`` (curve ``c`` with ``n_c``
    samples has ``n_c - 1`` gaps, so the gaps number ``num_points - num_curves``)."""
    gaps = num_points - control_points.shape[0]
    return float(curves.curve_lengths(control_points.detach().to("cpu", torch.float64)).sum()) / max(gaps, 1)


def _curve_section(pipeline, points: Tensor, options: MetricOptions, notes: List[str]) -> Optional[dict]:
    from nerfstudio_clipsketch.dataparsers.builtin import load_ground_truth_curves

    metadata = pipeline.datamanager.train_dataparser_outputs.metadata or {}
    gt_path = metadata.get("clipsketch_gt_curves")
    if gt_path is None:
        return None
    try:
        gt = load_ground_truth_curves(Path(gt_path)).control_points_dataset.double()
    except ClipSketchDataError as e:
        notes.append(f"No curve metrics: {e}")
        return None
    gt_points = sample_curves(gt, options.samples_per_curve, by_length=True)
    return {
        "ground_truth": str(gt_path),
        "num_gt_curves": int(gt.shape[0]),
        "num_gt_points": int(gt_points.shape[0]),
        "gt_total_length": float(curves.curve_lengths(gt).sum()),
        "gt_sample_spacing": mean_spacing(gt, int(gt_points.shape[0])),
        **curve_metrics(points, gt_points, options.thresholds),
    }


def _abcnef_section(pipeline, control_points: Tensor, notes: List[str]) -> Optional[dict]:
    """ABC-NEF's protocol (:func:`.metrics.nef_metrics`) against the object's sharp edges, each curve sampled at
    ``NEF_SAMPLES`` points evenly in arc length."""
    gt_dir = (pipeline.datamanager.train_dataparser_outputs.metadata or {}).get("clipsketch_abcnef_gt")
    if gt_dir is None:
        return None
    try:
        gt = abcnef_ground_truth(gt_dir)
    except (OSError, ValueError, KeyError) as e:
        notes.append(f"No ABC-NEF metrics: {e}")
        return None
    points = sample_curves(control_points, NEF_SAMPLES)
    return {
        "ground_truth": str(gt_dir),
        "num_gt_points": len(gt),
        "diagonal": bbox_diagonal(gt),
        **nef_metrics(points, gt),
    }


def _check_spacing(what: str, spacing: float, section: Optional[dict], notes: List[str]) -> None:
    """A note when samples lie so far apart that point shares no longer approximate length shares at every
    threshold (spacing above half the smallest one)."""
    taus = [v for k, v in (section or {}).items() if k.startswith("tau@")]
    if taus and spacing > 0.5 * min(taus):
        notes.append(
            f"The {what} samples lie {spacing:.3g} apart, more than half the smallest threshold {min(taus):.3g}: "
            "raise --samples-per-curve for metrics at that threshold to measure length shares."
        )


def _world_pos_views(pipeline, num_views: int) -> Optional[List[Path]]:
    """The world-position EXR of each measured test view, when the dataset has world positions."""
    dataset = pipeline.datamanager.eval_dataset
    world_pos_dir = (dataset.metadata or {}).get("clipsketch_world_pos_dir")
    if world_pos_dir is None:
        return None
    return world_pos_paths(world_pos_dir, dataset.image_filenames[:num_views])


def _surface_section(pipeline, points: Tensor, exrs: List[Path], options: MetricOptions, notes: List[str]) -> dict:
    outputs = pipeline.datamanager.train_dataparser_outputs
    cameras = pipeline.datamanager.eval_dataset.cameras[: len(exrs)]
    described: Dict[str, Any] = {"world_pos_dir": str(exrs[0].parent), "num_views": len(exrs)}
    described["max_reproj_px"] = options.max_reproj_px
    try:
        surface = load_world_pos_points(
            exrs, cameras, outputs.dataparser_transform, float(outputs.dataparser_scale), options.max_reproj_px
        )
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        notes.append(f"No surface metrics: cannot read the world positions in {exrs[0].parent}: {e}")
        return {**described, "skipped": True, "num_surface_points": 0}
    described["num_surface_points"] = int(surface.shape[0])
    if surface.shape[0] < options.min_surface_points:
        return {**described, "skipped": True}
    return {**described, "skipped": False, **surface_metrics(points, surface, options.thresholds)}


def _skipped_surface_note(surface: dict, nonzero_world_pos: int, options: MetricOptions) -> str:
    kept, views = surface["num_surface_points"], surface["num_views"]
    share = f" of the {nonzero_world_pos} on the object ({kept / nonzero_world_pos:.2%})" if nonzero_world_pos else ""
    return (
        f"No surface metrics: only {kept} world-position pixels{share} in {views} test views project back within "
        f"{options.max_reproj_px} px of their own pixel, fewer than --min-surface-points {options.min_surface_points}: "
        "the EXRs do not match the cameras closely enough to serve as ground truth. --max-reproj-px loosens the "
        "filter, at the price of points off the surface."
    )


@torch.no_grad()
def _view_section(
    pipeline, layout: str, exrs: Optional[List[Path]], num_views: int, options: MetricOptions
) -> Tuple[List[dict], int]:
    """Per test view: CLIP similarity of the render (and of a blank canvas) to the image, and foreground touch."""
    model = pipeline.model
    dataset = pipeline.datamanager.eval_dataset
    guidance = pipeline.ensure_guidance()
    views: List[dict] = []
    blank_embeddings: Dict[Tuple[int, int], Tensor] = {}
    nonzero_world_pos = 0
    for index in range(num_views):
        outputs = model.get_outputs_for_camera(dataset.cameras[index : index + 1])
        sketch, alpha = outputs["rgb"], outputs["accumulation"]
        data = dataset[index]
        target = model.style.composite(data["image"], data.get("mask"))
        if tuple(target.shape[:2]) != tuple(sketch.shape[:2]):
            raise ClipSketchDataError(
                f"Test view {index}: the camera renders {tuple(sketch.shape[:2])} pixels but the image has "
                f"{tuple(target.shape[:2])}."
            )
        size = (int(sketch.shape[0]), int(sketch.shape[1]))
        if size not in blank_embeddings:
            blank_embeddings[size] = guidance.embed(model.style.background.to(sketch).expand_as(sketch)[None])
        sketch_embedding, target_embedding = guidance.embed(torch.stack([sketch, target.to(sketch)]))
        similarity = F.cosine_similarity(
            torch.stack([sketch_embedding, blank_embeddings[size][0]]), target_embedding[None], dim=-1
        ).tolist()
        exr = exrs[index] if exrs is not None else None
        mask, kind, nonzero = foreground_mask(target, model.style.background, layout, exr, options.background_tolerance)
        nonzero_world_pos += nonzero
        touch = None
        if mask is not None and bool(mask.any()):
            touch = foreground_touch(alpha, mask, options.dilation_px, options.alpha_threshold)
        views.append(
            {
                "index": index,
                "image": str(dataset.image_filenames[index]),
                "clip_similarity": float(similarity[0]),
                "clip_similarity_blank": float(similarity[1]),
                "ink_pixels": int((alpha > options.alpha_threshold).sum()),
                "mask": kind,
                "foreground_pixels": int(mask.sum()) if mask is not None else None,
                "foreground_touch": touch,
            }
        )
    return views, nonzero_world_pos


def _alive(report: Dict[str, Any], pipeline) -> Optional[dict]:
    """How many strokes are at least :data:`ALIVE_SHARE` of the reference's diagonal long (ground-truth curves,
    ABC-NEF edges or surface, whichever the data has; else the visual hull carved from the training views)."""
    diagonals = [(name, (report.get(name) or {}).get("diagonal")) for name in ("curves", "abcnef", "surface")]
    diagonals = [(name, d) for name, d in diagonals if d and not report[name].get("skipped")]
    if not diagonals:
        hull, _ = pipeline.visual_hull(resolution=64)  # enough for a bounding box
        scale = float(pipeline.datamanager.train_dataparser_outputs.dataparser_scale)
        diagonals = [("visual hull", hull.diagonal / scale)] if hull is not None else []
    if not diagonals:
        return None
    name, diagonal = diagonals[0]
    threshold = ALIVE_SHARE * diagonal
    count = sum(length >= threshold for length in report["curve_lengths"])
    return dict(count=count, of=report["num_curves"], min_length=threshold, reference=name, diagonal=diagonal)


def _mean(values: List[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN or infinity: such values are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def _clip_section(pipeline, views: List[dict], notes: List[str]) -> dict:
    clip_config = pipeline.model.config.clip
    if clip_config.pretrained.strip().lower() in ("", "none"):
        notes.append("The run's CLIP has random weights (pretrained 'none'): its similarities carry little meaning.")
    return {
        "model": clip_config.model_name,
        "pretrained": clip_config.pretrained,
        "similarity": _mean([v["clip_similarity"] for v in views]),
        "similarity_blank": _mean([v["clip_similarity_blank"] for v in views]),
        "num_views": len(views),
    }


def _touch_section(views: List[dict], layout: str, options: MetricOptions, notes: List[str]) -> Optional[dict]:
    masks = sorted({v["mask"] for v in views if v["foreground_touch"] is not None})
    if not masks:
        notes.append(
            f"No foreground touch: no object mask can be derived for a {layout!r} dataset (no world positions, and "
            "not a render on a uniform background)."
        )
        return None
    return {
        "mean": _mean([v["foreground_touch"] for v in views]),
        "masks": masks,
        "num_views": sum(v["foreground_touch"] is not None for v in views),
        "dilation_px": options.dilation_px,
        "alpha_threshold": options.alpha_threshold,
        "background_tolerance": options.background_tolerance if "background" in masks else None,
    }


# ----------------------------------------------------------------------------------------------------------------------
# The report


def _sketch_section(pipeline, options: MetricOptions) -> Tuple[Dict[str, Any], Tensor]:
    """What was measured, and the sketch's curves (dataset coordinates) as length-proportional samples."""
    data, layout = pipeline.describe_data()
    control_points = pipeline.sketch().control_points_dataset.detach().to("cpu", torch.float64)
    points = sample_curves(control_points, options.samples_per_curve, by_length=True)
    lengths = curves.curve_lengths(control_points)
    report: Dict[str, Any] = {
        "data": data,
        "layout": layout,
        "split": pipeline.datamanager.test_split,
        "coordinates": "dataset (the dataparser's transform and scale undone); distances in its units",
        "num_curves": int(control_points.shape[0]),
        "curve_lengths": lengths.tolist(),
        "total_length": float(lengths.sum()),
        "samples_per_curve": options.samples_per_curve,
        "num_curve_points": int(points.shape[0]),
        "sample_spacing": mean_spacing(control_points, int(points.shape[0])),
        "options": asdict(options),
    }
    return report, points


def evaluate_sketch(pipeline, options: Optional[MetricOptions] = None) -> Dict[str, Any]:
    """Every metric the pipeline's dataset allows, as a JSON-ready dict (see the module docstring; distances are in
    the dataset's own units).

    Returns:
        ``{"data", "layout", "split", "coordinates", "num_curves", "curve_lengths", "total_length",
        "samples_per_curve", "num_curve_points", "sample_spacing", "options", "curves", "surface", "clip",
        "foreground_touch", "views", "notes"}``: ``curves`` holds :func:`.metrics.curve_metrics` (None without
        ground-truth curves), ``surface`` :func:`.metrics.surface_metrics` and the surface point count (None without
        world positions; ``skipped`` when too few points survive), ``clip`` the mean similarities,
        ``foreground_touch`` the mean touch and how masks were made (None without masks), ``abcnef`` ABC-NEF's
        metrics (None for other data), ``strokes_alive`` how many strokes are long enough to count (None without a
        3D reference or a visual hull), ``symmetry`` (:func:`.symmetry.symmetry_section`), ``views`` one entry per
        test view, ``notes`` what could not be measured and why.
    """
    options = options or MetricOptions()
    options.check()
    report, points = _sketch_section(pipeline, options)
    layout, spacing = report["layout"], report["sample_spacing"]
    notes: List[str] = []
    report["curves"] = _curve_section(pipeline, points, options, notes)
    if report["curves"] is not None:
        _check_spacing("ground truth's", report["curves"]["gt_sample_spacing"], report["curves"], notes)
        _check_spacing("sketch's", spacing, report["curves"], notes)
    dataset = pipeline.datamanager.eval_dataset
    num_views = len(dataset) if options.max_views is None else min(options.max_views, len(dataset))
    exrs = _world_pos_views(pipeline, num_views)
    views, nonzero_world_pos = _view_section(pipeline, layout, exrs, num_views, options)
    report["surface"] = None
    if exrs:
        report["surface"] = surface = _surface_section(pipeline, points, exrs, options, notes)
        if not surface["skipped"]:
            _check_spacing("sketch's", spacing, surface, notes)
        elif not any(note.startswith("No surface metrics") for note in notes):
            notes.append(_skipped_surface_note(surface, nonzero_world_pos, options))
    report["abcnef"] = _abcnef_section(pipeline, pipeline.sketch().control_points_dataset.double(), notes)
    report["strokes_alive"] = _alive(report, pipeline)
    report["symmetry"] = symmetry_section(pipeline, (report["strokes_alive"] or {}).get("diagonal"))
    report["clip"] = _clip_section(pipeline, views, notes)
    report["foreground_touch"] = _touch_section(views, layout, options, notes)
    report["views"] = views
    report["notes"] = notes
    return _finite_or_none(report)
