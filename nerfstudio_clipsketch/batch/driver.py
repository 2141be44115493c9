"""Running a batch: plan its runs, run those left as Ray tasks, then write its table and contact sheet.

Ray is imported here only, and only when runs are left to do (a rerun of a finished batch just rewrites its table).
By default a local Ray instance is started for the batch and shut down after it (``ray.init(address="local")``, so a
``RAY_ADDRESS`` in the environment is not joined by accident); ``address`` joins a running cluster instead (every node
then needs this environment at the same path, and the batch folder and captures on a shared file system).

Each run is one task (``max_retries=0``: a retry after a crashed worker would train the run again from scratch; the
next rerun of the batch resumes it from its checkpoint instead) with ``cpus_per_run`` CPUs, ``gpus_per_run`` GPUs
and optionally ``memory_per_run`` GiB. Its children get ``OMP_NUM_THREADS`` = its CPUs, so runs that share a machine
do not oversubscribe its cores. Ctrl-C (or SIGTERM) cancels the tasks: running ones pass SIGTERM on to their child
and wait for it (:mod:`.task`); a second Ctrl-C stops everything at once.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape

from nerfstudio_clipsketch.batch.contact_sheet import write_contact_sheet
from nerfstudio_clipsketch.batch.grid import BatchConfigError, BatchGrid
from nerfstudio_clipsketch.batch.progress import Progress, format_duration
from nerfstudio_clipsketch.batch.results import collect, write_tables
from nerfstudio_clipsketch.batch.runs import (
    RunJob,
    RunPlan,
    plan_runs,
    prepare,
    read_record,
    record_finished,
    stages,
    write_record,
)
from nerfstudio_clipsketch.batch.task import execute

POLL_S = 1.0
LOCAL_OBJECT_STORE_BYTES = 128 << 20  # tasks pass small dicts only; Ray's default is 30% of the RAM
RAY_MISSING = (
    "clipsketch-batch runs its runs on Ray, which is not installed in this environment: "
    'pip install "nerfstudio-clipsketch[batch]" (or pip install ray).'
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
    ray: RayOptions = field(default_factory=RayOptions)

    def check(self) -> None:
        self.ray.check()
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
    batch_dir = options.output_dir.resolve()
    plans = plan_runs(batch_dir, grid.runs(), options.evaluate)
    todo = [plan for plan in plans if plan.state != "finished"]
    record_finished(plans, options.evaluate)
    counts = {state: sum(p.state == state for p in plans) for state in ("finished", "stopped", "trained", "new")}
    CONSOLE.print(
        f"clipsketch-batch: {len(plans)} runs in {escape(str(batch_dir))}: {counts['finished']} finished (skipped), "
        f"{counts['stopped']} to resume, {counts['trained']} to evaluate, {counts['new']} to train",
        highlight=False,
    )
    interrupted = False
    if todo:
        progress = Progress(total=len(plans))
        progress.skip(counts["finished"])
        interrupted = _run_on_ray(import_ray(), todo, batch_dir, options, progress)
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


# ----------------------------------------------------------------------------------------------------------------------
# Ray


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
            ray.init(
                address="local",
                num_cpus=options.num_cpus,
                include_dashboard=False,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                **common,
            )
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
    """``(cpus, gpus)`` per run, checked against the cluster: a task no node can hold would wait forever."""
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


def _run_on_ray(ray, plans: List[RunPlan], batch_dir: Path, options: BatchOptions, progress: Progress) -> bool:
    """Run ``plans`` as Ray tasks until all ended; returns whether the user stopped them."""
    start_ray(ray, options.ray)
    try:
        cpus, gpus = resources(ray, options.ray)
        CONSOLE.print(f"Ray: {len(plans)} runs with {cpus:g} CPUs and {gpus:g} GPUs each", highlight=False)
        task = ray.remote(max_retries=0)(execute)
        env = {"OMP_NUM_THREADS": str(max(1, int(cpus))), "PYTHONUNBUFFERED": "1"}
        refs = {}
        for plan in plans:
            prepare(plan)
            job = RunJob(
                plan.spec.name,
                plan.run_dir,
                stages(plan, batch_dir, options.evaluate, cpu_only=gpus == 0),
                Path.cwd(),
                env,
                options.stop_timeout,
            )
            resources_ = {"num_cpus": cpus, "num_gpus": gpus, "name": f"clipsketch {plan.spec.capture.name} {job.name}"}
            if options.ray.memory_per_run is not None:
                resources_["memory"] = int(options.ray.memory_per_run * (1 << 30))
            refs[task.options(**resources_).remote(job)] = plan
        return _follow(ray, refs, progress, options.stop_timeout)
    finally:
        ray.shutdown()  # only now: it kills the workers, and the runs' children with them


def _follow(ray, refs: Dict[Any, RunPlan], progress: Progress, stop_timeout: float) -> bool:
    pending = list(refs)
    live = CONSOLE.status(progress.summary(time.monotonic())) if CONSOLE.is_terminal else None
    try:
        with live or contextlib.nullcontext():
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=POLL_S)
                for ref in ready:
                    _ended(ray, ref, refs[ref], progress)
                for ref in pending:
                    if read_record(refs[ref].run_dir).get("status") == "running":
                        progress.start(refs[ref].spec.name, time.monotonic())
                if live is not None:
                    live.update(progress.summary(time.monotonic()))
        return False
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C; SIGTERM arrives as SystemExit (ray.init's handler)
        CONSOLE.print(
            f"[yellow]Stopping: {len(pending)} runs cancelled; running ones get up to {stop_timeout:g} s to save a "
            "checkpoint (Ctrl-C again to stop at once). A rerun resumes them.",
            highlight=False,
        )
        for ref in pending:
            ray.cancel(ref)
        for ref in pending:
            _ended(ray, ref, refs[ref], progress, timeout=stop_timeout + 30)
        return True


def _ended(ray, ref, plan: RunPlan, progress: Progress, timeout: Optional[float] = None) -> None:
    """Record how a task ended, and say so."""
    from ray.exceptions import GetTimeoutError, RayError, RayTaskError, TaskCancelledError

    try:
        result = ray.get(ref, timeout=timeout)
        status, error = result["status"], result["error"]
    except TaskCancelledError:
        status, error = "stopped", None
    except RayTaskError as e:  # the task itself raised: its exception, not Ray's wrapping of it
        status, error = "failed", f"{type(e.cause).__name__}: {e.cause}"
    except (RayError, GetTimeoutError) as e:  # a crashed or killed worker (out of memory, node lost, ...)
        status, error = "failed", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    record = read_record(plan.run_dir)
    if record and (record.get("status") in ("queued", "running") or error and record.get("error") is None):
        write_record(plan.run_dir, {**record, "status": status, "error": error})
    progress.end(plan.spec.name, status, time.monotonic())
    colour = {"finished": "green", "failed": "red"}.get(status, "yellow")
    attempts = read_record(plan.run_dir).get("attempts", [])
    seconds = sum(a.get("wall_time_s", 0.0) for a in attempts) if attempts else None
    detail = f": {error}" if error else (f" in {format_duration(seconds)}" if seconds is not None else "")
    CONSOLE.print(
        f"[{colour}]{status}[/{colour}] {escape(plan.spec.capture.name)} {escape(plan.spec.name)}{escape(detail)}  "
        f"[dim]({progress.summary(time.monotonic())})",
        highlight=False,
    )
