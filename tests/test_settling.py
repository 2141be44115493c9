"""The settle rule: training ends once the curves stop moving and the loss stops falling, saved as any other end."""

from __future__ import annotations

import json

import pytest
import torch

from nerfstudio_clipsketch.batch.runs import run_state
from nerfstudio_clipsketch.checkpoints import checkpoint_steps
from nerfstudio_clipsketch.settling import RECORD_NAME, SettleRule, SettleSettings, settled_step
from nerfstudio_clipsketch.trainer import ClipSketchConfigError
from tests.helpers import console_text, run_dir, train_args, train_in_process, with_option

WIDTH = 0.01  # stroke width in world units


def curves_at(step: int, still_from: int, generator: torch.Generator) -> torch.Tensor:
    """Four straight cubic curves that travel sideways one stroke width a step until ``still_from``, then only jitter
    by 1 % of one."""
    base = torch.arange(16, dtype=torch.float32).reshape(4, 4, 1).expand(4, 4, 3) * 0.1
    travelled = min(step, still_from) * WIDTH * torch.tensor([1.0, -1.0, 0.0]) / 2**0.5
    return base + travelled + 0.01 * WIDTH * torch.randn(4, 4, 3, generator=generator)


def loss_at(step: int, flat_from: int, generator: torch.Generator) -> float:
    """A loss falling 1 % a step until ``flat_from``, then flat, with noise of 2 % of it a step."""
    return 0.99 ** min(step, flat_from) * (1.0 + 0.02 * float(torch.randn(1, generator=generator)))


def first_settled(settings: SettleSettings, still_from: int, flat_from: int, steps: int = 400):
    rule, g = SettleRule(settings), torch.Generator().manual_seed(0)
    for step in range(steps):
        if rule.observe(step, curves_at(step, still_from, g), WIDTH, loss_at(step, flat_from, g)) is not None:
            return step
    return None


def test_settles_once_curves_are_still_and_the_loss_is_flat_and_not_before():
    settings = SettleSettings(window=20, movement=0.5, loss_drop=0.01, min_steps=50)
    step = first_settled(settings, still_from=100, flat_from=100)
    assert step is not None and 120 <= step <= 160  # one window after both stopped, the loss's windows averaged
    # Still moving, or the loss still falling: never.
    assert first_settled(settings, still_from=1000, flat_from=0) is None
    assert first_settled(settings, still_from=0, flat_from=1000) is None
    # Both still from the start: not before min_steps.
    assert first_settled(settings, still_from=0, flat_from=0) == settings.min_steps - 1


def test_one_stroke_still_travelling_is_outvoted_only_below_the_quantile():
    g = torch.Generator().manual_seed(0)
    moving = lambda step: torch.cat([curves_at(0, 0, g)[:3], curves_at(step, 10_000, g)[3:]])  # noqa: E731
    for quantile, expected in ((0.7, True), (1.0, False)):  # a quarter of the points move
        rule = SettleRule(SettleSettings(window=10, quantile=quantile, min_steps=0))
        fired = [rule.observe(step, moving(step), WIDTH, 1.0) is not None for step in range(30)]
        assert any(fired) == expected, quantile


def test_a_stroke_sliding_along_itself_has_not_moved_but_one_moving_sideways_has():
    from nerfstudio_clipsketch.settling import curve_points, movement

    line = torch.tensor([[[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.2, 0.0, 0.0], [0.3, 0.0, 0.0]]])
    along, sideways = line + torch.tensor([0.05, 0.0, 0.0]), line + torch.tensor([0.0, 0.05, 0.0])
    # Slid 5 stroke widths along itself: only its ends' overhang moved (the quantile ignores them), not the drawing.
    assert movement(curve_points(line), curve_points(along), WIDTH, 0.5) < 0.01
    assert movement(curve_points(line), curve_points(sideways), WIDTH, 0.5) == pytest.approx(5.0, rel=1e-4)


