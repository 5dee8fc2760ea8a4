"""The fit limit: the largest batch that runs forward + backward + optimizer step.

The search is pure logic over a ``probe(batch_size) -> Probe`` function that really runs
a step (see :mod:`perfpilot.tune.stages.batch.stage` for the engine-backed probe). It doubles from a
start size until a probe fails or the cap is reached, bisects between the last success
and the first failure, then backs off by a safety margin. Every size it returns was run
and succeeded (Lightning's power mode, by contrast, returns twice the last size it ran
when no OOM occurs before its cap).

A CPU does not fail cleanly when memory runs out (the OS swaps or kills the process), so
on a CPU the search also takes a memory budget: the peak memory of the successful probes
is fitted as ``base + per_sample * batch`` and a size projected over the budget is refused
without running it; a probe that ran but whose measured peak exceeds the budget counts as
a failure too. Refused sizes are recorded in the probes with ``ran = False``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

ProbeState = Literal["ok", "oom", "over-budget", "failed"]
Cause = Literal["memory", "cap", "budget", "time"]


@dataclass(frozen=True)
class Probe:
    """One tried size. ``peak_bytes`` is the step's peak memory above what was in use
    before it (None when unknown); ``step_s`` the time of its last step."""

    batch_size: int
    state: ProbeState
    ran: bool = True
    peak_bytes: int | None = None
    step_s: float | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "ok"


@dataclass(frozen=True)
class FitResult:
    """The fit limit and how it was found.

    ``limit`` is the size to use (after the margin when memory bounded the search);
    ``largest_ok`` the largest size that ran; ``smallest_failed`` the smallest size that
    failed or was refused (None when the cap was reached); ``cause`` what bounded it.
    """

    limit: int
    largest_ok: int
    smallest_failed: int | None
    cause: Cause
    cap: int
    margin: float
    budget_bytes: int | None
    memory_model: dict[str, float] | None
    probes: tuple[Probe, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["probes"] = [asdict(p) for p in self.probes]
        return d


class NothingFits(RuntimeError):
    """Not even a batch of one sample runs."""


def find_fit_limit(
    probe: Callable[[int], Probe],
    *,
    start: int,
    cap: int,
    margin: float = 0.1,
    tolerance: float = 0.05,
    budget_bytes: int | None = None,
    max_step_s: float | None = None,
) -> FitResult:
    """Search the largest batch in ``[1, cap]`` whose probe succeeds.

    ``tolerance``: bisection stops when the gap between success and failure is at most
    this fraction of the success (or 1). ``margin``: when an out-of-memory failure bounded
    the search, the limit is ``floor(largest_ok * (1 - margin))``, probed if it was not run
    yet; when the cap or the memory budget bounded it, the limit is the largest success.
    ``max_step_s``: doubling also stops at a size whose step took longer than this (cause
    ``time``): a batch that slow cannot be validated within the tuning budget anyway.
    """
    if cap < 1:
        raise ValueError(f"cap must be >= 1, got {cap}")
    search = _Search(probe, budget_bytes, max_step_s)
    lo, hi = search.bracket(min(max(start, 1), cap), cap)
    while hi is not None and hi - lo > max(1, math.floor(tolerance * lo)):
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if search.fits(mid) else (lo, mid)
    cause: Cause = "time" if search.too_slow else "cap"
    if hi is not None:
        cause = "budget" if search.probes_by_size[hi].state == "over-budget" else "memory"
    # The margin guards against running out of device memory later (fragmentation, other
    # processes); a size that ran within the CPU budget needs none: the budget is the margin.
    limit = search.back_off(lo, margin) if cause == "memory" else lo
    return FitResult(limit=limit, largest_ok=lo, smallest_failed=hi, cause=cause, cap=cap,
                     margin=margin if cause == "memory" else 0.0, budget_bytes=budget_bytes,
                     memory_model=search.memory_model(), probes=tuple(search.probes))


class _Search:
    """Runs probes (or refuses them against the budget) and remembers every outcome."""

    def __init__(self, probe: Callable[[int], Probe], budget_bytes: int | None,
                 max_step_s: float | None = None) -> None:
        self.probe, self.budget, self.max_step_s = probe, budget_bytes, max_step_s
        self.too_slow = False
        self.probes: list[Probe] = []
        self.probes_by_size: dict[int, Probe] = {}

    def fits(self, size: int) -> bool:
        if size in self.probes_by_size:
            return self.probes_by_size[size].ok
        projected = self.project(size)
        if self.budget is not None and projected is not None and projected > self.budget:
            p = Probe(size, "over-budget", ran=False, peak_bytes=round(projected),
                      reason=f"projected peak {projected / 2**20:.0f} MiB over the budget of "
                             f"{self.budget / 2**20:.0f} MiB")
        else:
            p = self.probe(size)
            if p.ok and self.budget is not None and (p.peak_bytes or 0) > self.budget:
                p = Probe(size, "over-budget", ran=True, peak_bytes=p.peak_bytes,
                          step_s=p.step_s, reason="measured peak over the memory budget")
        self.probes.append(p)
        self.probes_by_size[size] = p
        return p.ok

    def bracket(self, start: int, cap: int) -> tuple[int, int | None]:
        """(largest success, smallest failure or None) from doubling or halving."""
        if not self.fits(start):
            size = start
            while size > 1:
                failed, size = size, size // 2
                if self.fits(size):
                    return size, failed
            raise NothingFits(f"a batch of 1 does not fit: {self.probes_by_size[1].reason}")
        lo = start
        while lo < cap and not self.slow(lo):
            nxt = min(2 * lo, cap)
            if not self.fits(nxt):
                return lo, nxt
            lo = nxt
        return lo, None

    def slow(self, size: int) -> bool:
        step_s = self.probes_by_size[size].step_s
        self.too_slow = (self.max_step_s is not None and step_s is not None
                         and step_s > self.max_step_s)
        return self.too_slow

    def back_off(self, largest_ok: int, margin: float) -> int:
        """The largest run success at most ``largest_ok * (1 - margin)``, probing it."""
        size = max(1, math.floor(largest_ok * (1.0 - margin)))
        while not self.fits(size):
            if size == 1:
                raise NothingFits("a batch of 1 no longer fits after backing off")
            size //= 2
        return size

    def memory_model(self) -> dict[str, float] | None:
        """Least-squares ``peak = base + per_sample * batch`` over the successful probes."""
        pts = [(p.batch_size, p.peak_bytes) for p in self.probes
               if p.ok and p.peak_bytes is not None]
        if len({b for b, _ in pts}) < 2:
            return None
        n = len(pts)
        mb = sum(b for b, _ in pts) / n
        mp = sum(m for _, m in pts) / n
        sxx = sum((b - mb) ** 2 for b, _ in pts)
        slope = max(sum((b - mb) * (m - mp) for b, m in pts) / sxx, 0.0)
        return {"base_bytes": mp - slope * mb, "per_sample_bytes": slope, "points": n}

    def project(self, size: int) -> float | None:
        model = self.memory_model()
        if model is None:
            return None
        return model["base_bytes"] + model["per_sample_bytes"] * size
