"""A batch as the user describes it, and its expansion into runs: captures x settings x seeds.

A setting is any ``ns-train clipsketch`` flag, written without its dashes as ``KEY=VALUE``
(``pipeline.model.num-curves=8``; underscores and a leading ``--`` are accepted too). ``--sweep KEY=V1,V2,...``
gives the values a key takes across the grid, ``--set KEY=VALUE`` one value for every run. A value with spaces is
several tokens
(``pipeline.model.clip.layer-weights=0 1 1 1 0``). Flags of the dataparser subcommand are written with their full
prefix (``pipeline.datamanager.dataparser.builtin-image-size=32``); they go after the ``clipsketch-data``
subcommand, or after the one named by the key ``dataparser``.

The same in a YAML or JSON file (``--config``), whose keys the command line extends or overrides::

    captures: [builtin, data/rose]        # dataset paths (relative to the current folder), or builtin
    seeds: 3
    sweep:
      pipeline.model.num-curves: [8, 16, 32]
      pipeline.model.stroke-width: [1.5, 3.0]
    set:
      max-num-iterations: 500
      pipeline.model.clip.layer-weights: [0, 1, 1, 1, 0]   # a list in `set`: one value of several tokens

Runs are named from what varies, so a rerun of a grown grid finds the runs it already has: capture ``rose``,
``num-curves=8,stroke-width=1.5,seed=0`` lands in ``<batch>/rose/clipsketch/num-curves=8,stroke-width=1.5,seed=0/``.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

Tokens = Tuple[str, ...]
"""One flag's value, as the tokens that follow it on the ns-train command line."""

BUILTIN = "builtin"
DATAPARSER_KEY = "dataparser"
DATAPARSER_PREFIX = "pipeline.datamanager.dataparser."
DEFAULT_DATAPARSER = "clipsketch-data"
STEPS_KEY = "max-num-iterations"
FILE_KEYS = ("captures", "seeds", "sweep", "set")
MAX_LABEL_LENGTH = 100

RESERVED_KEYS = {
    "output-dir": "runs land in <output-dir>/<capture>/clipsketch/<run>/ (set --output-dir of clipsketch-batch)",
    "experiment-name": "each capture is an experiment, named after it",
    "timestamp": "each run's folder is named after its settings",
    "data": "give the captures with --captures",
    "pipeline.datamanager.data": "give the captures with --captures",
    DATAPARSER_PREFIX + "data": "give the captures with --captures",
    "vis": "runs log to tensorboard: their final losses are read from it, and a viewer would keep them open",
    "load-dir": "clipsketch-batch resumes stopped runs from their checkpoints itself",
    "load-step": "clipsketch-batch resumes stopped runs from their checkpoints itself",
    "load-checkpoint": "clipsketch-batch resumes stopped runs from their checkpoints itself",
    "load-config": "clipsketch-batch resumes stopped runs from their checkpoints itself",
    "machine.seed": "use --seeds",
    "pipeline.model.seed": "use --seeds",
}
_KEY = re.compile(r"[a-z0-9][a-z0-9.-]*")


class BatchConfigError(ValueError):
    """A batch that cannot run as given; the message names the value and what is allowed."""


@dataclass(frozen=True)
class Capture:
    """A dataset to sketch: ``path`` is None for the built-in scene. ``name`` is its experiment (folder) name."""

    name: str
    path: Optional[Path]


@dataclass(frozen=True)
class Setting:
    """One point of the grid: a value for every swept key, and its label (a column of the contact sheet)."""

    values: Tuple[Tuple[str, Tokens], ...]
    label: str


@dataclass(frozen=True)
class RunSpec:
    """One run of the batch: a capture, a setting, a seed, and every ns-train flag the user gave it."""

    capture: Capture
    setting: Setting
    seed: int
    flags: Tuple[Tuple[str, Tokens], ...]
    """The fixed flags, then the setting's swept ones (the order they are passed to ns-train)."""
    target_steps: int

    @property
    def name(self) -> str:
        return f"{self.setting.label},seed={self.seed}"


