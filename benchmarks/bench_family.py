"""Sketch quality over the whole part family: ``ns-train clipsketch`` then ``clipsketch-eval`` per part, ABC-NEF's
F-scores per part and over the family, and a contact sheet of every final sketch.

The parts (:mod:`benchmarks.family`, generated first if not cached) are ABC-NEF objects with exact ground truth, so
``clipsketch-eval`` scores them with NEF's protocol: F@0.02, F@0.01 (precision and recall at 0.02) and chamfer, of the
final sketch and of the one training started from (``--initial``, step 0), so that a start that happens to score well
is told apart from training that improves it. Each part is trained as :mod:`benchmarks.bench_sketch` trains a scene
(same flags: random RN101 CLIP, seed 42, CPU, the default recipe plus ``--extra``), one after the other (two cores).

``<output>/`` holds per part ``<part>-default/clipsketch/run/`` (the nerfstudio run, ``eval.json``,
``eval_initial.json``, ``sketch.png``, ``bench_family.json``), ``family.md`` (a row per part, then mean, median and
worst), ``family.json`` (the raw numbers) and ``contact_sheet.png`` (each part's training view 0 with its final sketch
in red). A part trained already with the same steps, curves and extra flags is not trained again (unless ``--force``),
only measured if it has no ``eval.json`` yet, so an interrupted run resumes where it stopped.

Runs stop once their sketch has settled (the default, :mod:`nerfstudio_clipsketch.settling`), ``--steps`` being the
cap; ``--extra --settle.enabled False`` trains every step (as the tables before commit 31df21d did).

``--seeds 42 43 44`` trains every part once per seed, each seed into ``<output>/seed-<s>/`` (its own ``family.md``),
and writes ``<output>/family.md`` over the seeds: per part the mean of its seeds with their range, the family's mean,
median and worst of those means, and the family's mean seed by seed. One run per part moves by 0.05-0.2 for a change
as small as the crop's size (BENCHMARKS.md, "Framing"), so a default is judged on several seeds.

``--batch`` (through ``clipsketch-batch``) is not offered: the batch owns the seeds (0..N-1, ``pipeline.model.seed``
refused), so its runs could not be compared with these seed-42 ones, and on two cores it would run one at a time too.

Usage::

    python -m benchmarks.bench_family --steps 300 --curves 32 --output /tmp/family-300
    python -m benchmarks.bench_family --parts quick --steps 100 --output /tmp/family-quick      # 8 varied parts
    python -m benchmarks.bench_family --parts quick --seeds 42 43 44 --output /tmp/family-seeds  # a default's noise
    python -m benchmarks.bench_family --parts hex_nut tube --steps 300 --label no-ridges --output /tmp/f \\
        --extra --pipeline.model.ridges.weight 0
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw

from benchmarks.bench_sketch import HEADER, SCENES, SEED, _tool, evaluate, picture, row, train
from benchmarks.family import PARTS, default_output, ensure_family

QUICK = [
    "block",  # boxy, the simplest: 12 straight edges
    "chamfered_block",  # boxy, chamfers (short parallel edges) and a hole
    "l_bracket",  # thin walls, a hole in each leg
    "hollow_box",  # thin walls: inner and outer rims a wall's width apart
    "plate_holes",  # flat, four small holes and a large one
    "washer",  # flat and round: four circles only
    "stepped_shaft",  # turned: circles of three diameters along an axis
    "hex_nut",  # polygon and bore, chamfered faces: many short edges
]
"""Eight varied parts (two of each kind: boxy, thin, flat, round; five with holes) for ``--parts quick``."""
RECIPE = "default"
SCENE_NAMES = ["abcnef", "builtin", "rose"]
"""``--with-scenes``: :mod:`benchmarks.bench_sketch`'s shared ABC-NEF object, built-in house and rose."""
RECORD = "bench_family.json"
COLUMNS = ["part", "kind", "strokes alive", "F@0.02", "F@0.01", "chamfer", "P@0.02", "R@0.02", "F@0.02 step 0",
           "train s"]  # fmt: skip
