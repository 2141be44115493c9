"""``clipsketch-eval``: measure a trained sketch against what its dataset knows about the object.

::

    clipsketch-eval --load-config outputs/<experiment>/clipsketch/<timestamp>/config.yml --output-path metrics.json
    clipsketch-eval --load-config .../config.yml --initial      # the seeded sketch training started from (step 0)

The sketch's curves are moved back into the dataset's own coordinates
(:func:`~nerfstudio_clipsketch.cameras.to_dataset_coordinates`), sampled densely and evenly in arc length over the
whole sketch (each curve gets samples in proportion to its length, so that shares of points are shares of length:
a stroke shrunk to a dot counts for next to nothing; the JSON lists every curve's length), and compared with whatever
the dataset holds:

- ground-truth curves (the built-in scene: ``metadata["clipsketch_gt_curves"]``): :func:`curve_metrics` against the
  ground-truth curves, sampled the same way (chamfer distance, precision, recall, F1);
- world-position images (clipasso3d scenes with ``world_pos/``): :func:`surface_metrics` against the test split's
  surface points from :func:`load_world_pos_points`; when too few pixels survive its reprojection filter (the duck
  scene's EXRs do not match its cameras), a note says so instead;
- on any dataset, per test view: the CLIP similarity (cosine of the final embeddings, with the run's own CLIP) of the
  sketch's render and the test image, next to that of a blank canvas (the background alone) as a floor; and, where a
  foreground mask can be derived, :func:`foreground_touch`, the share of the object's pixels within a few pixels of
  the sketch's ink. The mask is, in this order of preference:

  1. ``world_pos``: the pixels whose world position is non-zero (Blender writes ``(0, 0, 0)`` on the background),
     when the test split has world-position EXRs of the image's size;
  2. ``background``: for rendered scenes on a uniform background (built-in, Blender, clipasso3d layouts), the pixels
     whose colour differs from the run's background colour by more than ``--background-tolerance`` in some channel;
  3. none for photographs (nerfstudio and COLMAP layouts), whose backgrounds are not uniform: a note says so.

Everything is written to a JSON file (every number, and what was measured: the run, checkpoint step, data, split,
point counts, absolute thresholds) and summarised as tables on the terminal.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
import tyro
import yaml
from jaxtyping import Float
from nerfstudio.pipelines.base_pipeline import Pipeline
from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape
from rich.table import Table
from torch import Tensor

from nerfstudio_clipsketch import curves
from nerfstudio_clipsketch.cameras import to_dataset_coordinates
from nerfstudio_clipsketch.clip_guidance import ClipGuidanceError
from nerfstudio_clipsketch.dataparsers import ClipSketchDataError
from nerfstudio_clipsketch.evaluation import (
    DEFAULT_THRESHOLDS,
    curve_metrics,
    foreground_touch,
    format_table,
    load_world_pos_points,
    read_exr,
    surface_metrics,
)
from nerfstudio_clipsketch.scripts.common import ScriptError, check_config_path, run_or_exit

SYNTHETIC_LAYOUTS = ("clipasso3d", "blender")
"""Dataset layouts rendered on a uniform background, where a colour difference from it marks the object."""
JSON_FORMAT = "nerfstudio-clipsketch-eval"
JSON_VERSION = 1


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
        if self.samples_per_curve < 2:
            raise ScriptError(f"--samples-per-curve must be at least 2, got {self.samples_per_curve}")
        if not self.thresholds or any(not 0.0 < t < 1.0 for t in self.thresholds):
            raise ScriptError(f"--thresholds must be fractions in (0, 1), got {self.thresholds}")
        if self.max_views is not None and self.max_views < 1:
            raise ScriptError(f"--max-views must be at least 1 (or None for every test view), got {self.max_views}")
        if not self.max_reproj_px > 0:
            raise ScriptError(f"--max-reproj-px must be positive, got {self.max_reproj_px}")
        if self.min_surface_points < 1:
            raise ScriptError(f"--min-surface-points must be at least 1, got {self.min_surface_points}")
        if self.dilation_px < 0:
            raise ScriptError(f"--dilation-px must be non-negative, got {self.dilation_px}")
        if not 0.0 <= self.alpha_threshold < 1.0:
            raise ScriptError(f"--alpha-threshold must be in [0, 1), got {self.alpha_threshold}")
        if not 0.0 < self.background_tolerance < 1.0:
            raise ScriptError(f"--background-tolerance must be in (0, 1), got {self.background_tolerance}")


# ----------------------------------------------------------------------------------------------------------------------
# Loading a run


@dataclass
class LoadedRun:
    """A run set up for evaluation: its config, pipeline (test split loaded) and the checkpoint it came from."""

    config_path: Path
    pipeline: Pipeline
    checkpoint: Optional[Path]
    """None for the initial sketch (no checkpoint loaded)."""
    step: int


def _read_trainer_config(config_path: Path):
    """The run's TrainerConfig, if ``config_path`` holds one of a clipsketch run."""
    from nerfstudio.engine.trainer import TrainerConfig

    from nerfstudio_clipsketch.model import ClipSketchModelConfig

    check_config_path(config_path)
    try:
        config = yaml.load(config_path.read_text(encoding="utf-8"), Loader=yaml.Loader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError, ModuleNotFoundError) as e:
        raise ScriptError(f"{str(config_path)!r} is not a readable ns-train config.yml: {e}") from e
    if not isinstance(config, TrainerConfig):
        raise ScriptError(f"{str(config_path)!r} holds a {type(config).__name__}, not an ns-train config.")
    model = getattr(getattr(config, "pipeline", None), "model", None)
    if not isinstance(model, ClipSketchModelConfig):
        raise ScriptError(
            f"{str(config_path)!r} is a {config.method_name!r} run; clipsketch-eval reads clipsketch runs "
            f"(method 'clipsketch')."
        )
    return config


