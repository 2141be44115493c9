"""A batch's runs as Ray Tune trials: a grid over the runs left, each a :class:`SketchTrial` with its CPUs and GPUs.

Tune's experiment lives in ``<batch>/.tune/sweep-<hash>``, named after the whole batch (its runs, their flags, the
options that change what a run does), so running the same batch again restores it with ``Tuner.restore``: finished
trials stay finished, interrupted ones resume, failed ones are tried again. A grown or changed batch starts a new
experiment over the runs left. Either way a trial resumes its run from the run's own checkpoint (:mod:`.runs`): Tune
decides which trials run, the run folders from where.

A trial whose stage fails ends alone with its message (``FailureConfig(max_failures=0)``: a retry would only fail
again). ``--keep-best K`` with ``--seeds N``: :class:`SeedScheduler`, ASHA among each setting's seeds. Ctrl-C: Tune
saves the experiment and stops every trial (its child gets SIGTERM and saves a checkpoint); a second Ctrl-C stops at
once. Each run's child gets ``OMP_NUM_THREADS`` = its CPUs, so runs that share a machine do not oversubscribe it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from nerfstudio.utils.rich_utils import CONSOLE
from ray import tune
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler
from rich.markup import escape
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nerfstudio_clipsketch.batch.results import LOSS_TAG, run_row
from nerfstudio_clipsketch.batch.runs import (
    RunJob,
    RunPlan,
    identity,
    mark_pruned,
    prepare,
    pruned_at,
    read_record,
    stages,
)
from nerfstudio_clipsketch.batch.trial import RunProcess

EXPERIMENTS = ".tune"
POLL_S = 1.0
EVENTS_GUIDANCE = {"scalars": 0, "images": 1, "tensors": 1, "histograms": 1, "audio": 1, "compressedHistograms": 1}


def run_key(plan: RunPlan) -> str:
    return f"{plan.spec.capture.name}/{plan.spec.name}"


class SketchTrial(tune.Trainable):
    """One run; ``config["run"]`` is its :func:`run_key`. Reports ``{"step", "loss"}`` each time ``ns-train`` logs a
    loss (the mean of the last ``window`` logged values, read from its tensorboard events), then its table row.

    At a seed rung (``rungs``, the steps where :class:`SeedScheduler` may stop it) the loss reported is the first one
    logged there or after, and ``ns-train`` is paused until the scheduler's answer: a pruned seed stops at its rung,
    however far the trainer got between two polls of its events."""

    def setup(self, config: Dict[str, Any], jobs: Dict[str, RunJob], plans: Dict[str, RunPlan], window: int, rungs):
        self.plan, self.window, self.logged = plans[config["run"]], window, -1
        self.rungs = sorted(rungs.get(config["run"], ()))  # those not yet reached
        self.process = RunProcess(jobs[config["run"]])
        self.events = EventAccumulator(str(self.plan.run_dir), size_guidance=EVENTS_GUIDANCE)

    def step(self) -> Dict[str, Any]:
        self.process.resume()  # the scheduler let it go on from its rung
        while True:
            kind = self.process.poll()  # raises RunFailed: the trial errors, with the stage's message
            if kind == "finished":
                row = run_row(self.plan, self.window)
                return {**row, "step": row["steps"], "done": True}
            result = self._new_result() if kind in ("train", "resume") else None
            if result is not None:
                return result
            time.sleep(POLL_S)

    def _new_result(self) -> Optional[Dict[str, Any]]:
        """The latest logged loss, or the one logged at a rung passed since the last report (the trainer paused)."""
        self.events.Reload()
        if LOSS_TAG not in self.events.Tags().get("scalars", []):
            return None
        values = self.events.Scalars(LOSS_TAG)
        new = [i for i, v in enumerate(values) if v.step > self.logged]
        if not new:
            return None
        at_rung = [i for i in new if self.rungs and values[i].step + 1 >= self.rungs[0]]  # logged at or after it
        i = at_rung[0] if at_rung else new[-1]
        if at_rung:
            self.process.pause()
            self.rungs = [rung for rung in self.rungs if rung > values[i].step + 1]
        self.logged = values[i].step
        return {"step": self.logged + 1, "loss": float(np.mean([v.value for v in values[: i + 1][-self.window :]]))}

    def cleanup(self) -> None:
        self.process.stop()


class SeedScheduler(FIFOScheduler):
    """ASHA among the seeds of each (capture, setting), never across settings or captures: a seed that reaches a rung
    (``prune_after`` of its steps, then ``seeds / keep_best`` times that) stops there unless its loss is among the best
    ``keep_best / seeds`` of its setting's seeds recorded at that rung. Its run gets ``pruned.json``."""

    def __init__(self, plans: Dict[str, RunPlan], keep_best: int, seeds: int, prune_after: float):
        super().__init__()
        self.plans, self.factor, self.prune_after = plans, seeds / keep_best, prune_after
        self.groups: Dict[Tuple[str, str], AsyncHyperBandScheduler] = {}

    def _grace(self, target_steps: int) -> int:
        return min(max(1, round(self.prune_after * target_steps)), target_steps)

    def rungs(self, plan: RunPlan) -> List[int]:
        """The steps where a seed of ``plan``'s setting may be stopped (before its last step)."""
        grace, steps = self._grace(plan.spec.target_steps), []
        while math.ceil(grace * self.factor ** len(steps) - 1e-9) < plan.spec.target_steps:  # ASHA's milestones
            steps.append(math.ceil(grace * self.factor ** len(steps) - 1e-9))
        return steps

    def _asha(self, trial) -> AsyncHyperBandScheduler:
        spec = self.plans[trial.config["run"]].spec
        key = (spec.capture.name, spec.setting.label)
        if key not in self.groups:
            self.groups[key] = AsyncHyperBandScheduler(
                "step", "loss", "min", max_t=spec.target_steps, grace_period=self._grace(spec.target_steps),
                reduction_factor=self.factor,
            )  # fmt: skip
        return self.groups[key]

    def on_trial_add(self, controller, trial) -> None:
        self._asha(trial).on_trial_add(controller, trial)

    def on_trial_result(self, controller, trial, result: Dict) -> str:
        plan = self.plans[trial.config["run"]]
        if result.get("done") or "loss" not in result or result["step"] >= plan.spec.target_steps:
            return self.CONTINUE  # its end, or its last steps: it is evaluated, not pruned
        decision = self._asha(trial).on_trial_result(controller, trial, result)
        if decision == self.STOP:
            mark_pruned(plan.run_dir, result["step"], result["loss"])
        return decision

    def on_trial_complete(self, controller, trial, result: Dict) -> None:
        self._asha(trial).on_trial_complete(controller, trial, result)

    def on_trial_remove(self, controller, trial) -> None:
        self._asha(trial).on_trial_remove(controller, trial)