def test_strokes_that_keep_lengthening_have_not_settled():
    """Each stroke grows at both ends by a tenth of a stroke width a step: no point moves a stroke width within a
    window, but the ink's length grows 4 % a window."""
    rule = SettleRule(SettleSettings(window=20, min_steps=0, loss_drop=1.0))
    line = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [3.0, 0.0, 0.0]]]) / 3.0 * 0.5
    for step in range(200):
        grown = line * (1.0 + step * 0.002)  # 0.5 long, + 0.1 stroke widths a step
        assert rule.observe(step, grown, WIDTH, 1.0) is None
    assert rule.last_movement < 1.0 and rule.last_growth > 0.02
    assert rule.observe(200, grown, WIDTH, 1.0) is None  # one still step: the window still holds the growth
    still = SettleRule(SettleSettings(window=20, min_steps=0, loss_drop=1.0))
    assert any(still.observe(step, line, WIDTH, 1.0) is not None for step in range(50))


def test_settings_are_checked():
    bad = SettleSettings(window=0, movement=-1.0, quantile=1.5, loss_drop=-0.1, min_steps=-1)
    problems = bad.problems()
    for flag in (
        "--settle.window",
        "--settle.movement",
        "--settle.quantile",
        "--settle.loss-drop",
        "--settle.min-steps",
    ):
        assert any(flag in p for p in problems), (flag, problems)
    assert SettleSettings().problems() == []


def settling_args(scene, clip_config, output_dir, steps=50):
    """A run whose rule fires as soon as it can: two windows of 2 steps' losses and min-steps 5, so at step 4."""
    args = train_args(scene, clip_config, output_dir, steps=steps)
    for flag, value in (("--settle.window", 2), ("--settle.min-steps", 5), ("--settle.movement", 1e9),
                        ("--settle.loss-drop", 1e9), ("--pipeline.model.timelapse-every", 2)):  # fmt: skip
        args = with_option(args, flag, value)
    return args


def test_a_settled_run_ends_early_saved_as_any_other_end(tiny_scene, tiny_clip_config, tmp_path, capsys):
    train_in_process(settling_args(tiny_scene, tiny_clip_config, tmp_path))
    output = console_text(capsys.readouterr().out)
    run = run_dir(tmp_path)
    assert "settled at step 4:" in output and "--settle.enabled False" in output
    assert checkpoint_steps(run / "nerfstudio_models") == [4]  # the last step done, under its own number
    assert settled_step(run) == 4 and "stroke widths" in json.loads((run / RECORD_NAME).read_text())["reason"]
    frames = sorted(p.name for p in (run / "timelapse").glob("step_*.png"))
    assert frames[-1] == "step_000000004.png" and (run / "timelapse.gif").is_file()
    # clipsketch-batch counts it as done, not as stopped (a batch would resume a stopped run).
    assert run_state(run, target_steps=50, evaluate=False) == "finished"
    (run / RECORD_NAME).unlink()
    assert run_state(run, target_steps=50, evaluate=False) == "stopped"


def test_settling_can_be_turned_off(tiny_scene, tiny_clip_config, tmp_path, capsys):
    args = with_option(settling_args(tiny_scene, tiny_clip_config, tmp_path, steps=8), "--settle.enabled", "False")
    train_in_process(args)
    assert "settled" not in console_text(capsys.readouterr().out)
    assert checkpoint_steps(run_dir(tmp_path) / "nerfstudio_models") == [7]
    assert settled_step(run_dir(tmp_path)) is None


def test_bad_settle_settings_are_one_message(tiny_scene, tiny_clip_config, tmp_path):
    from nerfstudio_clipsketch.trainer import ClipSketchTrainerConfig

    config = ClipSketchTrainerConfig()
    config.settle.window = 0
    with pytest.raises(ClipSketchConfigError, match="--settle.window must be at least 1"):
        config.check()
