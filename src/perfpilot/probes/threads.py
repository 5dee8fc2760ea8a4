"""Thread counts versus the cores this process may use, and what oversubscription costs.

:func:`thread_facts` reads the settings (torch intra/inter-op threads, ``OMP_NUM_THREADS``
and friends, the process's OS threads, loader workers). When torch uses more threads
than usable cores, :func:`calibrate_threads` measures the cost on this machine: the same
matmul batch at the current thread count and at the usable-core count, interleaved,
compared with :func:`perfpilot.measure.compare`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
            "NUMEXPR_NUM_THREADS", "TORCH_NUM_THREADS")


def usable_cores() -> int:
    """Cores this process may use (affinity and cgroup quota aware).

    :func:`perfpilot.host.usable_cores` when available (the parent process, which
    passes the figure to the profiled child so the child need not import it), else
    affinity capped by the cgroup v2 quota.
    """
    try:
        from perfpilot.host import usable_cores as probe_usable_cores
    except ImportError:
        probe_usable_cores = None
    if probe_usable_cores is not None:
        return int(probe_usable_cores())
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, min(n, _cgroup_quota() or n))


def _cgroup_quota() -> int | None:
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota == "max":
            return None
        return max(1, int(int(quota) / int(period)))
    except (OSError, ValueError):
        return None


def os_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()


def thread_facts(torch: Any | None, loaders: list[dict[str, Any]],
                 cores: int | None = None) -> dict[str, Any]:
    """The ``threads`` section (without calibration); ``cores`` if already known."""
    facts: dict[str, Any] = {
        "usable_cores": cores or usable_cores(), "cpu_count": os.cpu_count(),
        "os_threads": os_threads(),
        "env": {k: os.environ[k] for k in ENV_VARS if k in os.environ},
        "max_loader_workers": max([ld.get("num_workers") or 0 for ld in loaders] or [0]),
    }
    if torch is not None:
        facts["torch_threads"] = torch.get_num_threads()
        facts["torch_interop_threads"] = torch.get_num_interop_threads()
    return facts


def calibrate_threads(torch: Any, current: int, candidates: list[int], *,
                      repeats: int = 5,
                      clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Time a small training-like op mix at ``current`` threads and at each candidate.

    Returns the best candidate measured faster (``factor`` > 1: speedup over
    ``current``, with its interval), or ``factor`` 1.0 when none is. ``tried`` maps each
    candidate to its measured speedup. Restores the thread count.
    """
    from perfpilot.measure import compare

    before = torch.get_num_threads()
    x, w = torch.randn(64, 256), torch.randn(256, 256)
    big = torch.randn(100_000)

    def at(n: int) -> Callable[[], float]:
        def measure() -> float:
            torch.set_num_threads(n)
            (x @ w).relu_()  # the pool resizes on the first op after a change
            t0 = clock()
            for _ in range(4):
                (x @ w).relu_()
                (big * 2.0 + 1.0).relu_()
            return clock() - t0
        return measure

    best: dict[str, Any] = {"current": current, "target": current, "factor": 1.0,
                            "ci_low": 1.0, "ci_high": 1.0, "n": 0, "tried": {}}
    try:
        for n in sorted(set(candidates)):
            if n >= current:
                continue
            c = compare(at(current), at(n), repeats=repeats, warmup=1)
            best["tried"][str(n)] = round(c.ratio, 3)
            if c.verdict == "faster" and c.ratio > best["factor"]:
                best.update(target=n, factor=c.ratio, ci_low=c.ci_low, ci_high=c.ci_high,
                            n=c.n)
    finally:
        torch.set_num_threads(before)
    return best


def op_overhead_s(torch: Any, n: int = 1000,
                  clock: Callable[[], float] = time.perf_counter) -> float:
    """Median per-op time of a tiny elementwise op: PyTorch's fixed dispatch cost."""
    x = torch.ones(4)
    samples = []
    for _ in range(5):
        t0 = clock()
        for _ in range(n // 5):
            torch.add(x, x)
        samples.append((clock() - t0) / (n // 5))
    samples.sort()
    return samples[len(samples) // 2]
