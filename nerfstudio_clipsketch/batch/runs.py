"""One run of a batch: its folder, how far it got, its record, and the commands that finish it.

``<batch>/<capture>/clipsketch/<run>/`` is an ordinary ns-train run folder (``config.yml``, ``nerfstudio_models/``,
tensorboard events, ``timelapse/``), with beside them:

- ``train.log``, ``eval.log``: the output of ``ns-train`` and ``clipsketch-eval``, one section per attempt;
- ``eval_metrics.json``: clipsketch-eval's report of the last checkpoint;
- ``batch_run.json``: the run's record: capture, setting, seed, flags, target steps, status, error, attempts.

A run's state is read from those files alone, so a rerun picks up wherever a batch stopped, however it stopped:

- ``new``: no checkpoint: trained from scratch (what a failed attempt left in the folder is cleared first);
- ``stopped``: a checkpoint before the last step: resumed from it (``--load-dir``, ``--load-step``) for the steps left
  (unless the run settled there: :mod:`nerfstudio_clipsketch.settling`);
- ``trained``: the last step's checkpoint without a clipsketch-eval report of it: only evaluated;
- ``finished``: trained (and evaluated): skipped;
- ``pruned``: stopped early by ``--keep-best`` as a poor seed (``pruned.json`` says at which step and loss): skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Sequence

from nerfstudio_clipsketch.batch.grid import STEPS_KEY, BatchConfigError, RunSpec, flag_arguments
from nerfstudio_clipsketch.settling import settled_step

State = Literal["new", "stopped", "trained", "finished", "pruned"]
Status = Literal["queued", "running", "finished", "failed", "stopped", "pruned"]

RECORD_NAME = "batch_run.json"
RECORD_FORMAT = "nerfstudio-clipsketch-batch-run"
RECORD_VERSION = 1
EVAL_NAME = "eval_metrics.json"
PRUNED_NAME = "pruned.json"
TIMELAPSE_KEY = "pipeline.model.timelapse-every"
DEVICE_KEY = "machine.device-type"
_CHECKPOINT = re.compile(r"step-(\d+)\.ckpt")


@dataclass(frozen=True)
class Stage:
    """One child process of a run: ``ns-train`` (a fresh start or a resume) or ``clipsketch-eval``."""

    kind: Literal["train", "resume", "eval"]
    command: List[str]
    log: Path
    from_step: int


@dataclass
class RunPlan:
    """A run, where its folder is, and what is left to do (:attr:`state`, from :func:`run_state`)."""

    spec: RunSpec
    run_dir: Path
    state: State
    checkpoint: Optional[int]
    """The step of the run's latest checkpoint, None before its first."""


@dataclass
class RunJob:
    """What a run's trial gets: everything it needs, as plain data (it runs in another process or machine)."""

    name: str
    run_dir: Path
    stages: List[Stage]
    cwd: Path
    env: Dict[str, str] = field(default_factory=dict)
    """Set in the children's environment on top of the worker's."""
    stop_timeout: float = 120.0
    """Seconds a child gets to save a checkpoint and exit after SIGTERM, before it is killed."""


def run_dir(batch_dir: Path, spec: RunSpec) -> Path:
    """``<batch>/<capture>/clipsketch/<run>``: ns-train's ``<output-dir>/<experiment>/<method>/<timestamp>``."""
    return Path(batch_dir) / spec.capture.name / "clipsketch" / spec.name


def latest_checkpoint(folder: Path) -> Optional[int]:
    """The step of the newest ``step-XXXXXXXXX.ckpt`` in the run's ``nerfstudio_models/``, if any."""
    models = Path(folder) / "nerfstudio_models"
    if not models.is_dir():
        return None
    steps = [int(m.group(1)) for m in map(_CHECKPOINT.fullmatch, os.listdir(models)) if m]
    return max(steps, default=None)


