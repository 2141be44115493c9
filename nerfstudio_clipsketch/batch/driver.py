"""Running a batch: plan its runs from their folders, run those left as Ray Tune trials (:mod:`.tuning`), then write
its table and contact sheet.

Ray is imported only when runs are left to do (a rerun of a finished batch just rewrites its table). By default a
local Ray instance is started for the batch and shut down after it (``ray.init(address="local")``, so a
``RAY_ADDRESS`` in the environment is not joined by accident); ``address`` joins a running cluster instead (every node
then needs this environment at the same path, and the batch folder and captures on a shared file system).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape

from nerfstudio_clipsketch.batch.contact_sheet import write_contact_sheet
from nerfstudio_clipsketch.batch.grid import BatchConfigError, BatchGrid
from nerfstudio_clipsketch.batch.results import collect, write_tables
from nerfstudio_clipsketch.batch.runs import plan_runs, record_finished
from nerfstudio_clipsketch.batch.trial import settle

LOCAL_OBJECT_STORE_BYTES = 128 << 20  # trials pass small dicts only; Ray's default is 30% of the RAM
RAY_MISSING = (
    "clipsketch-batch runs its runs on Ray Tune, which is not installed in this environment: "
    'pip install "nerfstudio-clipsketch[batch]" (or pip install "ray[tune]").'
)


class RayUnavailableError(RuntimeError):
    """Ray is not installed, or the cluster given cannot be joined; the message says what to do."""


@dataclass
class RayOptions:
    """Where runs go and what each one gets."""

    address: Optional[str] = None
    """A running Ray cluster to join (``host:port``, or ``auto``); None: a local instance for this batch."""
    num_cpus: Optional[int] = None
    """Local instance only: the CPUs it schedules runs on (all by default)."""
    cpus_per_run: float = 1.0
    gpus_per_run: Optional[float] = None
    """None: 1 when the cluster has a GPU, else 0 (runs then train on the CPU)."""
    memory_per_run: Optional[float] = None
    """GiB of memory Ray reserves for each run (none by default)."""

    def check(self) -> None:
        if self.address is not None and self.num_cpus is not None:
            raise BatchConfigError("--num-cpus sizes a local Ray instance; a cluster joined with --address has its own")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise BatchConfigError(f"--num-cpus must be at least 1, got {self.num_cpus}")
        if not self.cpus_per_run > 0:
            raise BatchConfigError(f"--cpus-per-run must be positive, got {self.cpus_per_run}")
        gpus = self.gpus_per_run
        if gpus is not None and (gpus < 0 or (gpus > 1 and gpus != int(gpus))):
            raise BatchConfigError(f"--gpus-per-run must be 0, a fraction of 1, or a whole number; got {gpus}")
        if self.memory_per_run is not None and not self.memory_per_run > 0:
            raise BatchConfigError(f"--memory-per-run must be a positive number of GiB, got {self.memory_per_run}")


@dataclass
class BatchOptions:
    output_dir: Path
    evaluate: bool = True
    loss_window: int = 10
    tile_size: int = 192
    stop_timeout: float = 120.0
    keep_best: Optional[int] = None
    """Of each setting's seeds, train this many to the end; stop the others early (ASHA). None: train every seed."""
    prune_after: float = 0.25
    """The share of its steps a seed trains before it can be stopped."""
    ray: RayOptions = field(default_factory=RayOptions)

    def check(self) -> None:
        self.ray.check()
        if self.keep_best is not None and self.keep_best < 1:
            raise BatchConfigError(f"--keep-best must be at least 1 seed, got {self.keep_best}")
        if not 0 < self.prune_after < 1:
            raise BatchConfigError(f"--prune-after is a share of the steps, between 0 and 1; got {self.prune_after}")
        if self.loss_window < 1:
            raise BatchConfigError(f"--loss-window must be at least 1 logged step, got {self.loss_window}")
        if self.tile_size < 32:
            raise BatchConfigError(f"--tile-size must be at least 32 pixels, got {self.tile_size}")
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise BatchConfigError(f"--output-dir {str(self.output_dir)!r} is a file, not a folder")


@dataclass
class BatchOutcome:
    rows: List[Dict[str, Any]]
    table_csv: Path
    table_json: Path
    contact_sheet: Path
    interrupted: bool

    @property
    def failed(self) -> List[Dict[str, Any]]:
        return [row for row in self.rows if row["status"] == "failed"]

    @property
    def exit_code(self) -> int:
        """130 when stopped by the user, 1 when a run failed, else 0."""
        return 130 if self.interrupted else (1 if self.failed else 0)


def import_ray():
    try:
        import ray
        import ray.tune  # noqa: F401
    except ImportError as e:
        raise RayUnavailableError(RAY_MISSING) from e
    return ray


