"""``clipsketch-batch``'s results: the table, the best of N seeds, the contact sheet, and a batch
whose runs are all finished (which needs no Ray), all without Ray."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nerfstudio_clipsketch.batch.contact_sheet import COLOURS, sheet_layout, write_contact_sheet
from nerfstudio_clipsketch.batch.driver import BatchOptions, RayUnavailableError, check_reachable, import_ray, run_batch
from nerfstudio_clipsketch.batch.grid import BatchGrid, parse_sweep
from nerfstudio_clipsketch.batch.results import eval_columns, final_losses, mark_best, write_tables
from nerfstudio_clipsketch.batch.runs import new_record, run_dir, write_record
from nerfstudio_clipsketch.scripts.batch import BatchSketch
from nerfstudio_clipsketch.scripts.common import ScriptError

STEPS = 4


def write_losses(folder: Path, totals, start: int = 0) -> None:
    """Tensorboard scalars as nerfstudio logs them: the total loss and one term."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(folder)) as writer:
        for step, total in enumerate(totals, start):
            writer.add_scalar("Train Loss", total, step)
            writer.add_scalar("Train Loss Dict/clip_fc", total / 10, step)
            writer.add_scalar("learning_rate/control_points", 1e-3, step)


def test_final_losses_average_the_last_logged_steps_of_every_attempt(tmp_path):
    write_losses(tmp_path, [9.0, 8.0, 7.0])
    write_losses(tmp_path, [3.0, 1.0], start=3)  # a resumed attempt: a second event file
    losses = final_losses(tmp_path, window=3)
    assert list(losses) == ["loss", "loss.clip_fc"]
    assert losses["loss"] == pytest.approx((7.0 + 3.0 + 1.0) / 3)
    assert losses["loss.clip_fc"] == pytest.approx((0.7 + 0.3 + 0.1) / 3)
    assert final_losses(tmp_path / "nothing", window=3) == {}


def test_eval_columns_keep_the_summary_numbers():
    report = {
        "step": 3,
        "total_length": 2.5,
        "curves": {"chamfer": 0.1, "f1@1%": 0.5, "tau@1%": 0.01, "num_gt_points": 10, "ground_truth": "x.json"},
        "surface": None,
        "clip": {"similarity": 0.8, "similarity_blank": 0.7, "model": "RN101", "num_views": 2},
        "foreground_touch": {"mean": 0.3, "masks": ["background"], "dilation_px": 2.0},
        "views": [{"clip_similarity": 0.8}],
    }
    assert eval_columns(report) == {
        "eval.step": 3,
        "eval.total_length": 2.5,
        "eval.curves.chamfer": 0.1,
        "eval.curves.f1@1%": 0.5,
        "eval.clip.similarity": 0.8,
        "eval.clip.similarity_blank": 0.7,
        "eval.foreground_touch.mean": 0.3,
    }


def row(capture, setting, seed, loss=None, status="finished", **extra):
    return {"capture": capture, "setting": setting, "seed": seed, "run": f"{setting},seed={seed}", "status": status,
            "loss": loss, "best": False, "error": None, "image": None, **extra}  # fmt: skip


def test_the_best_seed_of_each_setting_is_the_finished_run_with_the_lowest_final_loss():
    rows = [
        row("a", "n=8", 0, 0.5), row("a", "n=8", 1, 0.2), row("a", "n=8", 2, 0.1, status="failed"),
        row("a", "n=16", 0, float("nan")), row("a", "n=16", 1, 0.9),
        row("b", "n=8", 0, None, status="failed"), row("b", "n=8", 1, 0.4, status="stopped"),
    ]  # fmt: skip
    assert mark_best(rows) == [("a", "n=8", "n=8,seed=1"), ("a", "n=16", "n=16,seed=1")]
    assert [r["best"] for r in rows] == [False, True, False, False, True, False, False]


def test_tables_have_every_column_once_and_json_has_no_nan(tmp_path):
    rows = [row("a", "n=8", 0, 0.5, **{"eval.x": 1.0}), row("a", "n=16", 0, float("nan"), **{"eval.y": 2.0})]
    csv_path, json_path = write_tables(rows, tmp_path, {"seeds": 1})
    with open(csv_path) as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2 and table[0]["eval.x"] == "1.0" and table[0]["eval.y"] == "" and table[1]["eval.y"] == "2.0"
    assert list(table[0])[-4:] == ["best", "error", "run_dir", "image"]
    document = json.loads(json_path.read_text())
    assert document["format"] == "nerfstudio-clipsketch-batch" and document["seeds"] == 1
    assert document["runs"][1]["loss"] is None


def test_the_contact_sheet_has_a_row_per_capture_and_a_column_per_setting_and_seed():
    rows = [row(c, s, seed) for c in ("a", "b") for s in ("n=8", "n=16,w=2") for seed in (0, 1)]
    layout = sheet_layout(rows, tile_size=64)
    assert layout.captures == ["a", "b"]
    assert layout.columns == [("n=8", 0), ("n=8", 1), ("n=16,w=2", 0), ("n=16,w=2", 1)]
    assert len(layout.tiles) == 8
    assert [(t.row, t.column) for t in layout.tiles] == [(r, c) for r in range(2) for c in range(4)]
    boxes = [t.box for t in layout.tiles]
    assert all(right - left == 64 and bottom - top == 64 for left, top, right, bottom in boxes)
    assert all(right <= layout.width and bottom < layout.height for _, _, right, bottom in boxes)
    for i, a in enumerate(boxes):  # no two tiles overlap, nor their labels
        for b in boxes[i + 1 :]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
    assert all(t.label_at[1] >= t.box[3] for t in layout.tiles)