@dataclass
class BatchGrid:
    """What the user asked for: captures (paths as given, or ``builtin``), swept and fixed flags, seeds."""

    captures: List[str]
    sweep: Dict[str, List[Tokens]]
    fixed: Dict[str, Tokens]
    seeds: int = 1

    def runs(self) -> List[RunSpec]:
        """Every run, captures outermost and seeds innermost (the contact sheet's reading order)."""
        return expand(self)


# ----------------------------------------------------------------------------------------------------------------------
# Parsing


def normalise_key(key: str) -> str:
    """``--pipeline.model.num_curves`` -> ``pipeline.model.num-curves`` (the form tyro prints)."""
    normal = key.strip().removeprefix("--").replace("_", "-")
    if not _KEY.fullmatch(normal):
        raise BatchConfigError(
            f"{key!r} is not an ns-train flag name; write it without value or spaces, e.g. pipeline.model.num-curves"
        )
    if normal in RESERVED_KEYS:
        raise BatchConfigError(f"{normal!r} is set by clipsketch-batch for every run: {RESERVED_KEYS[normal]}.")
    return normal


def tokens(value: Any, where: str) -> Tokens:
    """A flag value as command-line tokens: a string is split like a shell does, a list gives one token per item."""
    if isinstance(value, (list, tuple)):
        out: Tokens = tuple(_scalar(item, where) for item in value)
    elif isinstance(value, str):
        try:
            out = tuple(shlex.split(value))
        except ValueError as e:
            raise BatchConfigError(f"{where}: cannot split {value!r} into tokens ({e})") from e
    else:
        out = (_scalar(value, where),)
    if not out:
        raise BatchConfigError(f"{where}: empty value; give a value (None for an optional flag's default)")
    return out


def _scalar(value: Any, where: str) -> str:
    if isinstance(value, (dict, list, tuple)):
        raise BatchConfigError(f"{where}: {value!r} is not a single value (a number, word or path)")
    return "None" if value is None else str(value)


def _split_assignment(text: str, option: str) -> Tuple[str, str]:
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise BatchConfigError(f"{option} {text!r} is not KEY=VALUE, e.g. {option} pipeline.model.num-curves=8")
    return normalise_key(key), value


def parse_sweep(items: Sequence[str]) -> Dict[str, List[Tokens]]:
    """``["pipeline.model.num-curves=8,16"]`` -> ``{"pipeline.model.num-curves": [("8",), ("16",)]}``."""
    sweep: Dict[str, List[Tokens]] = {}
    for item in items:
        key, values = _split_assignment(item, "--sweep")
        if key in sweep:
            raise BatchConfigError(f"--sweep gives {key!r} twice; list all its values once: {key}=V1,V2,...")
        sweep[key] = [tokens(value, f"--sweep {item!r}") for value in values.split(",")]
    return sweep


def parse_set(items: Sequence[str]) -> Dict[str, Tokens]:
    """``["max-num-iterations=500"]`` -> ``{"max-num-iterations": ("500",)}``."""
    fixed: Dict[str, Tokens] = {}
    for item in items:
        key, value = _split_assignment(item, "--set")
        fixed[key] = tokens(value, f"--set {item!r}")
    return fixed


