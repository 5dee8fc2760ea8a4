"""CPU use over time: the run's own user and system time, its page faults, and what the
rest of the machine used meanwhile.

Two facts a profile of the run alone cannot show:

* **System time.** Time the kernel spends for the process (page faults from allocating
  and freeing large tensors, ``madvise``/``munmap`` churn of the allocator, I/O). Issue
  18's tester measured 37% of the CPU time on ``pytorch/examples``' ``word_language_model``
  (its default sizes); this probe measured 9% at ``--emsize 64 --nhid 64``. A Python
  profiler sees none of it as such.
* **Other processes.** On a machine others share, torch's intra-op threads compete with
  them: the same tester measured that script 4-10x slower with 2 threads than with 1 at
  load 11 on 2 cores, and 1.9x faster with 2 threads on the idle machine. Any timing and
  any thread advice hold at the load they were measured at, so the record says what that
  was.

:class:`CpuProbe` samples on the sampler thread every :data:`PERIOD_S` (a few system
calls): the process's ``os.times()`` user/system seconds, its children's (ended ones
from ``os.times()``, live ones such as loader workers from ``psutil``), its minor/major
page faults (``getrusage``), the machine's busy CPU seconds (``psutil.cpu_times()``) and
the 1-minute load average. :meth:`CpuProbe.section` differences the first and last
sample of the steady window.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import Any

PERIOD_S = 0.5
MAX_POINTS = 400  # readings kept (evenly thinned past this), to end the window in the past


def read_sample() -> dict[str, float]:
    """One reading (seconds are cumulative since the process or the machine started)."""
    import psutil

    own = os.times()
    out: dict[str, float] = {"user_s": own.user, "system_s": own.system}
    try:
        import resource

        ru = resource.getrusage(resource.RUSAGE_SELF)
        out.update(minor_faults=float(ru.ru_minflt), major_faults=float(ru.ru_majflt))
    except ImportError:  # Windows
        pass
    # Children that ended and were waited for are in os.times(); live ones (DataLoader
    # workers, spawned ranks still running) are read through psutil. A child is in one
    # or the other, never both.
    children = own.children_user + own.children_system
    try:
        for child in psutil.Process().children(recursive=True):
            with_times = child.cpu_times()
            children += with_times.user + with_times.system
    except psutil.Error:  # a worker that just ended: counted as far as it was seen
        pass
    out["children_s"] = children
    machine = psutil.cpu_times()
    out["machine_busy_s"] = float(sum(machine) - machine.idle - getattr(machine, "iowait", 0.0))
    try:
        out["load_1m"] = os.getloadavg()[0]
    except (OSError, AttributeError):
        pass
    return out


class CpuProbe:
    """Collects ``(t, reading)`` pairs; :meth:`sample` is meant for the sampler thread.
    A reading that fails is skipped: the probe never raises into the profiled program."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter,
                 read: Callable[[], dict[str, float]] = read_sample) -> None:
        self.clock, self.read = clock, read
        self.first: tuple[float, dict[str, float]] | None = None
        self.steady: tuple[float, dict[str, float]] | None = None
        self.points: list[tuple[float, dict[str, float]]] = []
        self.error: str | None = None

    def sample(self, steady_from: float | None = None) -> None:
        """Take a reading; the first one at or after ``steady_from`` opens the window."""
        try:
            point = (self.clock(), self.read())
        except Exception as e:  # noqa: BLE001 - a probe failure is a note, never a crash
            self.error = f"{type(e).__name__}: {e}"
            return
        if self.first is None:
            self.first = point
        if steady_from is not None and self.steady is None and point[0] >= steady_from:
            self.steady = point
        self.points.append(point)
        if len(self.points) >= MAX_POINTS:
            self.points = [*self.points[:-1:2], self.points[-1]]

    def section(self, cores: int | None, until: float | None = None) -> dict[str, Any]:
        """The ``cpu`` section: from the steady window's first reading (else the run's) to
        the last reading at or before ``until`` (the last step; else the last reading)."""
        start = self.steady or self.first
        out: dict[str, Any] = {"error": self.error}
        if start is None or not self.points:
            return out
        inside = [p for p in self.points if until is None or p[0] <= until]
        end = inside[-1] if inside and inside[-1][0] > start[0] else self.points[-1]
        if end[0] - start[0] <= 0:
            return out
        (t0, a), (t1, b) = start, end
        span = t1 - t0
        d = delta(a, b)
        out.update(span_s=span, window="steady" if self.steady else "run", user_s=d["user_s"],
                   system_s=d["system_s"], children_s=d["children_s"],
                   other_processes_s=d["other_processes_s"],
                   minor_faults=int(d["minor_faults"]), major_faults=int(d["major_faults"]),
                   load_1m_start=a.get("load_1m"), load_1m_end=b.get("load_1m"),
                   usable_cores=cores, **allocator())
        return out


def delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """What was used between two :func:`read_sample` readings: each counter's increase
    (never negative), and ``other_processes_s``, the machine's busy CPU seconds less this
    process's and its children's."""
    d = {k: max(0.0, b.get(k, 0.0) - a.get(k, 0.0))
         for k in ("user_s", "system_s", "children_s", "machine_busy_s", "minor_faults",
                   "major_faults")}
    own = d["user_s"] + d["system_s"] + d["children_s"]
    return {**d, "other_processes_s": max(0.0, d["machine_busy_s"] - own)}


ALLOCATOR_ENV = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                 "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX", "THP_MEM_ALLOC_ENABLE")
PRELOADED = ("jemalloc", "tcmalloc", "mimalloc")


@functools.lru_cache(maxsize=1)
def _allocator() -> tuple[str, tuple[tuple[str, str], ...]]:
    import platform

    pre = os.environ.get("LD_PRELOAD", "")
    name = next((a for a in PRELOADED if a in pre), None)
    if name is None:  # libc_ver reads the interpreter's binary: once per process
        name = "glibc" if platform.libc_ver()[0] == "glibc" else ""
    return name, tuple((k, os.environ[k]) for k in ALLOCATOR_ENV if k in os.environ)


def allocator() -> dict[str, Any]:
    """Which ``malloc`` the process runs on (``allocator``: ``glibc``, a preloaded
    allocator by name, or ``""`` for another C library) and its settings already in the
    environment (``allocator_env``); fixed for the process's life, so read once."""
    name, env = _allocator()
    return {"allocator": name, "allocator_env": dict(env)}
