"""``clipsketch-batch``: many captures times a grid of ``ns-train clipsketch`` settings, run on Ray.

::

    clipsketch-batch --captures builtin data/rose --sweep pipeline.model.num-curves=8,16,32 --seeds 3 \\
        --set max-num-iterations=500 --output-dir outputs/sweep
    clipsketch-batch --config sweep.yml --output-dir outputs/sweep            # the same from a file
    clipsketch-batch --config sweep.yml --output-dir outputs/sweep --address auto   # on a running Ray cluster

    clipsketch-batch --captures builtin --seeds 4 --keep-best 1 --output-dir outputs/seeds    # the best of 4 seeds

Every combination is one ns-train run (a Ray Tune trial) in ``<output-dir>/<capture>/clipsketch/<setting>,seed=<n>/``,
then measured by ``clipsketch-eval``. Rerunning the same command skips finished runs and resumes stopped ones. At
the end: ``results.csv`` / ``results.json`` (one row per run, the best of each setting's seeds marked) and
``contact_sheet.png`` in the output folder. How settings are written: :mod:`nerfstudio_clipsketch.batch.grid`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional, Tuple

import tyro
from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape

from nerfstudio_clipsketch.batch.driver import BatchOptions, RayOptions, RayUnavailableError, run_batch
from nerfstudio_clipsketch.batch.grid import BatchConfigError, BatchGrid, merge, parse_set, parse_sweep, read_batch_file
from nerfstudio_clipsketch.evaluation.tables import format_grid
from nerfstudio_clipsketch.scripts.common import ScriptError, cli

SUMMARY_COLUMNS = (
    "capture",
    "run",
    "status",
    "steps",
    "wall_time_s",
    "loss",
    "eval.curves.f1@1%",
    "eval.clip.similarity",
    "best",
)


@dataclass
class BatchSketch:
    """Sketch several captures with a grid of ns-train clipsketch settings, each combination one run (a Ray Tune trial);
    then a results table and a contact sheet."""

    captures: Optional[Tuple[str, ...]] = None
    """Dataset paths (any layout ns-train clipsketch --data reads), or builtin for the built-in scene."""
    sweep: Tuple[str, ...] = ()
    """Flags to vary, each KEY=V1,V2,... with KEY an ns-train clipsketch flag without its dashes, e.g.
    pipeline.model.num-curves=8,16,32. Every combination is run."""
    fixed: Annotated[Tuple[str, ...], tyro.conf.arg(name="set")] = ()
    """Flags for every run, each KEY=VALUE, e.g. max-num-iterations=500 (a value with spaces is several tokens)."""
    seeds: Optional[int] = None
    """Runs per (capture, setting), with seeds 0, 1, ...; the one with the lowest final loss is the best (default 1)."""
    keep_best: Optional[int] = None
    """Train only this many of each setting's seeds to the end: the others stop early when their loss falls behind
    (Ray Tune's ASHA, among one setting's seeds). Default: every seed trains to the end."""
    prune_after: float = 0.25
    """With --keep-best: the share of its steps a seed trains before it can be stopped."""
    config: Optional[Path] = None
    """A YAML or JSON file with captures, sweep, set and seeds; the options above extend or override it."""
    output_dir: Path = Path("outputs/batch")
    """The batch's folder: runs, results.csv, results.json, contact_sheet.png. Rerun into it to resume."""
    cpus_per_run: float = 1.0
    """CPUs Ray reserves for each run (its OMP_NUM_THREADS)."""
    gpus_per_run: Optional[float] = None
    """GPUs Ray reserves for each run (a fraction shares one); default 1 if the cluster has GPUs, else 0 (CPU)."""
    memory_per_run: Optional[float] = None
    """GiB of memory Ray reserves for each run; none by default."""
    address: Optional[str] = None
    """Join this running Ray cluster (host:port, or auto) instead of starting a local instance."""
    num_cpus: Optional[int] = None
    """CPUs the local Ray instance schedules runs on; default all of the machine's."""
    evaluate: Annotated[bool, tyro.conf.arg(name="eval")] = True
    """Measure each trained run with clipsketch-eval; its metrics join the table."""
    loss_window: int = 10
    """A run's final loss is the mean of its last this many logged steps (ns-train logs every --logging.steps-per-log
    steps)."""
    tile_size: int = 192
    """Size in pixels of a contact sheet tile."""
    stop_timeout: float = 120.0
    """Seconds a run gets to save a checkpoint and exit when the batch is stopped (Ctrl-C)."""

    def grid(self) -> BatchGrid:
        base = read_batch_file(self.config) if self.config is not None else BatchGrid([], {}, {})
        return merge(base, self.captures, parse_sweep(self.sweep), parse_set(self.fixed), self.seeds)

    def options(self) -> BatchOptions:
        ray = RayOptions(self.address, self.num_cpus, self.cpus_per_run, self.gpus_per_run, self.memory_per_run)
        return BatchOptions(
            self.output_dir, self.evaluate, self.loss_window, self.tile_size, self.stop_timeout,
            self.keep_best, self.prune_after, ray,
        )  # fmt: skip

    def main(self) -> None:
        try:
            outcome = run_batch(self.grid(), self.options())
        except (BatchConfigError, RayUnavailableError) as e:
            raise ScriptError(str(e)) from e
        header = [c for c in SUMMARY_COLUMNS if any(row.get(c) is not None for row in outcome.rows)]
        cells = [[_cell(row.get(c)) for c in header] for row in outcome.rows]
        CONSOLE.print(escape(format_grid(header, cells)), highlight=False, soft_wrap=True)
        for row in outcome.failed:
            CONSOLE.print(f"[red]{escape(row['run'])} ({escape(row['capture'])}): {escape(str(row['error']))}")
        CONSOLE.print(
            f"[bold green]Wrote {escape(str(outcome.table_csv))}, {outcome.table_json.name} and "
            f"{outcome.contact_sheet.name}",
            highlight=False,
        )
        if outcome.exit_code:
            sys.exit(outcome.exit_code)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def entrypoint() -> None:
    """Entrypoint for use with pyproject scripts."""
    cli(BatchSketch)


if __name__ == "__main__":
    entrypoint()
