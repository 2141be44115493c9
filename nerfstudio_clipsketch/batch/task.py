"""The body of a run's Ray task: the run's stages (``ns-train``, ``clipsketch-eval``) as child processes.

Each stage runs as a child process rather than in the Ray worker itself: a worker's ``sys.argv`` is Ray's, nerfstudio
keeps run state in module globals that a reused worker would carry from one run to the next, and Ray installs its
own SIGTERM handler. The child's output goes to the run's log, its exit status and wall time to the run's record.

Stopping: ``ray.cancel`` raises ``KeyboardInterrupt`` in the task, which passes SIGTERM on to the child and gives it
time to save a checkpoint and exit. (Not SIGINT: Ray starts its workers with SIGINT blocked, and children inherit the
mask, so it would never arrive; the children are started with the mask cleared all the same.) The task waits for the
child in a Python loop, since ``KeyboardInterrupt`` is only raised between bytecodes, not in a blocking wait.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from nerfstudio_clipsketch.batch.runs import RunJob, Stage, read_record, write_record

POLL_S = 0.2
MAX_MESSAGE_LINES = 6
_EXCEPTION_LINE = re.compile(r"[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)(: .*)?")


def execute(job: RunJob) -> Dict[str, Any]:
    """Run the job's stages in order, stopping at the first that fails or is stopped; keep the record up to date.

    Returns:
        ``{"run", "status", "error"}``: status ``finished``, ``failed`` (error: the stage's message) or ``stopped``.
    """
    record = read_record(job.run_dir)
    record.update(status="running", error=None)
    record.setdefault("attempts", [])
    write_record(job.run_dir, record)
    env = {**os.environ, **job.env}
    status, error = None, None
    try:
        for stage in job.stages:
            started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
            returncode, seconds, interrupted, message = run_stage(stage, job.cwd, env, job.stop_timeout)
            record["attempts"].append(
                {
                    "stage": stage.kind,
                    "from_step": stage.from_step,
                    "started_at": started_at,
                    "wall_time_s": round(seconds, 3),
                    "returncode": returncode,
                    "interrupted": interrupted,
                }
            )
            if interrupted:
                status = "stopped"
                break
            if returncode != 0:
                status, error = "failed", f"{stage.kind}: {message}"
                break
        else:
            status = "finished"
    finally:
        status = status or "stopped"  # the worker itself is being stopped
        record.update(status=status, error=error)
        write_record(job.run_dir, record)
    return {"run": job.name, "status": status, "error": error}


def run_stage(stage: Stage, cwd: Path, env: Dict[str, str], stop_timeout: float) -> Tuple[int, float, bool, str]:
    """One child process, its output appended to the stage's log.

    Returns:
        ``(returncode, wall seconds, interrupted, message)``: ``interrupted`` when the task was cancelled and the
        child asked to stop; ``message`` is what the child's output says went wrong when it failed.
    """
    stage.log.parent.mkdir(parents=True, exist_ok=True)
    with open(stage.log, "ab") as log:
        log.write(f"\n=== {datetime.now().isoformat(timespec='seconds')} {stage.kind}: ".encode())
        log.write(f"{shlex.join(stage.command)}\n".encode())
        log.flush()
        offset = log.tell()
        start = time.monotonic()
        child = subprocess.Popen(
            stage.command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_unblock_signals if os.name == "posix" else None,
        )
        try:
            returncode = _wait(child)
            interrupted = False
        except KeyboardInterrupt:
            returncode = stop(child, stop_timeout)
            interrupted = True
        except BaseException:
            stop(child, stop_timeout)
            raise
    seconds = time.monotonic() - start
    message = "" if returncode == 0 or interrupted else error_message(_read_from(stage.log, offset), returncode)
    return returncode, seconds, interrupted, message


def _unblock_signals() -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _wait(child: subprocess.Popen) -> int:
    while True:
        try:
            return child.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            continue


def stop(child: subprocess.Popen, timeout: float) -> int:
    """SIGTERM, ``timeout`` seconds to exit (a trainer saves its checkpoint), then SIGKILL. Returns the exit status."""
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            return child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
    return child.wait()


def _read_from(path: Path, offset: int, limit: int = 1 << 16) -> str:
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
    top = tops[-1]
    title = lines[top].strip("╭╮─ ")
    body = []
    for line in lines[top + 1 :]:
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
