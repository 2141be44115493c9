"""clipsketch's trainer: nerfstudio's, narrowly extended so that a run loses nothing and says what is wrong.

- Settings are checked when the trainer is built, before the data and CLIP are loaded; bad settings and data end in
  one red line naming the value and what is allowed, and exit status 2 (no traceback).
- ``--load-dir`` may name a run's folder or its ``nerfstudio_models/`` (:mod:`nerfstudio_clipsketch.checkpoints`).
- Ctrl-C (SIGINT) or SIGTERM lets the current step finish, then saves its checkpoint and the time-lapse so far, says
  how to resume and exits with status 128 + the signal's number (130, 143). A second one stops at once. Once training
  has ended and its checkpoint is saved, Ctrl-C quits with status 0 (nerfstudio's viewer waits for it).
- After a resume, nerfstudio runs ``--max-num-iterations`` more steps; the progress table counts toward that total.
- Training ends before ``--max-num-iterations`` once the sketch has settled (:mod:`nerfstudio_clipsketch.settling`,
  ``--settle.*``), saved as any other end: checkpoint, time-lapse, exports, "settled at step N" in the log.
"""

from __future__ import annotations

import math
import os
import pickle
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, Literal, Optional, Type

import torch
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils import writer
from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape

from nerfstudio_clipsketch.checkpoints import CheckpointError, find_checkpoint
from nerfstudio_clipsketch.clip_guidance import ClipGuidanceError
from nerfstudio_clipsketch.dataparsers import ClipSketchDataError
from nerfstudio_clipsketch.model_config import ClipSketchConfigError
from nerfstudio_clipsketch.settling import RECORD_NAME, SettleRule, SettleSettings, write_record

