"""``clipsketch-batch``'s grid: settings as the user writes them, and their expansion into named runs (no Ray)."""

from __future__ import annotations

import json

import pytest

from nerfstudio_clipsketch.batch.grid import (
    BatchConfigError,
    BatchGrid,
    flag_arguments,
    merge,
    parse_set,
    parse_sweep,
    read_batch_file,
    settings,
)

STEPS = {"max-num-iterations": ("5",)}


def test_sweep_and_set_normalise_keys_and_split_values_into_tokens():
    sweep = parse_sweep(["--pipeline.model.num_curves=8,16", "pipeline.model.stroke-width=1.5"])
    assert sweep == {"pipeline.model.num-curves": [("8",), ("16",)], "pipeline.model.stroke-width": [("1.5",)]}
    fixed = parse_set(["pipeline.model.clip.layer-weights=0 1 1 1 0", "data-dir='a b'"])
    assert fixed["pipeline.model.clip.layer-weights"] == ("0", "1", "1", "1", "0")
    assert fixed["data-dir"] == ("a b",)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: parse_sweep(["num-curves"]), "is not KEY=VALUE"),
        (lambda: parse_sweep(["num curves=1"]), "is not an ns-train flag name"),
        (lambda: parse_sweep(["a=1", "a=2"]), "gives 'a' twice"),
        (lambda: parse_set(["a="]), "empty value"),
        (lambda: parse_set(["output-dir=x"]), "is set by clipsketch-batch"),
        (lambda: parse_sweep(["pipeline.model.seed=1,2"]), "use --seeds"),
        (lambda: parse_set(["vis=viewer"]), "tensorboard"),
    ],
)
def test_bad_settings_name_the_value(call, message):
    with pytest.raises(BatchConfigError, match=message):
        call()


def test_settings_are_the_product_of_the_sweep_in_order_with_short_readable_labels():
    points = settings(parse_sweep(["pipeline.model.num-curves=8,16", "pipeline.model.stroke-width=1,2"]))
    assert [p.label for p in points] == [
        "num-curves=8,stroke-width=1",
        "num-curves=8,stroke-width=2",
        "num-curves=16,stroke-width=1",
        "num-curves=16,stroke-width=2",
    ]
    assert points[1].values == (("pipeline.model.num-curves", ("8",)), ("pipeline.model.stroke-width", ("2",)))
    assert [p.label for p in settings({})] == ["default"]


def test_labels_keep_whole_keys_where_last_parts_collide_and_hash_unsafe_or_long_values():
    collide = settings(parse_sweep(["a.width=1", "b.width=2"]))
    assert collide[0].label == "a.width=1,b.width=2"
    unsafe = settings(parse_sweep(["pipeline.model.stroke-color=#ff0000,#00ff00", "x=a/b,a_b"]))
    labels = [p.label for p in unsafe]
    assert len(set(labels)) == 4, labels
    assert all("/" not in label and "#" not in label for label in labels)
    assert labels[0].startswith("stroke-color=_ff0000,x=a_b-")  # readable, then a hash of the real values
    long = settings({"k": [("v" * 200,), ("v" * 199 + "w",)]})
    assert all(len(p.label) <= 100 for p in long) and long[0].label != long[1].label


def test_runs_are_captures_times_settings_times_seeds(tmp_path):
    scene = tmp_path / "rose"
    scene.mkdir()
    grid = BatchGrid(
        ["builtin", str(scene)], parse_sweep(["pipeline.model.num-curves=8,16"]), {**STEPS, "x": ("1",)}, seeds=2
    )
    runs = grid.runs()
    assert [(r.capture.name, r.name) for r in runs] == [
        ("builtin", "num-curves=8,seed=0"),
        ("builtin", "num-curves=8,seed=1"),
        ("builtin", "num-curves=16,seed=0"),
        ("builtin", "num-curves=16,seed=1"),
        ("rose", "num-curves=8,seed=0"),
        ("rose", "num-curves=8,seed=1"),
        ("rose", "num-curves=16,seed=0"),
        ("rose", "num-curves=16,seed=1"),
    ]
    assert runs[0].capture.path is None and runs[4].capture.path == scene.resolve()
    assert runs[2].flags == (("max-num-iterations", ("5",)), ("x", ("1",)), ("pipeline.model.num-curves", ("16",)))
    assert {r.target_steps for r in runs} == {5}


