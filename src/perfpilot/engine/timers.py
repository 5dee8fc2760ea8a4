"""Step-phase timers: a *mark* is a point in time; ``seconds(a, b)`` is the time between.

:class:`HostTimer` reads a host clock. :class:`CudaTimer` records CUDA events on the
device's current stream, so marks never block: ``done(mark)`` polls without blocking and
``wait(mark)`` is the only synchronization.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Clock = Callable[[], float]


class HostTimer:
    """Marks are host clock readings, after ``sync()`` for async devices without events
    support here (MPS): accurate, at the price of a sync per mark."""

    def __init__(self, clock: Clock, sync: Callable[[], None] | None = None) -> None:
        self.clock, self.sync = clock, sync
        self.name = "host-clock" if sync is None else "host-clock+sync"

    def mark(self) -> float:
        if self.sync is not None:
            self.sync()
        return self.clock()

    @staticmethod
    def seconds(a: float, b: float) -> float:
        return b - a

    @staticmethod
    def done(mark: float) -> bool:
        return True

    @staticmethod
    def wait(mark: float) -> None:
        pass


class CudaTimer:
    """Marks are CUDA events on the device's current stream; never blocks until ``wait``."""

    name = "cuda-events"

    def __init__(self, device: Any) -> None:
        import torch

        self.torch, self.device = torch, device

    def mark(self) -> Any:
        event = self.torch.cuda.Event(enable_timing=True)
        event.record(self.torch.cuda.current_stream(self.device))
        return event

    @staticmethod
    def seconds(a: Any, b: Any) -> float:
        return a.elapsed_time(b) / 1e3

    @staticmethod
    def done(mark: Any) -> bool:
        return bool(mark.query())

    @staticmethod
    def wait(mark: Any) -> None:
        mark.synchronize()


def make_timer(device: Any, clock: Clock) -> HostTimer | CudaTimer:
    """Events on CUDA; the host clock elsewhere (synchronizing first on MPS)."""
    if device.type == "cuda":
        return CudaTimer(device)
    if device.type == "mps":
        import torch

        return HostTimer(clock, torch.mps.synchronize)
    return HostTimer(clock)
