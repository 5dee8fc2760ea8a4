"""The machine's load while a trial ran: other processes' CPU use and the load average.

Why: a knob that competes with other processes for the CPU (threads, loader workers) wins
or loses by how busy the machine is. Issue 20's tester saw every gain come from
``cpu_threads=1`` at load average 7-13 on 2 cores, and the same knob 1.9x slower on the
idle machine. So every trial carries the load it was measured at
(:attr:`perfpilot.trial.Trial.load`), and :mod:`perfpilot.tune.load_label` judges a
decision by it.

How: two readings of :func:`perfpilot.probes.cpu.read_sample` (a few system calls, about a
millisecond), one before and one after the trial. Between them:

* ``own_cores``: CPU seconds of this process and its children (loader workers, executor
  workers, a script's process) per second of wall time;
* ``others_cores``: the machine's busy CPU seconds minus those, per second: what every
  other process used (not what it wanted: on a saturated machine demand is higher);
* ``loadavg_1m``: the 1-minute load average, the mean of the two readings (it counts this
  tuning's runnable threads too, and lags by about a minute);
* ``cores``: the cores this process may use (affinity, cgroup quota), ``machine_cores``:
  the CPUs the machine-wide counters cover (more than ``cores`` in a container).

``others_cores`` is left out when the trial was shorter than :data:`MIN_SPAN_S` (the
counters tick at 10 ms: a short window is mostly rounding). Measuring never raises: a
failed reading gives ``{}`` (the trial is kept, without load).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

MIN_SPAN_S = 0.25
NOW_WINDOW_S = 0.5  # how long :func:`load_now` watches the machine


@functools.lru_cache(maxsize=1)
def core_counts() -> tuple[int, int]:
    """``(cores this process may use, CPUs the machine counters cover)``; fixed per process."""
    import os

    from perfpilot.host import usable_cores

    try:
        usable = usable_cores()
    except Exception:  # noqa: BLE001 - a count is a fact for the label, never a crash
        usable = os.cpu_count() or 1
    try:
        import psutil

        machine = psutil.cpu_count() or os.cpu_count() or usable
    except Exception:  # noqa: BLE001
        machine = os.cpu_count() or usable
    return usable, max(machine, usable)


def reading() -> tuple[float, dict[str, float]] | None:
    """``(wall time, read_sample())``, or None when the machine cannot be read."""
    from perfpilot.probes.cpu import read_sample

    try:
        return time.perf_counter(), read_sample()
    except Exception:  # noqa: BLE001 - a probe failure costs the label, never the trial
        return None


def between(start: tuple[float, dict[str, float]] | None,
            end: tuple[float, dict[str, float]] | None,
            cores: tuple[int, int] | None = None) -> dict[str, Any]:
    """The load over ``[start, end]`` (see the module docstring); ``{}`` without both."""
    if start is None or end is None:
        return {}
    (t0, a), (t1, b) = start, end
    usable, machine = cores or core_counts()
    out: dict[str, Any] = {"cores": usable, "machine_cores": machine}
    loads = [x["load_1m"] for x in (a, b) if isinstance(x.get("load_1m"), (int, float))]
    if loads:
        out["loadavg_1m"] = round(sum(loads) / len(loads), 3)
    span = t1 - t0
    if span >= MIN_SPAN_S:
        from perfpilot.probes.cpu import delta

        d = delta(a, b)
        own = d["user_s"] + d["system_s"] + d["children_s"]
        out["own_cores"] = round(own / span, 3)
        out["others_cores"] = round(d["other_processes_s"] / span, 3)
        out["span_s"] = round(span, 3)
    return out


class LoadWatch:
    """Load over one stretch of time: created at its start, :meth:`stop` at its end."""

    def __init__(self, read: Callable[[], tuple[float, dict[str, float]] | None] = reading,
                 cores: tuple[int, int] | None = None) -> None:
        self.read, self.cores = read, cores
        self.start = read()

    def stop(self) -> dict[str, Any]:
        return between(self.start, self.read(), self.cores)


def load_now(window_s: float = NOW_WINDOW_S,
             sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """The load on the machine now: watched for ``window_s`` seconds while this process
    waits (so ``own_cores`` is about 0 and the load average is the others')."""
    watch = LoadWatch()
    sleep(max(window_s, MIN_SPAN_S))
    return watch.stop()