class Announce(tune.Callback):
    """One line per run as it ends: its status, its time or error, and how many of the runs have ended."""

    def __init__(self, plans: Dict[str, RunPlan], total: int):
        self.plans, self.total, self.ended = plans, total, 0

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._say(trial)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._say(trial)

    def _say(self, trial) -> None:
        plan, self.ended = self.plans[trial.config["run"]], self.ended + 1
        record, pruned = read_record(plan.run_dir), pruned_at(plan.run_dir)
        status = "pruned" if pruned else record.get("status", "failed")
        seconds = sum(a.get("wall_time_s", 0.0) for a in record.get("attempts", []))
        detail = f" in {seconds:.0f} s"
        if pruned:
            detail = f" at step {pruned['step']} (loss {pruned['loss']:.4g}, behind the other seeds)"
        elif status == "failed":
            detail = f": {record.get('error')}"
        colour = {"finished": "green", "failed": "red"}.get(status, "yellow")
        CONSOLE.print(
            f"[{colour}]{status}[/{colour}] {escape(plan.spec.capture.name)} {escape(plan.spec.name)}{escape(detail)}"
            f"  [dim]({self.ended}/{self.total} ended)",
            highlight=False,
        )


def experiment_name(plans: Sequence[RunPlan], options) -> str:
    """``sweep-<hash>`` of everything that makes the batch this batch."""
    about = [(run_key(p), identity(p.spec), p.spec.target_steps) for p in plans]
    about += [options.evaluate, options.keep_best, options.prune_after, options.loss_window]
    return "sweep-" + hashlib.sha1(json.dumps(about, default=str).encode()).hexdigest()[:10]


def trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def run_trials(plans: List[RunPlan], todo: List[RunPlan], batch_dir: Path, options, resources: Tuple[float, float]):
    """Run ``todo`` (of the batch's ``plans``) on Ray Tune, Ray already started; returns whether the user stopped it."""
    cpus, gpus = resources
    env = {"OMP_NUM_THREADS": str(max(1, int(cpus))), "PYTHONUNBUFFERED": "1"}
    for plan in todo:
        prepare(plan)
    jobs = {
        run_key(p): RunJob(
            p.spec.name,
            p.run_dir,
            stages(p, batch_dir, options.evaluate, gpus == 0),
            Path.cwd(),
            env,
            options.stop_timeout,
        )  # fmt: skip
        for p in plans
    }
    by_key = {run_key(p): p for p in plans}
    wanted = {"cpu": cpus, "gpu": gpus}
    if options.ray.memory_per_run is not None:
        wanted["memory"] = int(options.ray.memory_per_run * (1 << 30))
    scheduler = FIFOScheduler()
    if options.keep_best is not None:
        seeds = max(p.spec.seed for p in plans) + 1
        scheduler = SeedScheduler(by_key, options.keep_best, seeds, options.prune_after)
    rungs = {key: scheduler.rungs(plan) for key, plan in by_key.items()} if options.keep_best is not None else {}
    trainable = tune.with_resources(
        tune.with_parameters(SketchTrial, jobs=jobs, plans=by_key, window=options.loss_window, rungs=rungs), wanted
    )
    name, storage = experiment_name(plans, options), batch_dir / EXPERIMENTS
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)  # a run's failure is our one line, not Tune's traceback
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # and no tables of trials: a line per run as it ends
    if tune.Tuner.can_restore(str(storage / name)):
        CONSOLE.print(f"Ray Tune: restoring {name} ({len(todo)} runs left)", highlight=False)
        tuner = tune.Tuner.restore(str(storage / name), trainable, resume_unfinished=True, resume_errored=True)
    else:
        CONSOLE.print(f"Ray Tune: {len(todo)} runs with {cpus:g} CPUs and {gpus:g} GPUs each", highlight=False)
        tuner = tune.Tuner(
            trainable,
            param_space={"run": tune.grid_search([run_key(p) for p in todo])},
            tune_config=tune.TuneConfig(scheduler=scheduler, trial_dirname_creator=trial_dirname),
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(storage),
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=0),
                checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=0, checkpoint_at_end=False),
                callbacks=[Announce(by_key, len(todo))],
            ),
        )
    try:
        tuner.fit()
    except (KeyboardInterrupt, SystemExit):  # a second Ctrl-C; SIGTERM arrives as SystemExit (Ray's handler)
        return True
    return False