def read_batch_file(path: Path) -> BatchGrid:
    """A batch described in a YAML or JSON file (see the module docstring)."""
    try:
        content = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise BatchConfigError(f"Cannot read the batch file {str(path)!r}: {e}") from e
    content = {} if content is None else content
    if not isinstance(content, dict) or set(content) - set(FILE_KEYS):
        unknown = sorted(set(content) - set(FILE_KEYS)) if isinstance(content, dict) else type(content).__name__
        raise BatchConfigError(f"Batch file {str(path)!r}: unknown {unknown}; it holds a mapping of {FILE_KEYS}.")
    captures = content.get("captures", [])
    captures = [captures] if isinstance(captures, str) else captures
    if not isinstance(captures, list) or not all(isinstance(c, str) for c in captures):
        raise BatchConfigError(
            f"Batch file {str(path)!r}: 'captures' is a list of paths or 'builtin', got {captures!r}"
        )
    sweep: Dict[str, List[Tokens]] = {}
    for key, values in _mapping(content, "sweep", path).items():
        listed = values if isinstance(values, list) else [values]
        sweep[normalise_key(key)] = [tokens(v, f"{path}: sweep {key}") for v in listed]
    fixed = {normalise_key(k): tokens(v, f"{path}: set {k}") for k, v in _mapping(content, "set", path).items()}
    seeds = content.get("seeds", 1)
    if not isinstance(seeds, int) or isinstance(seeds, bool):
        raise BatchConfigError(f"Batch file {str(path)!r}: 'seeds' is a whole number, got {seeds!r}")
    return BatchGrid(captures=captures, sweep=sweep, fixed=fixed, seeds=seeds)


def _mapping(content: dict, name: str, path: Path) -> Mapping[str, Any]:
    value = content.get(name) or {}
    if not isinstance(value, dict):
        raise BatchConfigError(f"Batch file {str(path)!r}: {name!r} maps flags to values, got {value!r}")
    return value


def merge(
    base: BatchGrid,
    captures: Optional[Sequence[str]],
    sweep: Dict[str, List[Tokens]],
    fixed: Dict[str, Tokens],
    seeds: Optional[int],
) -> BatchGrid:
    """The file's batch with the command line's on top: its captures and seeds replace, its flags override by key."""
    merged_sweep = {**{k: v for k, v in base.sweep.items() if k not in fixed}, **sweep}
    merged_fixed = {**{k: v for k, v in base.fixed.items() if k not in sweep}, **fixed}
    return BatchGrid(
        captures=list(captures) if captures else list(base.captures),
        sweep=merged_sweep,
        fixed=merged_fixed,
        seeds=seeds if seeds is not None else base.seeds,
    )


# ----------------------------------------------------------------------------------------------------------------------
# Expansion


def resolve_captures(captures: Sequence[str]) -> List[Capture]:
    """``builtin`` or existing dataset paths (made absolute), with distinct folder names."""
    if not captures:
        raise BatchConfigError("No captures: give --captures (dataset paths, or builtin for the built-in scene).")
    resolved: List[Capture] = []
    for text in captures:
        if text == BUILTIN:
            resolved.append(Capture(BUILTIN, None))
            continue
        path = Path(text).expanduser().resolve()
        if not path.exists():
            raise BatchConfigError(
                f"Capture {text!r} does not exist; give a dataset folder (any layout ns-train clipsketch --data "
                f"reads) or {BUILTIN!r} for the built-in scene."
            )
        resolved.append(Capture(_safe(path.stem if path.is_file() else path.name) or "capture", path))
    if len({c.path for c in resolved}) < len(resolved):
        raise BatchConfigError(f"A capture is given twice in {list(captures)}; use --seeds for repeated runs.")
    names: List[str] = []
    for capture in resolved:
        name, n = capture.name, 2
        while name in names:
            name, n = f"{capture.name}-{n}", n + 1
        names.append(name)
    return [Capture(name, c.path) for name, c in zip(names, resolved)]


def _safe(text: str) -> str:
    """A folder-name-safe version of ``text``: separators and anything unusual become ``_``."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text)


def _short_keys(keys: Sequence[str]) -> Dict[str, str]:
    """Each key's last part (``num-curves``), or the whole key where last parts would collide."""
    last = {k: k.rsplit(".", 1)[-1] for k in keys}
    counts = {s: list(last.values()).count(s) for s in last.values()}
    return {k: s if counts[s] == 1 else k for k, s in last.items()}