def test_steps_can_be_swept_and_captures_with_one_name_are_told_apart(tmp_path):
    for parent in ("a", "b"):
        (tmp_path / parent / "scene").mkdir(parents=True)
    grid = BatchGrid(
        [str(tmp_path / "a/scene"), str(tmp_path / "b/scene")], parse_sweep(["max-num-iterations=3,7"]), {}
    )
    runs = grid.runs()
    assert [r.capture.name for r in runs] == ["scene", "scene", "scene-2", "scene-2"]
    assert [r.target_steps for r in runs] == [3, 7, 3, 7]


@pytest.mark.parametrize(
    "grid, message",
    [
        (BatchGrid([], {}, STEPS), "No captures"),
        (BatchGrid(["no/such/scene"], {}, STEPS), "'no/such/scene' does not exist"),
        (BatchGrid(["builtin"], {"a": [("1",)]}, {**STEPS, "a": ("2",)}), "both swept and set"),
        (BatchGrid(["builtin"], {}, STEPS, seeds=0), "--seeds must be at least 1"),
        (BatchGrid(["builtin"], {}, {"max-num-iterations": ("many",)}), "whole number"),
        (BatchGrid(["builtin"], {"a": [("1",), ("1",)]}, STEPS), "lists a value twice"),
        (BatchGrid(["builtin", "builtin"], {}, STEPS), "given twice"),
    ],
)
def test_grids_that_cannot_run_say_why(grid, message):
    with pytest.raises(BatchConfigError, match=message):
        grid.runs()


def test_a_batch_file_in_yaml_or_json_and_the_command_line_on_top(tmp_path):
    (tmp_path / "sweep.yml").write_text(
        "captures: [builtin]\n"
        "seeds: 3\n"
        "sweep:\n  pipeline.model.num-curves: [8, 16]\n  pipeline.model.stroke-width: 2.0\n"
        "set:\n  max-num-iterations: 500\n  pipeline.model.clip.layer-weights: [0, 1, 1, 1, 0]\n"
    )
    grid = read_batch_file(tmp_path / "sweep.yml")
    assert grid.captures == ["builtin"] and grid.seeds == 3
    assert grid.sweep == {"pipeline.model.num-curves": [("8",), ("16",)], "pipeline.model.stroke-width": [("2.0",)]}
    assert grid.fixed["pipeline.model.clip.layer-weights"] == ("0", "1", "1", "1", "0")
    (tmp_path / "sweep.json").write_text(json.dumps({"captures": ["builtin"], "sweep": {"a": [1, 2]}}))
    assert read_batch_file(tmp_path / "sweep.json").sweep == {"a": [("1",), ("2",)]}

    merged = merge(
        grid, None, parse_sweep(["max-num-iterations=10,20"]), parse_set(["pipeline.model.stroke-width=3"]), 1
    )
    assert merged.captures == ["builtin"] and merged.seeds == 1
    assert merged.sweep == {"pipeline.model.num-curves": [("8",), ("16",)], "max-num-iterations": [("10",), ("20",)]}
    assert merged.fixed["pipeline.model.stroke-width"] == ("3",)


@pytest.mark.parametrize(
    "text, message",
    [
        ("sweeps: {}\n", "unknown \\['sweeps'\\]"),
        ("- builtin\n", "holds a mapping"),
        ("captures: {a: 1}\n", "'captures' is a list"),
        ("sweep: [1, 2]\n", "'sweep' maps flags to values"),
        ("seeds: two\n", "'seeds' is a whole number"),
        ("set: {a: [[1, 2]]}\n", "is not a single value"),
        ("sweep: {a: [1\n", "Cannot read the batch file"),
    ],
)
def test_bad_batch_files_say_what_they_hold(tmp_path, text, message):
    path = tmp_path / "batch.yml"
    path.write_text(text)
    with pytest.raises(BatchConfigError, match=message):
        read_batch_file(path)
    with pytest.raises(BatchConfigError, match="Cannot read"):
        read_batch_file(tmp_path / "missing.yml")


def test_dataparser_flags_follow_the_dataparser_subcommand():
    method, parser = flag_arguments([("a", ("1",)), ("pipeline.datamanager.dataparser.builtin-image-size", ("32",))])
    assert (method, parser) == (["--a", "1"], ["clipsketch-data", "--builtin-image-size", "32"])
    assert flag_arguments([("dataparser", ("blender-data",)), ("b", ("x", "y"))]) == (
        ["--b", "x", "y"],
        ["blender-data"],
    )
    assert flag_arguments([("a", ("1",))]) == (["--a", "1"], [])