def evaluated_step(folder: Path) -> Optional[int]:
    """The checkpoint step that the run's ``eval_metrics.json`` measured, if it has a readable one."""
    try:
        return int(json.loads((Path(folder) / EVAL_NAME).read_text(encoding="utf-8"))["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_state(folder: Path, target_steps: int, evaluate: bool) -> State:
    """How far the run in ``folder`` got (see the module docstring)."""
    step = latest_checkpoint(folder)
    if step is None:
        return "new"
    if is_pruned(folder):
        return "pruned"
    if step + 1 < target_steps and settled_step(folder) != step:
        return "stopped"
    if evaluate and evaluated_step(folder) != step:
        return "trained"
    return "finished"


def is_pruned(folder: Path) -> bool:
    return (Path(folder) / PRUNED_NAME).is_file()


def pruned_at(folder: Path) -> Optional[Dict[str, Any]]:
    """``{"step", "loss"}`` where the scheduler stopped this seed, None if it did not (or its file is unreadable)."""
    try:
        return json.loads((Path(folder) / PRUNED_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def mark_pruned(folder: Path, step: int, loss: float) -> None:
    """The scheduler stopped this seed at ``step`` with its ``loss``: a rerun does not resume it."""
    (Path(folder) / PRUNED_NAME).write_text(json.dumps({"step": step, "loss": loss}), encoding="utf-8")


# ----------------------------------------------------------------------------------------------------------------------
# The record


def read_record(folder: Path) -> Dict[str, Any]:
    """The run's ``batch_run.json``, or an empty dict when it has none (or an unreadable one)."""
    try:
        record = json.loads((Path(folder) / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) and record.get("format") == RECORD_FORMAT else {}


def write_record(folder: Path, record: Dict[str, Any]) -> None:
    """Replace the run's record at once (a reader never sees half of it)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{RECORD_NAME}.tmp"
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    os.replace(tmp, folder / RECORD_NAME)


def record_finished(plans: Sequence[RunPlan], evaluate: bool) -> None:
    """Mark as finished (or pruned) the records of runs whose folders say they are: the files decide, so the table
    never says "stopped" for a run that a rerun would skip."""
    for plan in plans:
        record = read_record(plan.run_dir)
        state = run_state(plan.run_dir, plan.spec.target_steps, evaluate)
        if state in ("finished", "pruned") and record and record.get("status") != state:
            write_record(plan.run_dir, {**record, "status": state, "error": None})


def identity(spec: RunSpec) -> Dict[str, Any]:
    """What makes a run this run: its capture and flags (the target steps may grow: the run is then resumed)."""
    return {
        "capture_path": str(spec.capture.path) if spec.capture.path is not None else None,
        "seed": spec.seed,
        "flags": [[key, list(value)] for key, value in spec.flags if key != STEPS_KEY],
    }


def new_record(spec: RunSpec, previous: Dict[str, Any]) -> Dict[str, Any]:
    """The record of ``spec`` as queued, keeping the attempts (and their wall time) of ``previous``."""
    return {
        "format": RECORD_FORMAT,
        "version": RECORD_VERSION,
        "run": spec.name,
        "capture": spec.capture.name,
        "setting": spec.setting.label,
        "settings": {key: " ".join(value) for key, value in spec.setting.values},
        **identity(spec),
        "target_steps": spec.target_steps,
        "status": "queued",
        "error": None,
        "attempts": list(previous.get("attempts", [])),
    }


# ----------------------------------------------------------------------------------------------------------------------
# Planning and commands


def plan_runs(batch_dir: Path, specs: Sequence[RunSpec], evaluate: bool) -> List[RunPlan]:
    """Each run's folder and state.

    Raises:
        BatchConfigError: a run folder holds a checkpoint trained with other flags or on another capture (resuming or
            skipping it would mix two experiments under one name).
    """
    plans = []
    for spec in specs:
        folder = run_dir(batch_dir, spec)
        checkpoint = latest_checkpoint(folder)
        record = read_record(folder)
        if checkpoint is not None and record and {k: record.get(k) for k in identity(spec)} != identity(spec):
            raise BatchConfigError(
                f"{str(folder)!r} holds a run trained with other flags or data than this batch gives it "
                f"({record.get('capture_path')}, {record.get('flags')}); use another --output-dir, or remove that "
                "folder to train it again."
            )
        plans.append(RunPlan(spec, folder, run_state(folder, spec.target_steps, evaluate), checkpoint))
    return plans


def train_command(plan: RunPlan, batch_dir: Path, cpu_only: bool) -> List[str]:
    """``ns-train clipsketch`` for the run: from scratch, or resumed from its checkpoint for the steps left.

    The batch owns the run's folder (``--output-dir``, ``--experiment-name``, ``--timestamp``), its data, seeds and
    logger (tensorboard); unless the run's flags say otherwise it trains on the CPU when it has no GPU, and renders
    its time-lapse view at the first and last step (the contact sheet's tile).
    """
    spec = plan.spec
    keys = {key for key, _ in spec.flags}
    start = 0 if plan.checkpoint is None else plan.checkpoint + 1
    method_args, parser_args = flag_arguments([(k, v) for k, v in spec.flags if k != STEPS_KEY])
    command = [sys.executable, "-m", "nerfstudio.scripts.train", "clipsketch"]
    command += ["--output-dir", str(Path(batch_dir).resolve()), "--experiment-name", spec.capture.name]
    command += ["--timestamp", spec.name, "--vis", "tensorboard"]
    command += ["--machine.seed", str(spec.seed), "--pipeline.model.seed", str(spec.seed)]
    if cpu_only and DEVICE_KEY not in keys:
        command += [f"--{DEVICE_KEY}", "cpu"]
    if TIMELAPSE_KEY not in keys:
        command += [f"--{TIMELAPSE_KEY}", str(spec.target_steps)]
    if spec.capture.path is not None:
        command += ["--data", str(spec.capture.path)]
    command += [*method_args, f"--{STEPS_KEY}", str(spec.target_steps - start)]
    if plan.checkpoint is not None:
        command += ["--load-dir", str(plan.run_dir / "nerfstudio_models"), "--load-step", str(plan.checkpoint)]
    return command + parser_args


def eval_command(plan: RunPlan) -> List[str]:
    """``clipsketch-eval`` of the run's last checkpoint, into its ``eval_metrics.json``."""
    return [
        sys.executable,
        "-m",
        "nerfstudio_clipsketch.scripts.eval",
        "--load-config",
        str(plan.run_dir / "config.yml"),
    ]


def stages(plan: RunPlan, batch_dir: Path, evaluate: bool, cpu_only: bool) -> List[Stage]:
    """What is left to run for ``plan``, in order."""
    out: List[Stage] = []
    if plan.state in ("new", "stopped"):
        kind = "train" if plan.checkpoint is None else "resume"
        start = 0 if plan.checkpoint is None else plan.checkpoint + 1
        out.append(Stage(kind, train_command(plan, batch_dir, cpu_only), plan.run_dir / "train.log", start))
    if evaluate and plan.state not in ("finished", "pruned"):
        out.append(Stage("eval", eval_command(plan), plan.run_dir / "eval.log", plan.spec.target_steps))
    return out


def prepare(plan: RunPlan) -> None:
    """Before the run is queued: a new run starts from an empty folder; its record says ``queued``."""
    previous = read_record(plan.run_dir)
    if plan.state == "new" and plan.run_dir.exists():
        shutil.rmtree(plan.run_dir)
        previous = {}
    write_record(plan.run_dir, new_record(plan.spec, previous))
