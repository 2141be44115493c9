"""The results table of a batch (one row per run, as CSV and JSON) and the best of N seeds.

A row holds the run's capture, setting (one column per swept flag) and seed; its status and error; the steps trained
(the latest checkpoint's step + 1) and the wall time of its attempts (ns-train and clipsketch-eval, start-up
included); its final loss terms; and clipsketch-eval's metrics of the last checkpoint: against ground-truth curves
(``eval.curves.*``, the built-in scene) or world positions (``eval.surface.*``, clipasso3d scenes) when the data has
them, and CLIP similarity and foreground touch (``eval.clip.*``, ``eval.foreground_touch.*``).

Final loss: the mean of each logged term (``Train Loss`` and ``Train Loss Dict/*`` in the run's tensorboard events)
over the last ``window`` logged steps, since a single step's CLIP loss depends on its random view and augmentations.
Of the seeds of one (capture, setting), the finished run with the lowest final total loss is the best, as CLIPasso
keeps the best of its seeds.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from nerfstudio_clipsketch.batch.runs import EVAL_NAME, RunPlan, latest_checkpoint, read_record

TABLE_FORMAT = "nerfstudio-clipsketch-batch"
TABLE_VERSION = 1
LOSS_TAG = "Train Loss"
LOSS_TERMS_PREFIX = "Train Loss Dict/"
EVAL_SECTIONS = ("curves", "surface", "clip", "foreground_touch")
_EVAL_SKIPPED = ("num_", "gt_", "tau@")
_EVAL_OPTIONS = {"diagonal", "max_reproj_px", "dilation_px", "alpha_threshold", "background_tolerance", "skipped"}


def final_losses(folder: Path, window: int) -> Dict[str, float]:
    """``{"loss": total, "loss.<term>": ...}``: each logged loss averaged over the run's last ``window`` logged steps
    (across all its event files, as a resumed run has one per attempt). Empty when nothing was logged."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # imported here: slow

    if not Path(folder).is_dir():
        return {}
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 1, "tensors": 1}).Reload()
    losses = {}
    for tag in events.Tags().get("scalars", []):
        if tag == LOSS_TAG or tag.startswith(LOSS_TERMS_PREFIX):
            values = [e.value for e in events.Scalars(tag)][-window:]
            name = "loss" if tag == LOSS_TAG else f"loss.{tag.removeprefix(LOSS_TERMS_PREFIX)}"
            losses[name] = float(sum(values) / len(values))
    return dict(sorted(losses.items(), key=lambda item: item[0] != "loss"))


def eval_columns(report: Dict[str, Any]) -> Dict[str, float]:
    """clipsketch-eval's summary numbers as flat columns (``eval.curves.f1@1%``, ``eval.clip.similarity``, ...),
    without per-view lists, point counts, thresholds and options."""
    columns: Dict[str, float] = {"eval.step": report.get("step"), "eval.total_length": report.get("total_length")}
    for section in EVAL_SECTIONS:
        values = report.get(section)
        for key, value in (values or {}).items():
            if key in _EVAL_OPTIONS or key.startswith(_EVAL_SKIPPED) or isinstance(value, (bool, str, list, dict)):
                continue
            columns[f"eval.{section}.{key}"] = value
    return columns


def final_frame(folder: Path) -> Optional[Path]:
    """The run's last time-lapse frame: its sketch from the fixed time-lapse view at its last step."""
    frames = sorted((Path(folder) / "timelapse").glob("step_*.png"))
    return frames[-1] if frames else None


def run_row(plan: RunPlan, window: int) -> Dict[str, Any]:
    """The table row of one run, read from its folder."""
    spec, folder = plan.spec, plan.run_dir
    record = read_record(folder)
    checkpoint = latest_checkpoint(folder)
    attempts = record.get("attempts", [])
    row: Dict[str, Any] = {"capture": spec.capture.name, "setting": spec.setting.label}
    row.update({key: " ".join(value) for key, value in spec.setting.values})
    row.update(
        seed=spec.seed,
        run=spec.name,
        status=record.get("status", "queued"),
        steps=0 if checkpoint is None else checkpoint + 1,
        target_steps=spec.target_steps,
        wall_time_s=round(sum(a.get("wall_time_s", 0.0) for a in attempts), 3) if attempts else None,
    )
    row.update(final_losses(folder, window))
    try:
        row.update(eval_columns(json.loads((folder / EVAL_NAME).read_text(encoding="utf-8"))))
    except (OSError, ValueError):
        pass
    frame = final_frame(folder)
    row.update(
        best=False,
        error=record.get("error"),
        run_dir=str(folder),
        image=str(frame) if frame is not None else None,
    )
    return row


def mark_best(rows: List[Dict[str, Any]]) -> List[Tuple[str, str, str]]:
    """Set ``best`` on the finished run with the lowest final loss of each (capture, setting).

    Returns:
        ``(capture, setting, run)`` of each best run, in table order.
    """
    groups: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
    for row in rows:
        row["best"] = False
        groups.setdefault((row["capture"], row["setting"]), []).append(row)
    best = []
    for (capture, setting), members in groups.items():
        scored = [r for r in members if r["status"] == "finished" and _finite(r.get("loss"))]
        if scored:
            winner = min(scored, key=lambda r: r["loss"])
            winner["best"] = True
            best.append((capture, setting, winner["run"]))
    return best


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def collect(plans: Sequence[RunPlan], window: int) -> List[Dict[str, Any]]:
    """One row per run, in the batch's order, the best of each group of seeds marked."""
    rows = [run_row(plan, window) for plan in plans]
    mark_best(rows)
    return rows


def columns(rows: Sequence[Dict[str, Any]]) -> List[str]:
    """Every column of ``rows`` once, in order of first appearance, ``best``/``error``/paths last."""
    tail = ["best", "error", "run_dir", "image"]
    seen: Dict[str, None] = {}
    for row in rows:
        seen.update((key, None) for key in row if key not in tail)
    return [*seen, *tail]


def write_tables(rows: Sequence[Dict[str, Any]], folder: Path, about: Dict[str, Any]) -> Tuple[Path, Path]:
    """``results.csv`` (one row per run) and ``results.json`` (``about`` the batch, and the rows) in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = folder / "results.csv", folder / "results.json"
    names = columns(rows)
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        writer.writerows([{k: _csv_value(row.get(k)) for k in names} for row in rows])
    document = {"format": TABLE_FORMAT, "version": TABLE_VERSION, **about, "runs": [_json_value(r) for r in rows]}
    json_path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return csv_path, json_path


def _csv_value(value: Any) -> Any:
    return "" if value is None else value


def _json_value(value: Any) -> Any:
    """JSON has no NaN or infinity: such values are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return value