SUMMARISED = {"F@0.02": "f@0.02", "F@0.01": "f@0.01", "F@0.02 step 0": "initial_f@0.02"}
"""Columns that get mean, median and worst (minimum) rows, and their record keys."""


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def run_dir_of(name: str, output: Path) -> Path:
    """Where :func:`benchmarks.bench_sketch.train` puts the run of scene ``name``."""
    return output / f"{name}-{RECIPE}" / "clipsketch" / "run"


def evaluate_initial(run_dir: Path) -> dict:
    """``clipsketch-eval --initial``: the sketch at step 0, into ``eval_initial.json`` ({} if it fails: the log is in
    ``eval_initial.log``)."""
    path = run_dir / "eval_initial.json"
    command = [_tool("clipsketch-eval"), "--load-config", str(run_dir / "config.yml"), "--initial"]
    with open(run_dir / "eval_initial.log", "w") as log:
        command += ["--output-path", str(path)]
        done = subprocess.run(command, check=False, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        print(f"clipsketch-eval --initial failed, see {run_dir / 'eval_initial.log'}", flush=True)
        return {}
    return json.loads(path.read_text())


def record_of(name: str, kind: str, settings: dict, report: dict, initial: dict, seconds: float) -> dict:
    """The numbers of one run, from its final and initial ``clipsketch-eval`` reports."""
    abc, start = report.get("abcnef") or {}, initial.get("abcnef") or {}
    alive = report.get("strokes_alive")
    return {
        "name": name, "kind": kind, **settings, "train_seconds": round(seconds, 1), "step": report.get("step"),
        "f@0.02": abc.get("f@0.02"), "f@0.01": abc.get("f@0.01"), "chamfer": abc.get("chamfer"),
        "precision@0.02": abc.get("precision@0.02"), "recall@0.02": abc.get("recall@0.02"),
        "initial_f@0.02": start.get("f@0.02"), "initial_f@0.01": start.get("f@0.01"),
        "strokes_alive": alive["count"] if alive else None, "num_curves": alive["of"] if alive else report["num_curves"],
        "curves_f1@1%": (report.get("curves") or {}).get("f1@1%"), "notes": report.get("notes") or [],
    }  # fmt: skip


def run_one(name: str, kind: str, args: argparse.Namespace) -> dict:
    """Trains, measures and draws scene ``name`` (a part registered in :data:`SCENES`), skipping what is done: a run
    with the same settings is not trained again (nor measured again once it has its ``eval.json``)."""
    run_dir = run_dir_of(name, args.output)
    settings = {"steps": args.steps, "curves": SCENES[name]["curves"], "extra": list(args.extra)}
    record_path = run_dir / RECORD
    previous = json.loads(record_path.read_text()) if record_path.is_file() else {}
    same = not args.force and all(previous.get(key) == value for key, value in settings.items())
    if same and "f@0.02" in previous and (run_dir / "eval.json").is_file():
        print(f"{name}: done already ({run_dir / 'eval.json'})", flush=True)
        return previous
    if same and previous.get("train_seconds") is not None and (run_dir / "config.yml").is_file():
        seconds = previous["train_seconds"]
        print(f"{name}: trained already, measuring", flush=True)
    else:
        shutil.rmtree(args.output / f"{name}-{RECIPE}", ignore_errors=True)
        start = time.perf_counter()
        train(name, RECIPE, args.steps, args.output, args.extra)
        seconds = time.perf_counter() - start
        record_path.write_text(json.dumps({"name": name, "kind": kind, **settings, "train_seconds": seconds}))
    initial = evaluate_initial(run_dir)
    report = evaluate(run_dir)
    picture(run_dir)
    record = record_of(name, kind, settings, report, initial, seconds)
    record_path.write_text(json.dumps(record, indent=1))
    return record


def part_row(record: dict) -> str:
    alive = record.get("strokes_alive")
    strokes = "failed" if "error" in record else f"{'–' if alive is None else alive}/{record.get('num_curves')}"
    cells = [
        record["name"], record.get("kind") or "", strokes,
        _fmt(record.get("f@0.02")), _fmt(record.get("f@0.01")), _fmt(record.get("chamfer")),
        _fmt(record.get("precision@0.02")), _fmt(record.get("recall@0.02")), _fmt(record.get("initial_f@0.02")),
        _fmt(record.get("train_seconds"), 4),
    ]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def summary(records: Sequence[dict]) -> dict[str, dict[str, object]]:
    """Mean, median and worst (minimum, with its part) of each :data:`SUMMARISED` value over the parts that have it."""
    out: dict[str, dict[str, object]] = {}
    for key in SUMMARISED.values():
        values = [(r[key], r["name"]) for r in records if r.get(key) is not None]
        if not values:
            out[key] = {"mean": None, "median": None, "worst": None, "worst_part": None, "count": 0}
            continue
        numbers = [v for v, _ in values]
        worst = min(values)
        out[key] = {
            "mean": statistics.fmean(numbers), "median": statistics.median(numbers),
            "worst": worst[0], "worst_part": worst[1], "count": len(values),
        }  # fmt: skip
    return out


def summary_rows(records: Sequence[dict]) -> list[str]:
    stats = summary(records)
    lines = []
    for what in ("mean", "median", "worst"):
        cells = [f"**{what}**"] + [""] * (len(COLUMNS) - 1)
        if what == "mean":
            cells[0] += f" ({stats['f@0.02']['count']} of {len(records)} parts)"
        for column, key in SUMMARISED.items():
            entry = stats[key]
            cell = _fmt(entry[what])
            if what == "worst" and entry["worst_part"] is not None:
                cell += f" ({entry['worst_part']})"
            cells[COLUMNS.index(column)] = cell
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def table(records: Sequence[dict], title: str, scene_rows: Sequence[str] = ()) -> str:
    """``family.md``: a row per part, mean / median / worst, and bench_sketch's table of the scenes if any."""
    lines = [f"# {title}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += [part_row(r) for r in records]
    if records:
        lines += summary_rows(records)
        total = sum(r.get("train_seconds") or 0 for r in records)
        lines += ["", (f"{len(records)} parts, {total / 60:.1f} min of training. F@T: NEF's protocol (ABC-NEF), "
                  "step 0: the sketch training started from (clipsketch-eval --initial).")]  # fmt: skip
    lines += [f"- {r['name']} failed: {r['error']}" for r in records if "error" in r]
    if scene_rows:
        lines += ["", "## Scenes (benchmarks.bench_sketch)", "", HEADER, *scene_rows]
    return "\n".join(lines) + "\n"


def tile(run_dir: Path, label: str, size: int = 200) -> Image.Image:
    """The sketch in red over training view 0 (the last third of bench_sketch's ``sketch.png``), cropped to what is
    drawn, with ``label`` on top."""
    image = Image.open(run_dir / "sketch.png").convert("RGB")
    third = image.width // 3
    overlay = image.crop((2 * third, 0, image.width, image.height))
    colour = overlay.getpixel((0, 0))  # the paper
    box = ImageChops.difference(overlay, Image.new("RGB", overlay.size, colour)).convert("L")
    box = box.point(lambda v: 255 if v > 12 else 0).getbbox()
    if box is not None:  # a square around the object and the strokes, on the paper where it leaves the image
        half = max(box[2] - box[0], box[3] - box[1]) // 2 + 6
        left, top = (box[0] + box[2]) // 2 - half, (box[1] + box[3]) // 2 - half
        square = Image.new("RGB", (2 * half, 2 * half), colour)
        inside = (max(0, left), max(0, top), min(overlay.width, left + 2 * half), min(overlay.height, top + 2 * half))
        square.paste(overlay.crop(inside), (inside[0] - left, inside[1] - top))
        overlay = square
    out = Image.new("RGB", (size, size + 14), (255, 255, 255))
    out.paste(overlay.resize((size, size), Image.LANCZOS), (0, 14))
    ImageDraw.Draw(out).text((3, 1), label, fill=(0, 0, 0))
    return out


def contact_sheet(items: Sequence[tuple], path: Path, columns: int = 6) -> None:
    """``items``: (run folder, label) pairs, one tile each, in rows of ``columns``."""
    tiles = [tile(run_dir, label) for run_dir, label in items if (run_dir / "sketch.png").is_file()]
    if not tiles:
        return
    columns = min(columns, len(tiles))
    width, height = tiles[0].size
    sheet = Image.new("RGB", (columns * width, -(-len(tiles) // columns) * height), (255, 255, 255))
    for i, image in enumerate(tiles):
        sheet.paste(image, ((i % columns) * width, (i // columns) * height))
    sheet.save(path)


def seed_runs(args: argparse.Namespace) -> list[tuple[int, argparse.Namespace]]:
    """One set of arguments per seed: the recipe's seed alone trains into ``--output`` as it always did; several seeds
    train each into ``<output>/seed-<s>``, a seed other than the recipe's passed to ns-train after ``--extra``."""
    runs = []
    for seed in args.seeds:
        extra = list(args.extra) + (
            [] if seed == SEED else ["--pipeline.model.seed", str(seed), "--machine.seed", str(seed)]
        )
        output = args.output if list(args.seeds) == [SEED] else args.output / f"seed-{seed}"
        runs.append((seed, argparse.Namespace(**{**vars(args), "output": output, "extra": extra})))
    return runs


def over_seeds(per_seed: dict[int, Sequence[dict]]) -> list[dict]:
    """Per part (in the first seed's order), the mean over the seeds that measured it of each :data:`SUMMARISED`
    value, with ``<key>_min``/``<key>_max`` across those seeds and ``seeds`` (how many)."""
    parts: dict[str, list[dict]] = {}
    for records in per_seed.values():
        for record in records:
            parts.setdefault(record["name"], []).append(record)
    merged = []
    for name, records in parts.items():
        out = {"name": name, "kind": records[0].get("kind"), "seeds": len(records)}
        for key in SUMMARISED.values():
            values = [r[key] for r in records if r.get(key) is not None]
            out[key] = statistics.fmean(values) if values else None
            out[f"{key}_min"], out[f"{key}_max"] = (min(values), max(values)) if values else (None, None)
        merged.append(out)
    return merged


def seeds_table(per_seed: dict[int, Sequence[dict]], title: str) -> str:
    """``family.md`` over seeds: a row per part (mean of its seeds, their range), mean / median / worst of the parts'
    means, and the family's mean F@0.02 / F@0.01 seed by seed (how much one seed's table moves by chance)."""
    merged = over_seeds(per_seed)
    columns = ["part", "kind", "seeds", *SUMMARISED]
    lines = [f"# {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for record in merged:
        cells = [record["name"], record["kind"] or "", str(record["seeds"])]
        for key in SUMMARISED.values():
            low, high = record[f"{key}_min"], record[f"{key}_max"]
            cells.append(_fmt(record[key]) + ("" if low is None else f" ({_fmt(low)}-{_fmt(high)})"))
        lines.append("| " + " | ".join(cells) + " |")
    stats = summary(merged)
    for what in ("mean", "median", "worst"):
        cells = [f"**{what}** of the parts' means", "", ""]
        for key in SUMMARISED.values():
            entry = stats[key]
            worst = f" ({entry['worst_part']})" if what == "worst" and entry["worst_part"] is not None else ""
            cells.append(_fmt(entry[what]) + worst)
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "The family's mean, seed by seed (F@0.02 / F@0.01, over the parts that seed measured):", ""]
    for seed, records in per_seed.items():
        one = summary(records)
        lines.append(f"- seed {seed}: {_fmt(one['f@0.02']['mean'])} / {_fmt(one['f@0.01']['mean'])} "
                     f"(worst {_fmt(one['f@0.02']['worst'])}, {one['f@0.02']['count']} parts)")  # fmt: skip
    return "\n".join(lines) + "\n"


def choose_parts(names: Sequence[str]) -> list[str]:
    """``all``, ``quick`` and part names, expanded in order without repeats; KeyError on an unknown name."""
    chosen: list[str] = []
    for name in names:
        expanded = list(PARTS) if name == "all" else QUICK if name == "quick" else [name]
        for part in expanded:
            if part not in PARTS:
                raise KeyError(f"unknown part {part!r}; the family has: {', '.join(PARTS)}")
            if part not in chosen:
                chosen.append(part)
    return chosen


def write_results(args, records: list[dict], scenes: list[dict], scene_rows: list[str]) -> None:
    title = f"Part family: {args.label}, {args.steps} steps, {args.curves} curves"
    (args.output / "family.md").write_text(table(records, title, scene_rows))
    result = {
        "label": args.label, "steps": args.steps, "curves": args.curves, "extra": list(args.extra),
        "parts": records, "summary": summary(records), "scenes": scenes,
    }  # fmt: skip
    (args.output / "family.json").write_text(json.dumps(result, indent=1))


def run_seeded(names: Sequence[str], folders: Sequence[Path], args: argparse.Namespace) -> list[dict]:
    """Every part in ``names`` (and the scenes with ``--with-scenes``) with one seed's arguments: its records, its
    ``family.md``, ``family.json`` and contact sheet in ``args.output``."""
    args.output.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    for name, folder in zip(names, folders):
        SCENES[name] = {"data": folder, "curves": args.curves}  # a scene by path, for bench_sketch's train
        try:
            records.append(run_one(name, PARTS[name].kind, args))
        except (subprocess.CalledProcessError, RuntimeError, ValueError) as e:  # the others go on
            print(f"{name} failed: {e}", flush=True)
            records.append({"name": name, "kind": PARTS[name].kind, "error": str(e)})
        print(part_row(records[-1]), flush=True)
        write_results(args, records, [], [])
    scenes, scene_rows = [], []
    for scene in SCENE_NAMES if args.with_scenes else []:
        record = run_one(scene, "scene", args)
        report = json.loads((run_dir_of(scene, args.output) / "eval.json").read_text())
        scenes.append(record)
        scene_rows.append(row(scene, f"{RECIPE} ({args.label})", report, record["train_seconds"]))
        print(scene_rows[-1], flush=True)
    write_results(args, records, scenes, scene_rows)
    items = [(run_dir_of(r["name"], args.output), f"{r['name']}  F@0.02={_fmt(r.get('f@0.02'), 2)}")
             for r in records + scenes]  # fmt: skip
    contact_sheet(items, args.output / "contact_sheet.png")
    print((args.output / "family.md").read_text())
    return records


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", default=["all"], help=f"all, quick ({' '.join(QUICK)}) or part names")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--curves", type=int, default=32, help="strokes per part (--with-scenes keep their own)")
    parser.add_argument("--label", default=RECIPE, help="what this run is (in family.md and family.json)")
    parser.add_argument("--output", type=Path, default=Path("/tmp/bench_family"))
    parser.add_argument("--family", type=Path, default=default_output(), help="the parts (default: %(default)s)")
    parser.add_argument("--with-scenes", action="store_true", help=f"also {', '.join(SCENE_NAMES)} (bench_sketch)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[SEED], help="one run per part per seed (%(default)s)")
    parser.add_argument("--force", action="store_true", help="train parts again even if they have an eval.json")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more ns-train flags (last option)")
    args = parser.parse_args(argv)
    try:
        names = choose_parts(args.parts)
    except KeyError as e:
        parser.error(str(e.args[0]))
    folders = ensure_family(args.family, names)
    per_seed = {seed: run_seeded(names, folders, run_args) for seed, run_args in seed_runs(args)}
    if len(per_seed) > 1:
        seeds = ", ".join(map(str, per_seed))
        title = f"Part family: {args.label}, {args.steps} steps, {args.curves} curves, seeds {seeds}"
        (args.output / "family.md").write_text(seeds_table(per_seed, title))
        merged = over_seeds(per_seed)
        over = {"label": args.label, "steps": args.steps, "curves": args.curves, "seeds": list(per_seed),
                "parts": merged, "summary": summary(merged)}  # fmt: skip
        (args.output / "family.json").write_text(json.dumps(over, indent=1))
        print((args.output / "family.md").read_text())


if __name__ == "__main__":
    main()