USER_ERRORS = (ClipSketchDataError, ClipGuidanceError, ClipSketchConfigError, CheckpointError)
"""Bad data or settings: reported as one message, not a traceback."""
USER_ERROR_EXIT_CODE = 2
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Turn a :data:`USER_ERRORS` exception into one red message and exit status 2."""
    try:
        yield
    except USER_ERRORS as error:
        CONSOLE.print(f"[bold red]clipsketch:[/bold red] {escape(str(error))}", highlight=False)
        sys.exit(USER_ERROR_EXIT_CODE)


def _block_stop_signals() -> Callable[[], None]:
    """Hold SIGINT/SIGTERM back (delivered when the returned function restores the mask); a no-op without
    ``pthread_sigmask`` (Windows)."""
    if not hasattr(signal, "pthread_sigmask"):
        return lambda: None
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    return lambda: signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class ClipSketchTrainer(Trainer):
    """nerfstudio's trainer; bad data or settings stop the run with one message, and a stop signal keeps its work."""

    config: "ClipSketchTrainerConfig"

    def __init__(self, config: TrainerConfig, local_rank: int = 0, world_size: int = 1) -> None:
        self._stop_requested = False
        self._stop_signal: Optional[int] = None
        self._last_done: Optional[int] = None
        self._final_saved = False
        self._last_loss = float("nan")
        self._settled: Optional[str] = None
        settings = getattr(config, "settle", None) or SettleSettings()  # config.yml files from before it lack it
        self._settle_rule = SettleRule(settings) if settings.enabled else None
        super().__init__(config, local_rank, world_size)

    # nerfstudio resets ``stop_training`` when train() starts; a received signal must survive that.
    @property
    def stop_training(self) -> bool:
        """nerfstudio's stop flag (the viewer sets it), or a stop signal received."""
        return self._stop_requested or self._stop_signal is not None

    @stop_training.setter
    def stop_training(self, value: bool) -> None:
        self._stop_requested = bool(value)

    def setup(self, test_mode: Literal["test", "val", "inference"] = "val") -> None:
        with exit_on_user_error():
            try:
                super().setup(test_mode)
            except KeyboardInterrupt:
                CONSOLE.print(
                    "[bold yellow]clipsketch: interrupted while setting up, before the first step: nothing to save."
                )
                sys.exit(128 + signal.SIGINT)
        # nerfstudio's table divides the absolute step by --max-num-iterations, which a resume counts from its step.
        writer.GLOBAL_BUFFER["max_iter"] = self._start_step + self.config.max_num_iterations
        (self.base_dir / RECORD_NAME).unlink(missing_ok=True)  # a resumed run is not settled until it settles again
        self.callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], self._step_done))

    def _step_done(self, step: int) -> None:
        """The last callback of each step: ``step`` is complete and may be saved under its number; the settle rule
        sees it."""
        self._last_done = step
        if self._settle_rule is None or self._settled is not None:
            return
        model = self.pipeline.model
        width = float(model.style.width_px * model.style.world_per_px)
        reason = self._settle_rule.observe(step, model.world_control_points(), width, self._last_loss)
        rule = self._settle_rule
        if rule.last_movement is not None and rule.last_loss_drop is not None and rule.last_growth is not None:
            measures = {"movement": rule.last_movement, "growth": rule.last_growth, "loss_drop": rule.last_loss_drop}
            writer.put_dict("Settle", measures, step)
        if reason is not None:
            self._settled = f"settled at step {step}: {reason}"
            self.stop_training = True

    def train_iteration(self, step: int):
        loss, loss_dict, metrics_dict = super().train_iteration(step)
        self._last_loss = float(loss.detach())
        return loss, loss_dict, metrics_dict

    def _load_checkpoint(self) -> None:
        try:
            super()._load_checkpoint()
        except (RuntimeError, pickle.UnpicklingError, EOFError, KeyError) as e:
            path = self.config.load_checkpoint
            if self.config.load_dir is not None:
                path = self.config.load_dir / f"step-{self.config.load_step:09d}.ckpt"
            # torch's unpickling message advises loading with weights_only=False, which is not the fix here.
            text = "" if isinstance(e, pickle.UnpicklingError) else str(e).strip()
            reason = text.splitlines()[0] if text else type(e).__name__
            raise CheckpointError(
                f"Checkpoint {str(path)!r} cannot be loaded into this run ({reason[:200]}): the file is damaged, or "
                "was written by a run with other settings (e.g. --pipeline.model.num-curves or curve-degree)."
            ) from e

    # ------------------------------------------------------------------------------------------------------------------
    # Stopping on SIGINT / SIGTERM

    def train(self) -> None:
        restore = self._catch_stop_signals()
        try:
            super().train()
        finally:
            restore()
        if self._stop_signal is not None:
            sys.exit(128 + self._stop_signal)

    def _catch_stop_signals(self) -> Callable[[], None]:
        """Route SIGINT and SIGTERM to :meth:`_on_stop_signal` (only the main thread can; an ignored signal stays
        ignored); returns what puts the previous handlers back."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous: Dict[int, object] = {}
        for signum in STOP_SIGNALS:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                previous[signum] = signal.signal(signum, self._on_stop_signal)

        def restore() -> None:
            for signum, handler in previous.items():
                signal.signal(signum, signal.SIG_DFL if handler is None else handler)  # type: ignore[arg-type]

        return restore

    def _on_stop_signal(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self._final_saved and self._stop_signal is None:
            raise SystemExit(0)  # training ended and was saved: nerfstudio's viewer waits for a Ctrl-C to quit
        if self._stop_signal is not None:
            self._say(f"clipsketch: second {name}: stopping now; the last checkpoint saved is kept.\n")
            raise SystemExit(128 + signum)
        self._stop_signal = signum
        self._say(
            f"clipsketch: {name}: finishing step {self.step}, then saving its checkpoint and the time-lapse "
            f"({name} again to stop at once).\n"
        )

    @staticmethod
    def _say(message: str) -> None:
        # Straight to the file descriptor: a handler that went through Python's buffered stdout could interrupt a
        # write in progress on it (a reentrant call, which raises).
        try:
            os.write(2, message.encode())
        except OSError:
            pass

    def _after_train(self) -> None:
        if self._stop_signal is None and self._settled is not None and self._last_done is not None:
            # nerfstudio's loop left ``step`` at the next step's number: save the last complete one.
            self.step = self._last_done
            CONSOLE.print(
                f"[bold green]clipsketch: {escape(self._settled)}[/bold green] (--settle.enabled False "
                "trains every step)",
                highlight=False,
            )
            write_record(self.base_dir, self.step, self._settled)
        if self._stop_signal is None:
            super()._after_train()
            return
        # Stopped by a signal: save the last complete step (nerfstudio would save the next one under its number),
        # finish the time-lapse, and skip the viewer's wait for Ctrl-C.
        self.training_state = "completed"
        name = signal.Signals(self._stop_signal).name
        if self._last_done is None:
            CONSOLE.print(f"[bold yellow]clipsketch: stopped by {name} before the first step finished: nothing saved.")
            return
        self.step = self._last_done
        self.save_checkpoint(self.step)
        writer.write_out_storage()
        for callback in self.callbacks:
            callback.run_callback_at_location(step=self.step, location=TrainingCallbackLocation.AFTER_TRAIN)
        checkpoint = self.checkpoint_dir / f"step-{self.step:09d}.ckpt"
        CONSOLE.print(
            f"[bold yellow]clipsketch: stopped by {name} after step {self.step}.[/bold yellow] Checkpoint: "
            f"{escape(str(checkpoint))}\nTo resume, run the same ns-train command with --load-dir "
            f"{escape(str(self.base_dir))} (add --timestamp {escape(str(self.config.timestamp))} to keep writing to "
            "this folder).",
            highlight=False,
        )

    def save_checkpoint(self, step: int) -> None:
        # A second Ctrl-C during the write would leave a truncated file: it waits until the file is complete.
        restore = _block_stop_signals()
        try:
            super().save_checkpoint(step)
            self._final_saved = self.training_state == "completed"
        finally:
            restore()


def _check_optimizers(optimizers: Dict[str, Dict]) -> None:
    """Learning-rate settings torch or nerfstudio's schedule would only refuse (or turn into NaN) at set-up."""
    for group, settings in optimizers.items():
        flag = f"--optimizers.{group.replace('_', '-')}"
        optimizer, scheduler = settings.get("optimizer"), settings.get("scheduler")
        lr = getattr(optimizer, "lr", None)
        if lr is not None and not (math.isfinite(lr) and lr > 0):
            raise ClipSketchConfigError(f"{flag}.optimizer.lr must be a positive number, got {lr}")
        eps = getattr(optimizer, "eps", 0.0)
        if not eps >= 0:
            raise ClipSketchConfigError(f"{flag}.optimizer.eps must be 0 or more, got {eps}")
        if isinstance(scheduler, ExponentialDecaySchedulerConfig):
            if scheduler.lr_final is not None and not (math.isfinite(scheduler.lr_final) and scheduler.lr_final > 0):
                raise ClipSketchConfigError(
                    f"{flag}.scheduler.lr-final must be a positive number (or None: no decay), got {scheduler.lr_final}"
                )
            if scheduler.max_steps <= scheduler.warmup_steps:
                raise ClipSketchConfigError(
                    f"{flag}.scheduler.max-steps must be more than its warmup-steps ({scheduler.warmup_steps}), got "
                    f"{scheduler.max_steps}"
                )