def settings(sweep: Dict[str, List[Tokens]]) -> List[Setting]:
    """The grid's points in order (the first key varies slowest), each labelled ``short-key=value,...``.

    Labels stay readable when they can: a hash of the full setting is appended only where making them folder-safe
    or shortening them would merge two settings or lose information.
    """
    if not sweep:
        return [Setting((), "default")]
    for key, values in sweep.items():
        if len(set(values)) < len(values):
            raise BatchConfigError(f"--sweep {key} lists a value twice: {[' '.join(v) for v in values]}")
    short = _short_keys(list(sweep))
    points = [tuple(zip(sweep, combo)) for combo in itertools.product(*sweep.values())]
    labels = []
    for point in points:
        values = ["_".join(v) for _, v in point]
        label = ",".join(f"{short[k]}={_safe(v)}" for (k, _), v in zip(point, values))
        if any(_safe(v) != v for v in values) or len(label) > MAX_LABEL_LENGTH:
            digest = hashlib.sha1(repr(point).encode()).hexdigest()[:8]
            label = f"{label[: MAX_LABEL_LENGTH - 9]}-{digest}"
        labels.append(label)
    return [Setting(point, label) for point, label in zip(points, labels)]


def target_steps(flags: Dict[str, Tokens]) -> int:
    """The steps a run trains for: its ``max-num-iterations``, or the method's default."""
    value = flags.get(STEPS_KEY)
    if value is None:
        from nerfstudio_clipsketch.method_config import MAX_ITERATIONS  # imported here: it imports torch

        return MAX_ITERATIONS
    try:
        steps = int(value[0]) if len(value) == 1 else 0
    except ValueError:
        steps = 0
    if steps < 1:
        raise BatchConfigError(f"{STEPS_KEY} must be one whole number of at least 1, got {' '.join(value)!r}")
    return steps


def expand(grid: BatchGrid) -> List[RunSpec]:
    """Every run of ``grid`` (see :meth:`BatchGrid.runs`).

    Raises:
        BatchConfigError: no captures or a missing one, a key both swept and set, fewer than one seed, a bad
            ``max-num-iterations``.
    """
    if grid.seeds < 1:
        raise BatchConfigError(f"--seeds must be at least 1, got {grid.seeds}")
    both = sorted(set(grid.sweep) & set(grid.fixed))
    if both:
        raise BatchConfigError(f"{both} both swept and set; give each flag in --sweep or in --set, not both.")
    parser = grid.fixed.get(DATAPARSER_KEY)
    if parser is not None and len(parser) != 1 or any(len(v) != 1 for v in grid.sweep.get(DATAPARSER_KEY, [])):
        raise BatchConfigError(f"{DATAPARSER_KEY!r} names one dataparser subcommand, e.g. {DEFAULT_DATAPARSER}")
    captures = resolve_captures(grid.captures)
    runs = []
    for capture, setting in itertools.product(captures, settings(grid.sweep)):
        flags = {**grid.fixed, **dict(setting.values)}
        steps = target_steps(flags)
        for seed in range(grid.seeds):
            runs.append(RunSpec(capture, setting, seed, tuple(flags.items()), steps))
    return runs


def flag_arguments(flags: Sequence[Tuple[str, Tokens]]) -> Tuple[List[str], List[str]]:
    """ns-train arguments for ``flags``: those of the method, then the dataparser subcommand and its own (or an
    empty list when no flag is the dataparser's)."""
    method: List[str] = []
    parser: List[str] = []
    name = None
    for key, value in flags:
        if key == DATAPARSER_KEY:
            name = value[0]
        elif key.startswith(DATAPARSER_PREFIX):
            parser += [f"--{key.removeprefix(DATAPARSER_PREFIX)}", *value]
        else:
            method += [f"--{key}", *value]
    if name is None and not parser:
        return method, []
    return method, [name or DEFAULT_DATAPARSER, *parser]