def load_run(config_path: Path, initial: bool = False) -> LoadedRun:
    """Set up a clipsketch run for evaluation, as nerfstudio's ``eval_setup`` does (test split, CUDA when available).

    Args:
        config_path: The run's ``config.yml``.
        initial: Load no checkpoint: the pipeline then holds the sketch training started from, since the model's
            initial curves are drawn from its seeded generator when the pipeline is set up, exactly as in training.

    Raises:
        ScriptError: the config is missing, unreadable or not a clipsketch run's; no checkpoint was saved; the data
            it was trained on cannot be read.
    """
    from nerfstudio.configs.method_configs import all_methods
    from nerfstudio.utils.eval_utils import eval_load_checkpoint

    from nerfstudio_clipsketch.model import ClipSketchConfigError

    config = _read_trainer_config(config_path)
    checkpoint_dir = config.get_checkpoint_dir()
    if not initial and not sorted(checkpoint_dir.glob("step-*.ckpt")):
        raise ScriptError(
            f"The run {str(config_path)!r} has no checkpoint in {str(checkpoint_dir)!r} (ns-train saves one every "
            "--steps-per-save steps and at the end); pass --initial to measure its initial sketch."
        )
    if config.method_name in all_methods:
        config.pipeline.datamanager._target = all_methods[config.method_name].pipeline.datamanager._target
    config.load_dir = checkpoint_dir
    config.load_step = None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        pipeline = config.pipeline.setup(device=device, test_mode="test")
    except ClipSketchDataError as e:
        raise ScriptError(f"Cannot read the run's data: {e}") from e
    except ClipSketchConfigError as e:
        raise ScriptError(f"Cannot set up the run's model: {e}") from e
    pipeline.eval()
    if initial:
        return LoadedRun(config_path, pipeline, None, 0)
    checkpoint, step = eval_load_checkpoint(config, pipeline)
    return LoadedRun(config_path, pipeline, Path(checkpoint), int(step))


# ----------------------------------------------------------------------------------------------------------------------
# Measuring


def sample_curves(
    control_points: Float[Tensor, "num_curves degree_plus_one 3"], samples_per_curve: int
) -> Float[Tensor, "num_points 3"]:
    """Points evenly spaced in arc length over a whole set of curves (each curve's ends included), in float64.

    About ``num_curves * samples_per_curve`` points in all, shared among the curves in proportion to their lengths
    (at least 2 per curve, its ends): a share of the points is then a share of the length, as :func:`curve_metrics`
    and :func:`surface_metrics` assume, and a curve shrunk to a dot weighs next to nothing. Curves that all have zero
    length get ``samples_per_curve`` points each. Affine maps commute with Bézier curves, so sampling after moving the
    control points into another frame gives the moved samples.
    """
    cp = control_points.detach().to("cpu", torch.float64)
    lengths = curves.curve_lengths(cp)
    total = float(lengths.sum())
    if total > 0:
        counts = (lengths / total * cp.shape[0] * samples_per_curve).round().clamp_min(2).long().tolist()
    else:
        counts = [samples_per_curve] * cp.shape[0]
    samples = [
        curves.evaluate(cp[i : i + 1], curves.arc_length_parameters(cp[i : i + 1], n))[0] for i, n in enumerate(counts)
    ]
    return torch.cat(samples)


