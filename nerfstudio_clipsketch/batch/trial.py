"""The body of a run's Ray Tune trial (:mod:`.tuning`): its stages (``ns-train``, ``clipsketch-eval``) as child
processes, one at a time.

A stage is a child process, not code in the trial's actor: an actor's ``sys.argv`` is Ray's, nerfstudio keeps run
state in module globals, and Ray installs its own signal handlers. Its output goes to the run's log, its exit status
and wall time to the run's record.

Stopping (Tune stops a trial that the scheduler prunes, or every trial when the batch is stopped): the child gets
SIGTERM and ``stop_timeout`` seconds to save a checkpoint. Children start with no signal blocked (Ray's workers block
SIGINT) and get SIGTERM when their worker dies (``PR_SET_PDEATHSIG``), so none outlives its batch.
"""

from __future__ import annotations

import ctypes
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from datetime import datetime, timezone
from typing import List, Optional

from nerfstudio_clipsketch.batch.runs import RunJob, Stage, is_pruned, read_record, write_record

MAX_MESSAGE_LINES = 6
PR_SET_PDEATHSIG = 1
_EXCEPTION_LINE = re.compile(r"[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)(: .*)?")


class RunFailed(RuntimeError):
    """A stage of the run failed; the message is what it printed (see :func:`error_message`)."""


class RunProcess:
    """The stages left of one run, one child process at a time, and the run's record kept up to date."""

    def __init__(self, job: RunJob):
        self.job, self.left = job, list(job.stages)
        self.stage: Optional[Stage] = None
        self.child: Optional[subprocess.Popen] = None
        self.paused = False
        self.record = {**read_record(job.run_dir), "status": "running", "error": None, "host": socket.gethostname()}
        self.record.setdefault("attempts", [])
        write_record(job.run_dir, self.record)

    def poll(self) -> str:
        """Start the next stage when one ended; returns the running stage's kind, or ``finished``.

        Raises:
            RunFailed: a stage exited with an error (the run is recorded as failed, and no later stage runs).
        """
        while True:
            if self.child is None:
                if not self.left:
                    self._end("finished")
                    return "finished"
                self._start(self.left.pop(0))
            code = self.child.poll()
            if code is None:
                return self.stage.kind
            self._ended(code, interrupted=False)
            if code != 0:
                message = f"{self.stage.kind}: {error_message(_tail(self.stage.log, self.offset), code)}"
                self._end("failed", message)
                raise RunFailed(message)

    def pause(self) -> None:
        """SIGSTOP to the running child (a seed at its rung, until the scheduler's answer)."""
        if self.child is not None and self.child.poll() is None and not self.paused:
            self.child.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            if self.child is not None and self.child.poll() is None:
                self.child.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """SIGTERM to the running child, ``stop_timeout`` s to exit (a trainer saves its checkpoint), then SIGKILL."""
        if self.child is not None:
            if self.child.poll() is None:
                self.child.send_signal(signal.SIGTERM)
                self.resume()  # a paused child handles its SIGTERM once continued
                try:
                    self.child.wait(timeout=self.job.stop_timeout)
                except subprocess.TimeoutExpired:
                    self.child.kill()
            self._ended(self.child.wait(), interrupted=True)
        if self.record["status"] == "running":
            self._end("pruned" if is_pruned(self.job.run_dir) else "stopped")

    def _start(self, stage: Stage) -> None:
        stage.log.parent.mkdir(parents=True, exist_ok=True)
        with open(stage.log, "ab") as log:
            log.write(f"\n=== {datetime.now().isoformat(timespec='seconds')} {stage.kind}: ".encode())
            log.write(f"{shlex.join(stage.command)}\n".encode())
            log.flush()
            self.offset, self.started = log.tell(), time.monotonic()
            self.child = subprocess.Popen(
                stage.command,
                cwd=self.job.cwd,
                env={**os.environ, **self.job.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_child_signals if os.name == "posix" else None,
            )
        self.stage = stage
        self.record.update(pid=self.child.pid, started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        write_record(self.job.run_dir, self.record)

    def _ended(self, returncode: int, interrupted: bool) -> None:
        attempt = {"stage": self.stage.kind, "from_step": self.stage.from_step, "started_at": self.record["started_at"]}
        attempt.update(wall_time_s=round(time.monotonic() - self.started, 3), returncode=returncode)
        self.record["attempts"].append({**attempt, "interrupted": interrupted})
        self.child = None
        write_record(self.job.run_dir, self.record)

    def _end(self, status: str, error: Optional[str] = None) -> None:
        self.record.update(status=status, error=error, pid=None)
        write_record(self.job.run_dir, self.record)


def _child_signals() -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux
        pass


def _tail(path, offset: int, limit: int = 1 << 16) -> str:
    with open(path, "rb") as f:
        f.seek(max(offset, os.path.getsize(path) - limit))
        return f.read().decode("utf-8", errors="replace")


def error_message(output: str, returncode: Optional[int] = None) -> str:
    """What a failed ``ns-train`` or ``clipsketch-*`` says went wrong, as one line.

    In order: clipsketch's own one-line errors (``clipsketch: ...`` from the trainer, ``Error: ...`` from the
    scripts, wrapped over several lines by the console), tyro's boxed command-line errors, a traceback's last line;
    else the output's last line, or the exit status.
    """
    lines = [line.rstrip() for line in output.splitlines()]
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith(("clipsketch: ", "Error: ")):
            return " ".join(_paragraph(lines[i:])).strip()
    box = _last_box(lines)
    if box:
        return box
    exceptions = [line for line in lines if _EXCEPTION_LINE.fullmatch(line)]
    if exceptions:
        return exceptions[-1]
    last = [line.strip() for line in lines if line.strip()]
    if last:
        return last[-1]
    return f"exit status {returncode}" if returncode is not None else "no output"


def _paragraph(lines: List[str]) -> List[str]:
    out = []
    for line in lines[:MAX_MESSAGE_LINES]:
        if not line.strip() or (out and line.startswith(("[", "Printing profiling"))):
            break
        out.append(line.strip())
    return out


def _last_box(lines: List[str]) -> str:
    """The title and first section of the last rich box (how tyro reports command-line errors)."""
    tops = [i for i, line in enumerate(lines) if line.startswith("╭")]
    if not tops:
        return ""
    title, body = lines[tops[-1]].strip("╭╮─ "), []
    for line in lines[tops[-1] + 1 :]:
        if line.startswith("╰"):
            break
        text = line.strip("│ ")
        if set(text) <= set("─ "):
            if body:
                break
            continue
        body.append(text)
    text = " ".join(body[:MAX_MESSAGE_LINES])
    return text if text.startswith(title) else ": ".join(part for part in (title, text) if part)


def settle(folders, timeout: float) -> bool:
    """After the batch's trials ended: wait up to ``timeout`` s for children that a killed worker left saving their
    checkpoint, and record runs left running as stopped. Returns whether any run was stopped."""
    deadline, stopped = time.monotonic() + timeout, False
    for folder in folders:
        record = read_record(folder)
        if record.get("status") in ("queued", "running"):
            if record.get("pid") and record.get("host") == socket.gethostname():
                _continue(record["pid"])  # paused at a rung when its worker died: let it handle its SIGTERM
                while _alive(record["pid"]) and time.monotonic() < deadline:
                    time.sleep(0.2)
            record.update(status="pruned" if is_pruned(folder) else "stopped", pid=None)
            write_record(folder, record)
        stopped |= record.get("status") == "stopped"
    return stopped


def _continue(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except (ProcessLookupError, PermissionError):
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
