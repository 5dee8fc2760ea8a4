"""Chunks of a parallel map: how big (adaptive, like joblib's auto batching) and how run.

A chunk is a run of consecutive items sent to one worker as one task, so the per-task
cost (pickling, a pipe round trip, a Ray task) is paid once per chunk, not per item.
Big chunks waste less on overhead; small chunks balance the tail better and stop sooner
on Ctrl-C. :class:`ChunkSizer` aims each chunk at ``target_s`` of work, re-aims when a
chunk of the current size is predicted to fall outside ``window_s``, and never makes a
chunk so big that fewer than two chunks per worker would be left.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

TARGET_S = 0.2  # the chunk duration aimed at
WINDOW_S = (0.1, 1.0)  # chunks predicted inside this window keep their size (hysteresis)
MAX_GROWTH = 16  # one fast chunk may be a fluke: grow at most this much per observation
EWMA = 0.5  # weight of the newest per-item time


@dataclass
class ChunkSizer:
    """Adaptive chunk size. ``per_item_s`` is the first estimate (``None``: start at 1).

    ``fixed`` disables adaptation (an explicit ``chunksize``).
    """

    workers: int
    per_item_s: float | None = None
    fixed: int | None = None
    target_s: float = TARGET_S
    window_s: tuple[float, float] = WINDOW_S
    size: int = field(init=False)
    history: list[tuple[int, float, int]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.size = self.fixed or (self._ideal() if self.per_item_s else 1)

    def next(self, remaining: int) -> int:
        """Size of the next chunk when ``remaining`` items are still to be sent."""
        if self.fixed:
            return max(1, min(self.fixed, remaining))
        balance = math.ceil(remaining / (2 * self.workers))  # leave work for every worker
        return max(1, min(self.size, balance, remaining))

    def observe(self, items: int, seconds: float) -> None:
        """A chunk of ``items`` items took ``seconds`` of work (measured in the worker)."""
        if self.fixed or items <= 0:
            return
        per = max(seconds, 1e-9) / items
        self.per_item_s = per if self.per_item_s is None else (
            EWMA * per + (1 - EWMA) * self.per_item_s)
        predicted = self.size * self.per_item_s
        lo, hi = self.window_s
        if not lo <= predicted <= hi:
            self.size = max(1, min(self._ideal(), self.size * MAX_GROWTH))
        self.history.append((items, seconds, self.size))

    def _ideal(self) -> int:
        return max(1, round(self.target_s / max(self.per_item_s or 1.0, 1e-9)))


@dataclass(frozen=True)
class ChunkResult:
    """Values of a chunk's items in order, the work time, and the failure if one failed.

    ``error`` is ``(index, exception)`` in-process, ``(index, error_reply)`` from a remote
    worker (see :mod:`perfpilot.execute._worker`); items after a failed one are not run.
    """

    values: list[Any]
    seconds: float
    error: tuple[int, Any] | None = None
    stopped: bool = False


def run_chunk(fn: Callable[[Any], Any] | bytes, items: Sequence[Any], start: int,
              stop: threading.Event | None = None) -> ChunkResult:
    """Apply ``fn`` to each item; ``fn`` as bytes means a cloudpickle blob (remote worker)."""
    remote = isinstance(fn, bytes)
    func = _load(fn) if isinstance(fn, bytes) else fn
    values: list[Any] = []
    t0 = time.perf_counter()
    for offset, item in enumerate(items):
        if stop is not None and stop.is_set():
            return ChunkResult(values, time.perf_counter() - t0, stopped=True)
        try:
            values.append(func(item))
        except Exception as e:
            return ChunkResult(values, time.perf_counter() - t0,
                               (start + offset, _error(e) if remote else e))
    return ChunkResult(values, time.perf_counter() - t0)


@functools.lru_cache(maxsize=8)
def _load(blob: bytes) -> Callable[[Any], Any]:
    """Unpickle a function once per worker, not once per chunk."""
    import cloudpickle

    return cloudpickle.loads(blob)


def _error(e: Exception) -> tuple:
    from perfpilot.execute._worker import error_reply

    if e.__traceback__ is not None:  # drop run_chunk's own frame: the user's frames only
        e = e.with_traceback(e.__traceback__.tb_next)
    return error_reply(e)
