"""The steps of one run under one boundary definition (see :mod:`perfpilot.probes.steps`):
phase seconds per step, samples per step and where they were counted, the profiler
window's steps flagged ``excluded``. Kept apart from the tracker, which keeps four."""

from __future__ import annotations

from typing import Any

MAX_STEPS_KEPT = 20000


class StepSeries:
    """Steps under one boundary definition: phase seconds per step, eval kept apart."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.steps: list[dict[str, Any]] = []
        self.count = 0
        self.cur: dict[str, float] | None = None
        self.start = 0.0
        self.samples = 0  # from DataLoader batches
        self.fwd_samples = 0  # from forward inputs (used when no loader batch came)
        self.sources: dict[str, int] = {}  # where closed steps took their samples from
        self.excluded = False

    def add(self, label: str, dt: float) -> None:
        if self.cur is not None:
            self.cur[label] = self.cur.get(label, 0.0) + dt

    def move(self, amounts: dict[str, float], to: str, back: bool = False) -> None:
        """Relabel ``amounts`` (label -> seconds) as ``to``; ``back`` undoes that."""
        if self.cur is None:
            return
        sign = -1.0 if back else 1.0
        for label, dt in amounts.items():
            self.cur[label] = self.cur.get(label, 0.0) - sign * dt
            self.cur[to] = self.cur.get(to, 0.0) + sign * dt

    def open(self, now: float) -> None:
        self.cur, self.start, self.excluded = {}, now, False
        self.samples = self.fwd_samples = 0

    def close(self, now: float) -> None:
        if self.cur is None:
            return
        if not self.cur and now <= self.start:  # opened and closed at once: not a step
            self.cur = None
            return
        self.count += 1
        samples = self.samples or self.fwd_samples
        if samples:
            src = "loader" if self.samples else "forward"
            self.sources[src] = self.sources.get(src, 0) + 1
        if len(self.steps) < MAX_STEPS_KEPT:
            phases = {k: max(v, 0.0) for k, v in self.cur.items() if v}
            self.steps.append({"start": self.start, "end": now, "phases": phases,
                               "samples": samples, "excluded": self.excluded})
        self.cur = None

    def boundary(self, now: float) -> None:
        self.close(now)
        self.open(now)
