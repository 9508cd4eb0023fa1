"""Where a job's time and memory go: wall time and peak memory of each named stage of a run.

A stage may be entered many times (once per chunk): its times add up and its peak is the largest seen.
Peak memory is the process's resident high-water mark (``VmHWM`` in ``/proc/self/status``). With
``own_peaks`` the mark is reset when a stage starts (Linux ``/proc/self/clear_refs``), so each stage
reports its own peak rather than the job's so far; the job's peak is then the largest of them. Without
Linux's /proc the peaks are those of ``resource.getrusage`` (the job's so far) or missing.

Costs a clock read and one small /proc read per stage entry: cheap enough to be always on.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


def _peak_bytes() -> int | None:
    """The process's resident high-water mark, in bytes."""
    try:
        with open(_STATUS, "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except (ImportError, OSError):
        return None


def _reset_peak() -> bool:
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@dataclass
class Stage:
    name: str
    seconds: float = 0.0
    peak_bytes: int | None = None
    entered: int = 0

    def to_dict(self) -> dict:
        return {"stage": self.name, "seconds": round(self.seconds, 3), "entered": self.entered,
                "peak_gib": None if self.peak_bytes is None else round(self.peak_bytes / 2**30, 3)}


@dataclass
class Stages:
    """Stage timer: ``with stages("feature build"): ...``; ``table()`` lists the stages in first-entry order."""

    own_peaks: bool = False
    stages: dict[str, Stage] = field(default_factory=dict)

    @contextmanager
    def __call__(self, name: str):
        stage = self.stages.setdefault(name, Stage(name))
        if self.own_peaks and not _reset_peak():
            self.own_peaks = False  # not Linux: peaks are the job's so far
        t = time.perf_counter()
        try:
            yield stage
        finally:
            stage.seconds += time.perf_counter() - t
            stage.entered += 1
            peak = _peak_bytes()
            if peak is not None:
                stage.peak_bytes = max(stage.peak_bytes or 0, peak)

    def total_seconds(self) -> float:
        return sum(s.seconds for s in self.stages.values())

    def peak_bytes(self) -> int | None:
        peaks = [s.peak_bytes for s in self.stages.values() if s.peak_bytes is not None]
        return max(peaks) if peaks else None

    def table(self) -> list[dict]:
        return [s.to_dict() for s in self.stages.values()]
