"""A batch's progress: runs done, running, failed and waiting, and the time left.

ETA: the runs of this session that finished give the mean time a run takes; the work left is that for each waiting
run, plus what the running ones still need of it; the runs running at once share it. Until one run has finished
there is no estimate. Runs skipped as already finished count as done and take no time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional


@dataclass
class Progress:
    total: int
    done: int = 0
    failed: int = 0
    stopped: int = 0
    running: Dict[str, float] = field(default_factory=dict)
    """Start time of each running run."""
    durations: List[float] = field(default_factory=list)

    def skip(self, count: int) -> None:
        self.done += count

    def start(self, run: str, now: float) -> None:
        self.running.setdefault(run, now)

    def end(self, run: str, status: str, now: float) -> None:
        """``run`` ended with ``status`` (``finished``, ``failed`` or ``stopped``)."""
        started = self.running.pop(run, None)
        if status == "finished":
            self.done += 1
            if started is not None:
                self.durations.append(now - started)
        elif status == "failed":
            self.failed += 1
        else:
            self.stopped += 1

    @property
    def waiting(self) -> int:
        return self.total - self.done - self.failed - self.stopped - len(self.running)

    def eta(self, now: float) -> Optional[float]:
        """Seconds until the last run ends, or None before any run of this session finished."""
        if not self.durations:
            return None
        mean = sum(self.durations) / len(self.durations)
        left = self.waiting * mean + sum(max(mean - (now - t), 0.0) for t in self.running.values())
        return left / max(len(self.running), 1)

    def summary(self, now: float) -> str:
        """``3/8 done, 2 running, 1 failed, 2 waiting, ETA 4 min 10 s``."""
        parts = [f"{self.done}/{self.total} done", f"{len(self.running)} running", f"{self.failed} failed"]
        parts += [f"{self.stopped} stopped"] if self.stopped else []
        parts.append(f"{self.waiting} waiting")
        eta = self.eta(now)
        return ", ".join(parts) + (f", ETA {format_duration(eta)}" if eta is not None else ", ETA unknown")


def format_duration(seconds: float) -> str:
    """``42 s``, ``4 min 10 s``, ``2 h 05 min``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
