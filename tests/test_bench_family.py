"""benchmarks/bench_family's table, summary and part choice from fake records (no training)."""

from __future__ import annotations

import pytest

pytest.importorskip("manifold3d")  # benchmarks.family, imported by bench_family, needs it (the test extra)

from benchmarks.bench_family import QUICK, choose_parts, summary, table
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
