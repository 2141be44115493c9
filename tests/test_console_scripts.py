"""The console scripts themselves, each run once as a user runs it (separate processes: tens of seconds, marked
``slow``). What they do is tested in-process elsewhere; here: they start, find their entry points, exit with the right
status and print messages, not tracebacks."""

from __future__ import annotations

import json

import pytest

from tests.helpers import console_text, run_cli, run_dir, train_args, with_option

pytestmark = pytest.mark.slow


def test_ns_train_then_export_and_eval(tiny_scene, tiny_clip_config, tmp_path):
    result = run_cli(["ns-train", *train_args(tiny_scene, tiny_clip_config, tmp_path, steps=3)])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    config = run_dir(tmp_path) / "config.yml"
    exported = run_cli(["clipsketch-export", "all", "--load-config", config, "--output-dir", tmp_path / "exports"])
    assert exported.returncode == 0, exported.stdout[-3000:] + exported.stderr[-3000:]
    assert (tmp_path / "exports" / "sketch.json").is_file() and (tmp_path / "exports" / "view_0000.svg").is_file()
    metrics = tmp_path / "metrics.json"
    evaluated = run_cli(["clipsketch-eval", "--load-config", config, "--output-path", metrics, "--max-views", 1])
    assert evaluated.returncode == 0, evaluated.stdout[-3000:] + evaluated.stderr[-3000:]
    assert json.loads(metrics.read_text())["step"] == 2


def test_ns_train_bad_input_is_one_message_without_traceback(tiny_clip_config, tmp_path):
    result = run_cli(["ns-train", *train_args(tmp_path / "no-such-scene", tiny_clip_config, tmp_path / "out", steps=2)])
    output = console_text(result.stdout + result.stderr)
    assert result.returncode != 0
    assert "Data path does not exist" in output and "no-such-scene" in output
    assert "Traceback" not in output


def test_ns_train_bad_setting_is_one_message_without_traceback(tiny_scene, tiny_clip_config, tmp_path):
    args = train_args(tiny_scene, tiny_clip_config, tmp_path, steps=2)
    result = run_cli(["ns-train", *with_option(args, "--pipeline.datamanager.views-per-step", 0)])
    output = console_text(result.stdout + result.stderr)
    assert result.returncode == 2, output[-3000:]
    assert "--pipeline.datamanager.views-per-step must be at least 1, got 0" in output
    assert "Traceback" not in output


def test_clipsketch_eval_bad_input_exits_with_status_one(tmp_path):
    result = run_cli(["clipsketch-eval", "--load-config", tmp_path / "nope.yml"])
    output = console_text(result.stdout + result.stderr)
    assert result.returncode == 1 and "does not exist" in output and "Traceback" not in output