def test_the_contact_sheet_shows_each_final_sketch_and_frames_the_best(tmp_path):
    sketch = np.full((32, 32, 3), 255, np.uint8)
    sketch[8:24, 14:18] = 0  # a black stroke
    Image.fromarray(sketch).save(tmp_path / "final.png")
    rows = [
        row("a", "n=8", 0, 0.1, image=str(tmp_path / "final.png"), best=True),
        row("a", "n=16", 0, None, status="failed", error="train: clipsketch: num_curves must be at least 1, got 0"),
    ]
    layout = write_contact_sheet(rows, tmp_path / "sheet.png", tile_size=64)
    sheet = np.asarray(Image.open(tmp_path / "sheet.png").convert("RGB"))
    assert sheet.shape == (layout.height, layout.width, 3)
    left, top, right, bottom = layout.tiles[0].box
    tile = sheet[top:bottom, left:right]
    assert (tile[16:48, 28:36] == 0).all() and (tile[:, :20] == 255).all()  # the stroke, enlarged pixel for pixel
    assert tuple(sheet[top - 2, left + 10]) == COLOURS.best
    left, top, right, bottom = layout.tiles[1].box
    assert tuple(sheet[top - 2, left + 10]) == (255, 255, 255)
    assert (sheet[top:bottom, left:right] != 255).any()  # a grey tile with the error


# ----------------------------------------------------------------------------------------------------------------------
# A batch with nothing left to do, and one without Ray


def finished_batch(tmp_path: Path) -> BatchGrid:
    """A batch whose two runs ns-train and clipsketch-eval have finished: checkpoints, reports, losses, frames."""
    grid = BatchGrid(["builtin"], parse_sweep(["pipeline.model.num-curves=8,16"]), {"max-num-iterations": ("4",)})
    for spec, loss in zip(grid.runs(), (0.3, 0.2)):
        folder = run_dir(tmp_path, spec)
        (folder / "nerfstudio_models").mkdir(parents=True)
        (folder / "nerfstudio_models" / f"step-{STEPS - 1:09d}.ckpt").write_bytes(b"")
        (folder / "eval_metrics.json").write_text(json.dumps({"step": STEPS - 1, "clip": {"similarity": 0.5}}))
        (folder / "timelapse").mkdir()
        Image.new("RGB", (32, 32), (255, 255, 255)).save(folder / "timelapse" / f"step_{STEPS - 1:09d}.png")
        write_losses(folder, [loss])
        record = new_record(spec, {})
        write_record(folder, {**record, "status": "failed", "attempts": [{"stage": "train", "wall_time_s": 2.0}]})
    return grid


def test_a_finished_batch_is_skipped_and_its_table_rewritten_without_ray(tmp_path, monkeypatch):
    grid = finished_batch(tmp_path)
    monkeypatch.setattr("nerfstudio_clipsketch.batch.driver.import_ray", lambda: pytest.fail("Ray was started"))
    outcome = run_batch(grid, BatchOptions(tmp_path, tile_size=64))
    assert outcome.exit_code == 0
    assert [(r["run"], r["status"], r["steps"], r["wall_time_s"], r["best"]) for r in outcome.rows] == [
        ("num-curves=8,seed=0", "finished", STEPS, 2.0, True),
        ("num-curves=16,seed=0", "finished", STEPS, 2.0, True),
    ]
    assert outcome.rows[0]["loss"] == pytest.approx(0.3) and outcome.rows[0]["eval.clip.similarity"] == 0.5
    document = json.loads(outcome.table_json.read_text())
    assert len(document["contact_sheet"]["tiles"]) == 2 and outcome.contact_sheet.is_file()


def test_without_ray_a_batch_with_runs_left_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RayUnavailableError, match=r'pip install "nerfstudio-clipsketch\[batch\]"'):
        import_ray()
    cli = BatchSketch(captures=("builtin",), fixed=("max-num-iterations=3",), output_dir=tmp_path)
    with pytest.raises(ScriptError, match="Ray Tune, which is not installed"):
        cli.main()


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(address="auto", num_cpus=2), "--num-cpus sizes a local Ray instance"),
        (dict(cpus_per_run=0), "--cpus-per-run must be positive"),
        (dict(gpus_per_run=1.5), "--gpus-per-run must be 0, a fraction of 1, or a whole number"),
        (dict(memory_per_run=-1), "--memory-per-run must be a positive"),
        (dict(loss_window=0), "--loss-window must be at least 1"),
        (dict(keep_best=0, seeds=4), "--keep-best must be at least 1 seed"),
        (dict(keep_best=2, seeds=2), "--keep-best 2 keeps all 2 seeds of a setting: give more --seeds than that"),
        (dict(keep_best=1, seeds=4, prune_after=1.5), "--prune-after is a share of the steps, between 0 and 1"),
    ],
)
def test_bad_options_are_one_message_before_anything_runs(tmp_path, options, message):
    cli = BatchSketch(captures=("builtin",), fixed=("max-num-iterations=3",), output_dir=tmp_path, **options)
    with pytest.raises(ScriptError, match=message):
        cli.main()
    assert not list(tmp_path.iterdir())


def test_an_address_nothing_answers_at_fails_at_once():
    import socket

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        check_reachable(f"127.0.0.1:{port}")
        check_reachable(f"ray://127.0.0.1:{port}")
    with pytest.raises(RayUnavailableError, match=f"Nothing answers at --address '127.0.0.1:{port}'"):
        check_reachable(f"127.0.0.1:{port}")
    check_reachable("auto")  # left to Ray
