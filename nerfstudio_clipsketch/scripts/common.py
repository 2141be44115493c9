"""What the ``clipsketch-*`` commands share: loading a trained run, and bad input as one message, not a traceback."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import tyro
import yaml
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


def read_trainer_config(config_path: Path):
    """The run's TrainerConfig, if ``config_path`` holds one of a clipsketch run.

    Raises:
        ScriptError: the file is missing, unreadable, not an ns-train config, or another method's.
    """
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
            f"{str(config_path)!r} is a {config.method_name!r} run; clipsketch tools read clipsketch runs "
            f"(method 'clipsketch')."
        )
    return config


def default_device() -> torch.device:
    """The machine's accelerator if it has one (CUDA, ...), else the CPU."""
    return torch.accelerator.current_accelerator(check_available=True) or torch.device("cpu")


@dataclass
class LoadedRun:
    """A trained run set up for use outside training: its config, pipeline (test split loaded) and checkpoint."""

    config_path: Path
    pipeline: "ClipSketchPipeline"  # noqa: F821 - imported lazily, nerfstudio's pipelines are slow to import
    checkpoint: Optional[Path]
    """None for the initial sketch (no checkpoint loaded)."""
    step: int


def load_run(config_path: Path, initial: bool = False, step: Optional[int] = None) -> LoadedRun:
    """Set up a clipsketch run as nerfstudio's ``eval_setup`` does (test split, on the accelerator when there is one),
    with its latest checkpoint.

    Args:
        config_path: The run's ``config.yml``.
        initial: The sketch training started from (step 0): kept in the run's checkpoints. A run with no checkpoint
            yet is set up afresh instead, its curves drawn from the seeded generator as in training (without the
            visual hull, which only training carves: such a run starts as init 'sphere' or 'points' would).
        step: The checkpoint of this step instead of the latest.

    Raises:
        ScriptError: the config is missing, unreadable or not a clipsketch run's; no checkpoint was saved (or none at
            ``step``); the data it was trained on cannot be read.
    """
    from nerfstudio.configs.method_configs import all_methods
    from nerfstudio.utils.eval_utils import eval_load_checkpoint

    from nerfstudio_clipsketch.checkpoints import checkpoint_steps
    from nerfstudio_clipsketch.dataparsers import ClipSketchDataError
    from nerfstudio_clipsketch.model_config import ClipSketchConfigError

    config = read_trainer_config(config_path)
    checkpoint_dir = config.get_checkpoint_dir()
    steps = checkpoint_steps(checkpoint_dir)
    if not initial and not steps:
        raise ScriptError(
            f"The run {str(config_path)!r} has no checkpoint in {str(checkpoint_dir)!r} (ns-train saves one every "
            "--steps-per-save steps, at the end and when stopped by Ctrl-C); pass --initial to measure its initial "
            "sketch."
        )
    if step is not None and step not in steps:
        kept = ", ".join(map(str, steps)) or "none"
        raise ScriptError(
            f"The run {str(config_path)!r} has no checkpoint of step {step} (kept: {kept}); ns-train keeps only the "
            "latest unless run with --save-only-latest-checkpoint False."
        )
    if config.method_name in all_methods:
        config.pipeline.datamanager._target = all_methods[config.method_name].pipeline.datamanager._target
    config.load_dir = checkpoint_dir
    config.load_step = step if step is not None else steps[-1] if steps else None  # named: nerfstudio parses every name
    try:
        pipeline = config.pipeline.setup(device=default_device(), test_mode="test")
    except ClipSketchDataError as e:
        raise ScriptError(f"Cannot read the run's data: {e}") from e
    except ClipSketchConfigError as e:
        raise ScriptError(f"Cannot set up the run's model: {e}") from e
    pipeline.eval()
    if initial and not steps:
        return LoadedRun(config_path, pipeline, None, 0)
    checkpoint, step = eval_load_checkpoint(config, pipeline)
    if initial:
        pipeline.model.restart()
        return LoadedRun(config_path, pipeline, Path(checkpoint), 0)
    return LoadedRun(config_path, pipeline, Path(checkpoint), int(step))


def cli(command_type: Any) -> None:
    """Parse the command line into ``command_type`` (a tyro dataclass or union of them) and run its ``main``."""
    tyro.extras.set_accent_color("bright_yellow")
    run_or_exit(tyro.cli(command_type).main)


def run_or_exit(main: Callable[[], None]) -> None:
    """Run a script's ``main``; a :class:`ScriptError` becomes one red message and exit status 1."""
    try:
        main()
    except ScriptError as e:
        CONSOLE.print(f"[bold red]Error:[/bold red] {escape(str(e))}", highlight=False)
        sys.exit(1)
