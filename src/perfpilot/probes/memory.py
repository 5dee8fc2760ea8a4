"""Process memory over time: RSS samples (peak and growth), and CUDA allocator peaks.

RSS is read from ``/proc/self/statm`` (a few microseconds) on the sampler thread every
:data:`PERIOD_S`; the peak is the larger of the sampled maximum and ``ru_maxrss`` (which
catches spikes between samples). Growth is the least-squares slope of RSS over the
steady window, per second and per step, so a leak (e.g. keeping every loss tensor with
its graph) shows as a steady climb.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

PERIOD_S = 0.1
MAX_POINTS = 400


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import psutil

        return int(psutil.Process().memory_info().rss)


def ru_maxrss_bytes() -> int | None:
    try:
        import resource
    except ImportError:
        return None
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(value if sys.platform == "darwin" else value * 1024)


class MemoryProbe:
    """Collects ``(t, rss)`` points; :meth:`sample` is meant for the sampler thread."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter,
                 read: Callable[[], int] = rss_bytes) -> None:
        self.clock, self.read = clock, read
        self.points: list[tuple[float, int]] = []
        self._stride = 1
        self._n = 0

    def sample(self) -> None:
        self._n += 1
        if self._n % self._stride:
            return
        self.points.append((self.clock(), self.read()))
        if len(self.points) >= MAX_POINTS:  # keep a bounded, evenly spaced series
            self.points = self.points[::2]
            self._stride *= 2

    def section(self, steady_from: float | None, origin: float, steps: int = 0) -> dict[str, Any]:
        """Peak, start/end RSS, steady growth; ``t`` of points relative to ``origin``."""
        pts = list(self.points)
        peak = max([p[1] for p in pts] + [ru_maxrss_bytes() or 0])
        out: dict[str, Any] = {
            "peak_rss_bytes": peak,
            "series": [[round(t - origin, 4), r] for t, r in pts],
        }
        steady = [(t, r) for t, r in pts if steady_from is not None and t >= steady_from]
        if len(steady) >= 5 and steady[-1][0] - steady[0][0] > 0:
            slope = _slope(steady)
            span = steady[-1][0] - steady[0][0]
            out.update(growth_bytes_per_s=slope, steady_span_s=span,
                       steady_start_bytes=steady[0][1], steady_end_bytes=steady[-1][1])
            if steps:
                out["growth_bytes_per_step"] = slope * span / steps
        return out


def _slope(points: list[tuple[float, int]]) -> float:
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mr = sum(r for _, r in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (r - mr) for t, r in points) / var if var else 0.0


def cuda_memory(torch: Any) -> dict[str, Any]:
    """Allocator peaks and device capacity for the current CUDA device."""
    dev = torch.cuda.current_device()
    free, total = torch.cuda.mem_get_info(dev)
    return {"device": dev, "max_allocated_bytes": int(torch.cuda.max_memory_allocated(dev)),
            "max_reserved_bytes": int(torch.cuda.max_memory_reserved(dev)),
            "total_bytes": int(total), "free_bytes": int(free)}
