"""Finding a run's checkpoints, for resuming (``--load-dir``) and for the tools that load a trained run.

nerfstudio writes ``<run>/nerfstudio_models/step-<step:09d>.ckpt`` and reads the latest back by parsing the number out
of every name in the folder, so a run folder, an empty folder or a stray file there ends in a traceback. Here only
files named ``step-<digits>.ckpt`` count, and ``--load-dir`` may name the run's folder as well as its
``nerfstudio_models/``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional, Tuple

CHECKPOINT_NAME = re.compile(r"step-(\d+)\.ckpt")
MODELS_DIR = "nerfstudio_models"


class CheckpointError(ValueError):
    """A checkpoint folder or file that cannot be resumed from; the message says what was expected."""


def checkpoint_steps(folder: Path) -> List[int]:
    """Steps of the checkpoints in ``folder``, in increasing order (files named ``step-<step>.ckpt``; anything else in
    the folder is ignored; a missing folder has none)."""
    if not Path(folder).is_dir():
        return []
    matches = (CHECKPOINT_NAME.fullmatch(path.name) for path in Path(folder).iterdir() if path.is_file())
    return sorted(int(match.group(1)) for match in matches if match)


def find_checkpoint(load_dir: Path, step: Optional[int] = None) -> Tuple[Path, int]:
    """The checkpoint folder and step that ``--load-dir`` (and ``--load-step``) name.

    Args:
        load_dir: A run's folder (the one holding ``config.yml`` and ``nerfstudio_models/``) or its
            ``nerfstudio_models/`` folder.
        step: The step to load; None: the latest.

    Returns:
        The folder holding the checkpoint, and its step (so that nerfstudio reads exactly that file).

    Raises:
        CheckpointError: ``load_dir`` does not exist or is a file, holds no checkpoint, or none of ``step``.
    """
    load_dir = Path(load_dir)
    if not load_dir.exists():
        raise CheckpointError(
            f"--load-dir {str(load_dir)!r} does not exist; pass the folder of the run to resume "
            f"(outputs/<experiment>/clipsketch/<timestamp>) or its {MODELS_DIR}/ folder."
        )
    if load_dir.is_file():
        raise CheckpointError(
            f"--load-dir {str(load_dir)!r} is a file; pass its folder with --load-dir, or the file with "
            "--load-checkpoint."
        )
    if (load_dir / MODELS_DIR).is_dir():
        load_dir = load_dir / MODELS_DIR
    steps = checkpoint_steps(load_dir)
    if not steps:
        raise CheckpointError(
            f"--load-dir {str(load_dir)!r} holds no checkpoint (step-<number>.ckpt files); ns-train writes them to "
            f"<run>/{MODELS_DIR}/ every --steps-per-save steps, when it ends and when it is stopped with Ctrl-C."
        )
    if step is None:
        return load_dir, steps[-1]
    if step not in steps:
        raise CheckpointError(
            f"--load-step {step}: {str(load_dir)!r} has no checkpoint of that step; it has step(s) "
            f"{', '.join(map(str, steps))}."
        )
    return load_dir, step
