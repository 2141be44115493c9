"""What the ``clipsketch-*`` commands share: loading a run, and bad input as one message instead of a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

from nerfstudio.pipelines.base_pipeline import Pipeline
from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape


class ScriptError(Exception):
    """Bad command-line input (a missing file, an unusable output path or run); the message says what to fix.

    Entry points print it without a traceback and exit with status 1."""


def check_config_path(load_config: Path) -> Path:
    """The run's ``config.yml``, if it is an existing file.

    Raises:
        ScriptError: ``load_config`` does not exist or is a directory.
    """
    if not load_config.exists():
        raise ScriptError(
            f"Config file {str(load_config)!r} does not exist; pass the config.yml that ns-train wrote in the run's "
            "folder (outputs/<experiment>/clipsketch/<timestamp>/config.yml)."
        )
    if not load_config.is_file():
        raise ScriptError(f"--load-config {str(load_config)!r} is a directory, not a run's config.yml file.")
    return load_config


def load_pipeline(load_config: Path) -> Pipeline:
    """The trained pipeline of a run (latest checkpoint), with the training and test datasets, via nerfstudio's
    ``eval_setup`` (on CUDA when available, else the CPU).

    Raises:
        ScriptError: the config file is missing, or the run is not a clipsketch run.
    """
    from nerfstudio.utils.eval_utils import eval_setup

    from nerfstudio_clipsketch.model import ClipSketchModel

    _, pipeline, _, _ = eval_setup(check_config_path(load_config), test_mode="test")
    if not isinstance(pipeline.model, ClipSketchModel):
        raise ScriptError(
            f"{str(load_config)!r} is a {type(pipeline.model).__name__} run; clipsketch tools read clipsketch runs."
        )
    return pipeline


def run_or_exit(main) -> None:
    """Run a script's ``main``; a :class:`ScriptError` becomes one red message and exit status 1."""
    try:
        main()
    except ScriptError as e:
        CONSOLE.print(f"[bold red]Error:[/bold red] {escape(str(e))}", highlight=False)
        sys.exit(1)
