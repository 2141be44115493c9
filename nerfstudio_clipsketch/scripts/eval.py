"""``clipsketch-eval``: measure a trained sketch against what its dataset knows about the object.

::

    clipsketch-eval --load-config outputs/<experiment>/clipsketch/<timestamp>/config.yml --output-path metrics.json
    clipsketch-eval --load-config .../config.yml --initial      # the seeded sketch training started from (step 0)

What is measured, and how, is described in :mod:`nerfstudio_clipsketch.evaluation.report`. Everything is written to a
JSON file (every number, and what was measured: the run, checkpoint step, data, split, point counts, absolute
thresholds) and summarised as tables on the terminal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional

import tyro
from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape

from nerfstudio_clipsketch.clip_guidance import ClipGuidanceError
from nerfstudio_clipsketch.dataparsers import ClipSketchDataError
from nerfstudio_clipsketch.evaluation.report import (
    JSON_FORMAT,
    JSON_VERSION,
    MetricOptions,
    MetricOptionsError,
    evaluate_sketch,
)
from nerfstudio_clipsketch.evaluation.tables import print_report
from nerfstudio_clipsketch.scripts.common import ScriptError, check_config_path, cli, load_run


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
    load_step: Optional[int] = None
    """Measure the checkpoint of this step (kept by ns-train --save-only-latest-checkpoint False) instead of the
    latest."""
    options: Annotated[MetricOptions, tyro.conf.arg(name="")] = field(default_factory=MetricOptions)
    """How the sketch is measured."""

    def resolved_output_path(self) -> Path:
        if self.output_path is not None:
            return self.output_path
        return self.load_config.parent / ("eval_metrics_initial.json" if self.initial else "eval_metrics.json")

    def main(self) -> None:
        check_config_path(self.load_config)
        try:
            self.options.check()
        except MetricOptionsError as e:
            raise ScriptError(str(e)) from e
        output_path = self.resolved_output_path()
        if output_path.is_dir():
            raise ScriptError(f"--output-path {str(output_path)!r} is a folder; give a file name like metrics.json.")
        if self.initial and self.load_step is not None:
            raise ScriptError("--initial and --load-step name different sketches: give one of them.")
        run = load_run(self.load_config, self.initial, self.load_step)
        try:
            metrics = evaluate_sketch(run.pipeline, self.options)
        except ClipGuidanceError as e:
            raise ScriptError(f"Cannot build the run's CLIP model: {e}") from e
        except ClipSketchDataError as e:
            raise ScriptError(str(e)) from e
        report = {
            "format": JSON_FORMAT,
            "version": JSON_VERSION,
            "config": str(self.load_config.resolve()),
            "checkpoint": str(run.checkpoint) if run.checkpoint is not None else None,
            "step": run.step,
            "initial": self.initial,
            **metrics,
        }
        output_path.parent.mkdir(parents=True, exist_ok=True)
        output_path.write_text(json.dumps(report, indent=2), encoding="utf-8")
        print_report(report)
        CONSOLE.print(f"[bold green]Wrote the metrics to {escape(str(output_path))}", highlight=False)


def entrypoint() -> None:
    """Entrypoint for use with pyproject scripts."""
    cli(EvalSketch)


if __name__ == "__main__":
    entrypoint()