@dataclass
class ClipSketchTrainerConfig(TrainerConfig):
    """nerfstudio's trainer, with its settings checked first, falling back to the CPU when CUDA was asked for but
    there is none."""

    _target: Type = field(default_factory=lambda: ClipSketchTrainer)
    settle: SettleSettings = field(default_factory=SettleSettings)
    """Stop before --max-num-iterations once the sketch has settled: its curves barely move and its loss no longer
    falls (nerfstudio_clipsketch/settling.py)."""

    def set_experiment_name(self) -> None:
        datamanager = self.pipeline.datamanager
        no_data = datamanager.data is None and getattr(datamanager.dataparser, "data", 1) is None
        if self.experiment_name is None and no_data:
            self.experiment_name = "builtin"  # the built-in scene: no --data given
        super().set_experiment_name()

    def check(self) -> None:
        """Refuse settings no run can use, naming the flag and what is allowed (nothing is loaded yet)."""
        if self.max_num_iterations < 1:
            raise ClipSketchConfigError(
                f"--max-num-iterations must be at least 1 (steps to train; after --load-dir, steps beyond the loaded "
                f"one), got {self.max_num_iterations}"
            )
        if self.steps_per_save < 0:
            raise ClipSketchConfigError(
                f"--steps-per-save must be 0 (only at the end) or more, got {self.steps_per_save}"
            )
        problems = self.settle.problems()
        if problems:
            raise ClipSketchConfigError("; ".join(problems))
        self.pipeline.model.check()
        self.pipeline.datamanager.check()
        _check_optimizers(self.optimizers)

    def setup(self, **kwargs):
        with exit_on_user_error():
            self.check()
            if self.load_dir is not None:
                self.load_dir, self.load_step = find_checkpoint(self.load_dir, self.load_step)
            elif self.load_checkpoint is not None and not self.load_checkpoint.is_file():
                raise CheckpointError(f"--load-checkpoint {str(self.load_checkpoint)!r} is not a file.")
        if self.machine.device_type == "cuda" and not torch.cuda.is_available():
            CONSOLE.log("[yellow]No CUDA device found: clipsketch trains on the CPU (pure-PyTorch renderer).")
            self.machine.device_type = "cpu"
        return super().setup(**kwargs)
