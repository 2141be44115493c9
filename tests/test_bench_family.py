"""benchmarks/bench_family's table, summary, part choice and seeds from fake records (no training)."""

from __future__ import annotations

import pytest

pytest.importorskip("manifold3d")  # benchmarks.family, imported by bench_family, needs it (the test extra)

import argparse
from pathlib import Path

from benchmarks.bench_family import QUICK, choose_parts, over_seeds, seed_runs, seeds_table, summary, table
from benchmarks.family import PARTS


def _record(name: str, f2, f1, initial=0.1) -> dict:
    return {"name": name, "kind": "boxy", "f@0.02": f2, "f@0.01": f1, "initial_f@0.02": initial, "chamfer": 0.05,
            "precision@0.02": 0.5, "recall@0.02": 0.4, "strokes_alive": 30, "num_curves": 32, "train_seconds": 12.0}  # fmt: skip


def test_summary_mean_median_worst_names_the_part() -> None:
    records = [_record("block", 0.6, 0.3), _record("tube", 0.2, 0.05), _record("washer", 0.4, None, None)]
    stats = summary(records)
    assert stats["f@0.02"]["mean"] == pytest.approx(0.4)
    assert stats["f@0.02"]["median"] == pytest.approx(0.4)
    assert (stats["f@0.02"]["worst"], stats["f@0.02"]["worst_part"]) == (0.2, "tube")
    assert stats["f@0.01"]["count"] == 2  # a part without the number is left out, not counted as 0
    assert stats["f@0.01"]["mean"] == pytest.approx(0.175)

    text = table(records, "title")
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + 3 + 3  # header, rule, a row per part, mean / median / worst
    worst = lines[-1].split("|")
    assert "**worst**" in worst[1] and "0.2 (tube)" in worst[4] and "0.05 (tube)" in worst[5]
    assert "| washer | boxy | 30/32 | 0.4 | – |" in text


def test_choose_parts() -> None:
    assert len(QUICK) == 8 and set(QUICK) <= set(PARTS)
    assert choose_parts(["quick", "block", "tube"]) == [*QUICK, "tube"]
    assert choose_parts(["all"]) == list(PARTS)
    with pytest.raises(KeyError, match="nope"):
        choose_parts(["nope"])


def test_each_seed_trains_into_its_own_folder_with_its_seed_last() -> None:
    args = argparse.Namespace(seeds=[42], output=Path("/out"), extra=["--a", "1"], steps=300)
    ((seed, alone),) = seed_runs(args)
    assert seed == 42 and alone.output == Path("/out") and alone.extra == ["--a", "1"]  # as before --seeds
    runs = dict(seed_runs(argparse.Namespace(seeds=[42, 7], output=Path("/out"), extra=["--a", "1"], steps=300)))
    assert runs[42].output == Path("/out/seed-42") and runs[42].extra == ["--a", "1"]
    assert runs[7].output == Path("/out/seed-7") and runs[7].steps == 300
    assert runs[7].extra == ["--a", "1", "--pipeline.model.seed", "7", "--machine.seed", "7"]  # after the recipe's 42
    assert args.output == Path("/out")  # the caller's arguments are not changed


def test_over_seeds_averages_each_part_and_judges_the_family_on_the_means() -> None:
    per_seed = {
        42: [_record("block", 0.9, 0.5), _record("tube", 0.2, 0.1)],
        43: [_record("block", 0.7, 0.3), _record("tube", 0.6, None)],
    }
    merged = {r["name"]: r for r in over_seeds(per_seed)}
    assert merged["block"]["f@0.02"] == pytest.approx(0.8) and merged["block"]["seeds"] == 2
    assert (merged["block"]["f@0.02_min"], merged["block"]["f@0.02_max"]) == (0.7, 0.9)
    assert merged["tube"]["f@0.01"] == pytest.approx(0.1)  # the seed without the number is left out
    stats = summary(list(merged.values()))
    assert (stats["f@0.02"]["worst"], stats["f@0.02"]["worst_part"]) == (pytest.approx(0.4), "tube")

    text = seeds_table(per_seed, "title")
    assert "| block | boxy | 2 | 0.8 (0.7-0.9) |" in text and "0.4 (tube)" in text
    assert "- seed 42: 0.55 / 0.3 (worst 0.2, 2 parts)" in text and "- seed 43: 0.65 / 0.3 (worst 0.6" in text