def run_batch(grid: BatchGrid, options: BatchOptions) -> BatchOutcome:
    """Run what is left of the batch, then write ``results.csv``, ``results.json`` and ``contact_sheet.png`` in its
    folder (also when stopped: with the runs' state at that point).

    Raises:
        BatchConfigError: the grid or options cannot run (see :func:`.grid.expand`, :func:`.runs.plan_runs`), or a run
            needs more CPUs or GPUs than the cluster has.
        RayUnavailableError: runs are left but Ray is missing, or the cluster at ``address`` cannot be joined.
    """
    options.check()
    if options.keep_best is not None and options.keep_best >= grid.seeds:
        raise BatchConfigError(
            f"--keep-best {options.keep_best} keeps all {grid.seeds} seeds of a setting: give more --seeds than that"
        )
    batch_dir = options.output_dir.resolve()
    plans = plan_runs(batch_dir, grid.runs(), options.evaluate)
    todo = [plan for plan in plans if plan.state not in ("finished", "pruned")]
    record_finished(plans, options.evaluate)
    counts = {state: sum(p.state == state for p in plans) for state in ("stopped", "trained", "new")}
    CONSOLE.print(
        f"clipsketch-batch: {len(plans)} runs in {escape(str(batch_dir))}: {len(plans) - len(todo)} finished "
        f"(skipped), {counts['stopped']} to resume, {counts['trained']} to evaluate, {counts['new']} to train",
        highlight=False,
    )
    interrupted = False
    if todo:
        ray = import_ray()
        from nerfstudio_clipsketch.batch.tuning import run_trials

        start_ray(ray, options.ray)
        try:
            interrupted = run_trials(plans, todo, batch_dir, options, resources(ray, options.ray))
        finally:
            ray.shutdown()  # only now: it ends the trials' workers, and their children with them
        interrupted = settle([plan.run_dir for plan in todo], options.stop_timeout) or interrupted
        if interrupted:
            CONSOLE.print("[yellow]Stopping: the runs left saved their checkpoints; a rerun resumes them.")
        record_finished(plans, options.evaluate)  # a run whose last stage ended just as it was stopped
    rows = collect(plans, options.loss_window)
    sheet_path = batch_dir / "contact_sheet.png"
    layout = write_contact_sheet(rows, sheet_path, options.tile_size)
    about = {
        "batch_dir": str(batch_dir),
        "captures": list(grid.captures),
        "sweep": {key: [" ".join(v) for v in values] for key, values in grid.sweep.items()},
        "set": {key: " ".join(value) for key, value in grid.fixed.items()},
        "seeds": grid.seeds,
        "keep_best": options.keep_best,
        "loss_window": options.loss_window,
        "best": [{"capture": c, "setting": s, "run": r} for c, s, r in _best(rows)],
        "contact_sheet": {
            "path": str(sheet_path),
            "rows": layout.captures,
            "columns": [{"setting": s, "seed": seed} for s, seed in layout.columns],
            "tiles": [{"run": t.run, "row": t.row, "column": t.column, "box": list(t.box)} for t in layout.tiles],
        },
    }
    table_csv, table_json = write_tables(rows, batch_dir, about)
    return BatchOutcome(rows, table_csv, table_json, sheet_path, interrupted)


def _best(rows: List[Dict[str, Any]]) -> List[Tuple[str, str, str]]:
    return [(row["capture"], row["setting"], row["run"]) for row in rows if row["best"]]


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a ``host:port`` nothing listens at: ``ray.init`` would retry for minutes, printing warnings.
    (``auto`` and other forms are left to Ray.)"""
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise RayUnavailableError(
            f"Nothing answers at --address {address!r} ({e}); start a cluster there with `ray start --head`, or "
            "leave out --address to run on this machine."
        ) from e


def start_ray(ray, options: RayOptions) -> None:
    """A local instance for this batch, or the cluster at ``options.address``."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if options.address is not None:
        check_reachable(options.address)
    common = {"log_to_driver": False, "logging_level": "warning"}
    try:
        if options.address is None:
            local = {"num_cpus": options.num_cpus, "object_store_memory": LOCAL_OBJECT_STORE_BYTES}
            ray.init(address="local", include_dashboard=False, **local, **common)
        else:
            ray.init(address=options.address, **common)
    except (ConnectionError, RuntimeError, ValueError) as e:
        if options.address is None:
            raise RayUnavailableError(f"Cannot start a local Ray instance: {e}") from e
        raise RayUnavailableError(
            f"Cannot join the Ray cluster at {options.address!r} ({e}); start one with `ray start --head`, or leave "
            "out --address to run on this machine."
        ) from e


def resources(ray, options: RayOptions) -> Tuple[float, float]:
    """``(cpus, gpus)`` per run, checked against the cluster: a trial no node can hold would wait forever."""
    total = ray.cluster_resources()
    cpus_total, gpus_total = float(total.get("CPU", 0)), float(total.get("GPU", 0))
    gpus = options.gpus_per_run if options.gpus_per_run is not None else (1.0 if gpus_total >= 1 else 0.0)
    if options.cpus_per_run > cpus_total:
        raise BatchConfigError(
            f"--cpus-per-run {options.cpus_per_run:g} is more than the {cpus_total:g} CPUs of the Ray cluster: no run "
            "could start."
        )
    if gpus > gpus_total:
        raise BatchConfigError(
            f"--gpus-per-run {gpus:g} is more than the {gpus_total:g} GPUs of the Ray cluster: no run could start "
            "(--gpus-per-run 0 trains on the CPU)."
        )
    return options.cpus_per_run, gpus
