"""``clipsketch-batch --keep-best``: the scheduler that stops poor seeds early compares a seed only with the seeds of
its own setting, marks the runs it stops, and never stops a run in its last steps; and Tune's experiment is named after
the batch. Ray Tune is imported, but no Ray instance is started."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import pytest

from nerfstudio_clipsketch.batch.grid import BatchGrid, parse_sweep
from nerfstudio_clipsketch.batch.runs import is_pruned, plan_runs

if importlib.util.find_spec("ray") is None or importlib.util.find_spec("pandas") is None:
    pytest.skip(
        "clipsketch-batch runs on Ray Tune, which cannot be installed on this platform", allow_module_level=True
    )

from nerfstudio_clipsketch.batch.tuning import SeedScheduler, experiment_name, run_key  # noqa: E402

STEPS = 100


def batch(tmp_path, sweep="pipeline.model.num-curves=8,16", seeds=4):
    grid = BatchGrid(["builtin"], parse_sweep([sweep]), {"max-num-iterations": (str(STEPS),)}, seeds=seeds)
    return plan_runs(tmp_path, grid.runs(), evaluate=True)


def test_seeds_compete_only_within_their_setting_and_the_stopped_ones_are_marked(tmp_path):
    plans = batch(tmp_path)
    by_key = {run_key(p): p for p in plans}
    scheduler = SeedScheduler(by_key, keep_best=1, seeds=4, prune_after=0.25)
    trials = {key: SimpleNamespace(trial_id=f"t{i}", config={"run": key}) for i, key in enumerate(by_key)}
    for trial in trials.values():
        scheduler.on_trial_add(None, trial)
    for plan in plans:
        plan.run_dir.mkdir(parents=True)

    def report(setting: str, seed: int, step: int, loss: float, **extra) -> str:
        return scheduler.on_trial_result(
            None, trials[f"builtin/num-curves={setting},seed={seed}"], dict(step=step, loss=loss, **extra)
        )

    # Before the first rung (25 steps) nothing stops; at it, the first seed of each setting goes on.
    assert report("8", 0, 10, 9.0) == report("8", 0, 25, 1.0) == "CONTINUE"
    assert report("16", 0, 25, 5.0) == "CONTINUE"  # worse than setting 8's seed 0, but not its competitor
    assert report("8", 1, 25, 2.0) == "STOP"  # behind seed 0 of its own setting
    assert report("16", 1, 25, 4.0) == "CONTINUE"  # ahead of seed 0 of its own setting
    assert report("8", 2, 25, 0.5) == "CONTINUE"
    stopped = {p.spec.name for p in plans if is_pruned(p.run_dir)}
    assert stopped == {"num-curves=8,seed=1"}
    # A seed's last steps and its final row are never judged: it trained to the end, and is evaluated.
    assert report("8", 3, STEPS, 9.0) == "CONTINUE" and report("8", 3, STEPS, 9.0, done=True) == "CONTINUE"
    assert {p.spec.name for p in plans if is_pruned(p.run_dir)} == stopped


def test_the_experiment_is_named_after_the_whole_batch(tmp_path):
    options = SimpleNamespace(evaluate=True, keep_best=1, prune_after=0.25, loss_window=10)
    name = experiment_name(batch(tmp_path), options)
    assert name.startswith("sweep-") and name == experiment_name(batch(tmp_path), options)
    assert name != experiment_name(batch(tmp_path, sweep="pipeline.model.num-curves=8,16,32"), options)
    assert name != experiment_name(batch(tmp_path, seeds=3), options)
    assert name != experiment_name(batch(tmp_path), SimpleNamespace(**{**vars(options), "keep_best": 2}))


@pytest.mark.parametrize("keep_best, seeds, prune_after", [(1, 4, 0.25), (1, 2, 0.1), (2, 3, 0.2)])
def test_the_trainer_pauses_at_the_steps_where_asha_decides(tmp_path, keep_best, seeds, prune_after):
    """The rungs a trial pauses at are ASHA's own milestones below the last step: a seed that falls behind just before
    a rung is stopped at that rung's step, not before nor after."""
    plans = batch(tmp_path, seeds=seeds)
    for plan in plans:
        plan.run_dir.mkdir(parents=True)
    by_key = {run_key(p): p for p in plans}
    rungs = SeedScheduler(by_key, keep_best, seeds, prune_after).rungs(plans[0])
    assert rungs and rungs == sorted(set(rungs)) and rungs[-1] < STEPS
    for rung in rungs:
        scheduler = SeedScheduler(by_key, keep_best, seeds, prune_after)
        leader, chaser = (SimpleNamespace(trial_id=f"t{i}", config={"run": run_key(plans[i])}) for i in range(2))
        scheduler.on_trial_add(None, leader), scheduler.on_trial_add(None, chaser)
        for step in range(1, STEPS):
            assert scheduler.on_trial_result(None, leader, dict(step=step, loss=1.0)) == "CONTINUE"
        ahead = [scheduler.on_trial_result(None, chaser, dict(step=step, loss=0.5)) for step in range(1, rung - 1)]
        assert set(ahead) == {"CONTINUE"}
        behind = [scheduler.on_trial_result(None, chaser, dict(step=step, loss=2.0)) for step in range(rung - 1, STEPS)]
        assert behind.index("STOP") == 1, (rung, behind[:4])