def mean_spacing(control_points: Float[Tensor, "num_curves degree_plus_one 3"], num_points: int) -> float:
    """Mean distance between neighbouring samples of :func:`sample_curves` (curve ``c`` with ``n_c`` samples has
    ``n_c - 1`` gaps, so the gaps number ``num_points - num_curves``)."""
    gaps = num_points - control_points.shape[0]
    return float(curves.curve_lengths(control_points.detach().to("cpu", torch.float64)).sum()) / max(gaps, 1)


def sketch_control_points(pipeline: Pipeline) -> Float[Tensor, "num_curves degree_plus_one 3"]:
    """The pipeline's curves in the dataset's coordinates (the dataparser's normalisation undone), float64."""
    outputs = pipeline.datamanager.train_dataparser_outputs  # type: ignore[attr-defined]
    with torch.no_grad():
        world = pipeline.model.world_control_points().detach().to("cpu", torch.float64)  # type: ignore[operator]
    transform = outputs.dataparser_transform.detach().to("cpu", torch.float64)
    return to_dataset_coordinates(world, transform, float(outputs.dataparser_scale))


def describe_data(pipeline: Pipeline) -> Tuple[Optional[str], str]:
    """The dataset's folder and layout (``clipasso3d``, ``blender``, ``nerfstudio``, ``colmap``, or the parser's
    class name for parsers other than clipsketch's)."""
    from nerfstudio_clipsketch.dataparsers.auto import ClipSketchDataParser
    from nerfstudio_clipsketch.dataparsers.clipasso3d import Clipasso3dDataParser

    parser = pipeline.datamanager.dataparser  # type: ignore[attr-defined]
    if isinstance(parser, ClipSketchDataParser):
        return str(parser.data), parser.layout
    data = getattr(parser.config, "data", None)
    if isinstance(parser, Clipasso3dDataParser):
        return str(data), "clipasso3d"
    return (str(data) if data is not None else None), type(parser).__name__


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN or infinity: such values are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def _curve_section(pipeline: Pipeline, points: Tensor, options: MetricOptions, notes: List[str]) -> Optional[dict]:
    from nerfstudio_clipsketch.builtin_scene import load_ground_truth_curves

    metadata = pipeline.datamanager.train_dataparser_outputs.metadata or {}  # type: ignore[attr-defined]
    gt_path = metadata.get("clipsketch_gt_curves")
    if gt_path is None:
        return None
    try:
        gt = load_ground_truth_curves(Path(gt_path))
    except ClipSketchDataError as e:
        notes.append(f"No curve metrics: {e}")
        return None
    gt_points = sample_curves(gt["control_points"], options.samples_per_curve)
    return {
        "ground_truth": str(gt_path),
        "num_gt_curves": int(gt["control_points"].shape[0]),
        "num_gt_points": int(gt_points.shape[0]),
        "gt_total_length": float(curves.curve_lengths(gt["control_points"].double()).sum()),
        "gt_sample_spacing": mean_spacing(gt["control_points"], int(gt_points.shape[0])),
        **curve_metrics(points, gt_points, options.thresholds),
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


def _world_pos_source(pipeline: Pipeline) -> Optional[Tuple[Path, str, Path]]:
    """``(world_pos folder, split, transforms JSON)`` of the test split, when the dataset has world positions.

    The clipasso3d parser names ``<scene>/world_pos/<split>`` in its outputs' metadata; the cameras of that split are
    in ``<scene>/transforms_<split>.json``.
    """
    metadata = pipeline.datamanager.eval_dataset.metadata or {}  # type: ignore[attr-defined]
    split_dir = metadata.get("clipsketch_world_pos_dir")
    if split_dir is None:
        return None
    split_dir = Path(split_dir)
    return split_dir.parent, split_dir.name, split_dir.parent.parent / f"transforms_{split_dir.name}.json"


def _surface_section(
    points: Tensor, source: Tuple[Path, str, Path], num_views: int, options: MetricOptions, notes: List[str]
) -> Optional[dict]:
    world_pos_dir, split, transforms = source
    try:
        surface = load_world_pos_points(world_pos_dir, transforms, split, num_views, options.max_reproj_px)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        notes.append(f"No surface metrics: cannot read the world positions in {world_pos_dir / split}: {e}")
        return None
    described = {
        "world_pos_dir": str(world_pos_dir / split),
        "transforms": str(transforms),
        "num_views": num_views,
        "max_reproj_px": options.max_reproj_px,
        "num_surface_points": int(surface.shape[0]),
    }
    if surface.shape[0] < options.min_surface_points:
        return {**described, "skipped": True}
    return {**described, "skipped": False, **surface_metrics(points, surface, options.thresholds)}


def _foreground_mask(
    target: Tensor,
    background: Tensor,
    layout: str,
    world_pos: Optional[Tuple[Path, str, Path]],
    options: MetricOptions,
    image_name: str,
) -> Tuple[Optional[Tensor], Optional[str], int]:
    """The view's object mask, which kind it is (see the module docstring), and the count of non-zero world-position
    pixels (0 without world positions)."""
    if world_pos is not None:
        exr = world_pos[0] / world_pos[1] / f"{Path(image_name).stem}.exr"
        if exr.is_file():
            positions = read_exr(exr)[..., :3]
            mask = torch.from_numpy(np.any(positions != 0, axis=-1))
            if tuple(mask.shape) == tuple(target.shape[:2]):
                return mask, "world_pos", int(mask.sum())
    if layout in SYNTHETIC_LAYOUTS:
        difference = (target[..., :3].cpu() - background.cpu()).abs().amax(dim=-1)
        return difference > options.background_tolerance, "background", 0
    return None, None, 0


@torch.no_grad()
def _view_section(
    pipeline: Pipeline, layout: str, world_pos: Optional[Tuple[Path, str, Path]], options: MetricOptions
) -> Tuple[List[dict], int]:
    """Per test view: CLIP similarity of the render (and of a blank canvas) to the image, and foreground touch."""
    model = pipeline.model
    dataset = pipeline.datamanager.eval_dataset  # type: ignore[attr-defined]
    num_views = len(dataset) if options.max_views is None else min(options.max_views, len(dataset))
    cameras = dataset.cameras
    guidance = model.get_guidance()  # type: ignore[attr-defined]
    background = model.background  # type: ignore[attr-defined]
    views: List[dict] = []
    blank_embeddings: Dict[Tuple[int, int], Tensor] = {}
    nonzero_world_pos = 0
    for index in range(num_views):
        camera = cameras[index : index + 1].to(model.device)
        outputs = model.get_outputs(camera)
        sketch, alpha = outputs["rgb"], outputs["accumulation"]
        target = model.target_image(dataset[index]["image"])  # type: ignore[attr-defined]
        if tuple(target.shape[:2]) != tuple(sketch.shape[:2]):
            raise ScriptError(
                f"Test view {index}: the camera renders {tuple(sketch.shape[:2])} pixels but the image has "
                f"{tuple(target.shape[:2])}."
            )
        size = (int(sketch.shape[0]), int(sketch.shape[1]))
        if size not in blank_embeddings:
            blank = background.to(sketch).expand_as(sketch)
            blank_embeddings[size] = guidance.embed(blank[None])
        sketch_embedding, target_embedding = guidance.embed(torch.stack([sketch, target.to(sketch)]))
        similarity = F.cosine_similarity(
            torch.stack([sketch_embedding, blank_embeddings[size][0]]), target_embedding[None], dim=-1
        ).tolist()
        image_name = Path(dataset.image_filenames[index]).name
        mask, mask_kind, nonzero = _foreground_mask(target, background, layout, world_pos, options, image_name)
        nonzero_world_pos += nonzero
        view: Dict[str, Any] = {
            "index": index,
            "image": str(dataset.image_filenames[index]),
            "clip_similarity": float(similarity[0]),
            "clip_similarity_blank": float(similarity[1]),
            "ink_pixels": int((alpha > options.alpha_threshold).sum()),
            "mask": mask_kind,
            "foreground_pixels": int(mask.sum()) if mask is not None else None,
            "foreground_touch": None,
        }
        if mask is not None and bool(mask.any()):
            view["foreground_touch"] = foreground_touch(alpha, mask, options.dilation_px, options.alpha_threshold)
        views.append(view)
    return views, nonzero_world_pos


def _mean(values: List[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def evaluate_sketch(pipeline: Pipeline, options: Optional[MetricOptions] = None) -> Dict[str, Any]:
    """Every metric the pipeline's dataset allows, as a JSON-ready dict (see the module docstring for what is
    measured; distances are in the dataset's own units).

    Returns:
        ``{"data", "layout", "split", "coordinates", "num_curves", "curve_lengths", "total_length",
        "samples_per_curve", "num_curve_points", "sample_spacing", "options", "curves", "surface", "clip",
        "foreground_touch", "views", "notes"}`` (lengths and spacing in dataset units): ``curves`` holds
        :func:`curve_metrics` (or is None without ground-truth curves), ``surface`` :func:`surface_metrics` and the
        surface point count (None without world positions; ``skipped`` when too few points survive), ``clip`` the
        mean similarities, ``foreground_touch`` the mean touch and how masks were made (None without masks),
        ``views`` one entry per test view, ``notes`` what could not be measured and why.
    """
    options = options or MetricOptions()
    options.check()
    model = pipeline.model
    data, layout = describe_data(pipeline)
    notes: List[str] = []
    control_points = sketch_control_points(pipeline)
    points = sample_curves(control_points, options.samples_per_curve)
    lengths = curves.curve_lengths(control_points)
    spacing = mean_spacing(control_points, int(points.shape[0]))
    report: Dict[str, Any] = {
        "data": data,
        "layout": layout,
        "split": pipeline.datamanager.test_split,  # type: ignore[attr-defined]
        "coordinates": "dataset (the dataparser's transform and scale undone); distances in its units",
        "num_curves": int(control_points.shape[0]),
        "curve_lengths": lengths.tolist(),
        "total_length": float(lengths.sum()),
        "samples_per_curve": options.samples_per_curve,
        "num_curve_points": int(points.shape[0]),
        "sample_spacing": spacing,
        "options": asdict(options),
    }
    report["curves"] = _curve_section(pipeline, points, options, notes)
    if report["curves"] is not None:
        _check_spacing("ground truth's", report["curves"]["gt_sample_spacing"], report["curves"], notes)
        _check_spacing("sketch's", spacing, report["curves"], notes)

    world_pos = _world_pos_source(pipeline)
    try:
        views, nonzero_world_pos = _view_section(pipeline, layout, world_pos, options)
    except ClipGuidanceError as e:
        raise ScriptError(f"Cannot build the run's CLIP model: {e}") from e
    report["surface"] = None
    if world_pos is not None:
        report["surface"] = _surface_section(points, world_pos, len(views), options, notes)
        surface = report["surface"]
        if surface is not None and not surface["skipped"]:
            _check_spacing("sketch's", spacing, surface, notes)
        elif surface is not None:
            kept = surface["num_surface_points"]
            share = ""
            if nonzero_world_pos:
                share = f" of the {nonzero_world_pos} on the object ({kept / nonzero_world_pos:.2%})"
            notes.append(
                f"No surface metrics: only {kept} world-position pixels{share} in {len(views)} test views project "
                f"back within {options.max_reproj_px} px of their own pixel, fewer than --min-surface-points "
                f"{options.min_surface_points}: the EXRs do not match the cameras closely enough to serve as ground "
                "truth. --max-reproj-px loosens the filter, at the price of points off the surface."
            )
    clip_config = model.config.clip  # type: ignore[attr-defined]
    report["clip"] = {
        "model": clip_config.model_name,
        "pretrained": clip_config.pretrained,
        "similarity": _mean([v["clip_similarity"] for v in views]),
        "similarity_blank": _mean([v["clip_similarity_blank"] for v in views]),
        "num_views": len(views),
    }
    if clip_config.pretrained.strip().lower() in ("", "none"):
        notes.append("The run's CLIP has random weights (pretrained 'none'): its similarities carry little meaning.")
    masks = sorted({v["mask"] for v in views if v["foreground_touch"] is not None})
    report["foreground_touch"] = None
    if masks:
        report["foreground_touch"] = {
            "mean": _mean([v["foreground_touch"] for v in views]),
            "masks": masks,
            "num_views": sum(v["foreground_touch"] is not None for v in views),
            "dilation_px": options.dilation_px,
            "alpha_threshold": options.alpha_threshold,
            "background_tolerance": options.background_tolerance if "background" in masks else None,
        }
    else:
        notes.append(
            f"No foreground touch: no object mask can be derived for a {layout!r} dataset (no world positions, and "
            "not a render on a uniform background)."
        )
    report["views"] = views
    report["notes"] = notes
    return _finite_or_none(report)


# ----------------------------------------------------------------------------------------------------------------------
# The command line


@dataclass
class EvalSketch:
    """Measure a trained clipsketch run: curve metrics against ground-truth curves (built-in scene), surface metrics
    against world positions (clipasso3d scenes), CLIP similarity and foreground touch on the test views."""

    load_config: Path
    """The run's config.yml (written by ns-train next to its checkpoints)."""
    output_path: Optional[Path] = None
    """JSON file to write. Default: eval_metrics.json (eval_metrics_initial.json with --initial) in the run's
    folder."""
    initial: bool = False
    """Measure the sketch training started from (the run's seeded initialisation, step 0) instead of the latest
    checkpoint."""
    options: Annotated[MetricOptions, tyro.conf.arg(name="")] = field(default_factory=MetricOptions)
    """How the sketch is measured."""

    def resolved_output_path(self) -> Path:
        if self.output_path is not None:
            return self.output_path
        return self.load_config.parent / ("eval_metrics_initial.json" if self.initial else "eval_metrics.json")

    def main(self) -> None:
        check_config_path(self.load_config)
        options = self.options
        options.check()
        output_path = self.resolved_output_path()
        if output_path.is_dir():
            raise ScriptError(f"--output-path {str(output_path)!r} is a folder; give a file name like metrics.json.")
        run = load_run(self.load_config, self.initial)
        report = {
            "format": JSON_FORMAT,
            "version": JSON_VERSION,
            "config": str(self.load_config.resolve()),
            "checkpoint": str(run.checkpoint) if run.checkpoint is not None else None,
            "step": run.step,
            "initial": self.initial,
            **evaluate_sketch(run.pipeline, options),
        }
        output_path.parent.mkdir(parents=True, exist_ok=True)
        output_path.write_text(json.dumps(report, indent=2), encoding="utf-8")
        print_report(report)
        CONSOLE.print(f"[bold green]Wrote the metrics to {escape(str(output_path))}", highlight=False)


def print_report(report: Dict[str, Any]) -> None:
    """The report's main numbers as tables on the terminal."""
    sketch = "initial sketch" if report.get("initial") else f"step {report.get('step')}"
    CONSOLE.rule(f"clipsketch-eval: {report['num_curves']} curves, {sketch}")
    CONSOLE.print(escape(f"data {report['data']} ({report['layout']}), {report['split']} split"), highlight=False)
    lengths = report["curve_lengths"]
    CONSOLE.print(
        f"curve lengths (dataset units): total {report['total_length']:.4g}, shortest {min(lengths):.4g}, longest "
        f"{max(lengths):.4g}; {report['num_curve_points']} samples, {report['sample_spacing']:.3g} apart",
        highlight=False,
    )
    sections = [("Curves vs ground-truth curves", report.get("curves")), ("Curves vs surface", report.get("surface"))]
    for title, section in sections:
        if section is None or section.get("skipped"):
            continue
        numbers = {k: v for k, v in section.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        CONSOLE.print(f"[bold]{title}[/bold] (dataset units)")
        CONSOLE.print(escape(format_table(numbers)), highlight=False)
    table = Table(title="Test views", show_lines=False)
    for column in ("view", "CLIP similarity", "blank canvas", "foreground touch", "mask"):
        table.add_column(column, justify="right")
    for view in report["views"]:
        touch = view["foreground_touch"]
        table.add_row(
            str(view["index"]),
            f"{view['clip_similarity']:.5f}",
            f"{view['clip_similarity_blank']:.5f}",
            f"{touch:.4f}" if touch is not None else "-",
            view["mask"] or "-",
        )
    clip, touch = report["clip"], report.get("foreground_touch")
    if clip["similarity"] is not None:
        mean_touch = f"{touch['mean']:.4f}" if touch is not None and touch["mean"] is not None else "-"
        table.add_row("mean", f"{clip['similarity']:.5f}", f"{clip['similarity_blank']:.5f}", mean_touch, "")
    CONSOLE.print(table)
    for note in report.get("notes", []):
        CONSOLE.print(f"[yellow]Note:[/yellow] {escape(note)}", highlight=False)


def entrypoint() -> None:
    """Entrypoint for use with pyproject scripts."""
    tyro.extras.set_accent_color("bright_yellow")
    run_or_exit(tyro.cli(EvalSketch).main)


if __name__ == "__main__":
    entrypoint()


def get_parser_fn():
    """Get the parser function for the sphinx docs."""
    return tyro.extras.get_parser(EvalSketch)
