"""Facts every rule needs, read once from a record, and small formatting helpers.

Shares are fractions of the *steady window* (from the end of warm-up to the end of the
run, profiler window excluded; see :mod:`perfpilot.probes.assemble`): what a long run of
the same script would look like. Startup and imports are reported, never diagnosed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from perfpilot.record import Confidence, Finding, Measure, RunRecord, amdahl
from perfpilot.record_probe_sections import LoaderInfo

MIN_STEPS = 3  # fewer steady steps than this: step-based rules stay silent


@dataclass(frozen=True)
class Facts:
    """Derived numbers shared by the rules (seconds unless said otherwise)."""

    window_s: float
    steps: int
    step_kind: str | None
    per_step: dict[str, float]
    totals: dict[str, float]
    train_s: float
    eval_s: float
    samples_per_step: int | None
    trains: bool  # an optimizer stepped, or steps were backwards (parameters set by hand)
    record: RunRecord = field(repr=False)

    def share(self, seconds: float) -> float:
        return min(max(seconds / self.window_s, 0.0), 1.0) if self.window_s > 0 else 0.0

    @property
    def step_s(self) -> float:
        return sum(v for k, v in self.per_step.items() if k != "eval")

    @property
    def compute_total(self) -> float:
        return sum(self.totals.get(p, 0.0) for p in ("forward", "backward", "optimizer"))

    def train_loader(self) -> LoaderInfo | None:
        """The loader feeding training (most fetch time among train/unknown roles)."""
        loaders = [ld for ld in self.record.loaders if ld.batches]
        train = [ld for ld in loaders if ld.role in ("train", "unknown")]
        pool = train or loaders
        return max(pool, key=lambda ld: ld.fetch_s) if pool else None


def facts_of(record: RunRecord) -> Facts:
    """Read the sections written by :func:`perfpilot.probes.assemble.build_record`."""
    phases, timeline = record.step_phases, record.timeline
    per_step = dict(phases.per_step_s or record.phases_s or {})
    totals = dict(phases.total_s)
    steps = int(phases.steps or 0)
    if not totals and per_step and steps:
        totals = {k: v * steps for k, v in per_step.items()}
    train_s = float(timeline.train_s or sum(v for k, v in totals.items() if k != "eval"))
    window = float(timeline.steady_s or 0.0) or train_s
    optimizers = record.optimizers
    trains = (bool(optimizers) if optimizers is not None else phases.kind == "optimizer"
              ) or phases.kind == "backward"
    return Facts(window_s=window, steps=steps, step_kind=phases.kind,
                 per_step=per_step, totals=totals, train_s=train_s,
                 eval_s=float(timeline.eval_s or 0.0),
                 samples_per_step=phases.samples_per_step, trains=trains,
                 record=record)


def make(fid: str, title: str, evidence: str, fix: str, share: float, factor: float, *,
         location: dict[str, Any] | None = None, confidence: Confidence = "medium",
         plan_change: dict[str, Any] | None = None, tag: str | None = None,
         lines: Sequence[int] = (), measured: Sequence[Measure] = ()) -> Finding:
    """A finding whose gain is ``amdahl(share, factor)``; the Amdahl inputs are its
    ``time_share`` and ``factor``, the other keywords its fields of the same name."""
    return Finding(id=fid, title=title, evidence=evidence, fix=fix,
                   estimated_speedup=round(amdahl(share, factor), 4), location=location,
                   confidence=confidence, time_share=share, factor=factor,
                   plan_change=plan_change, tag=tag, lines=tuple(lines),
                   measured=tuple(measured))


def loc(site: list[Any] | tuple[Any, ...] | None) -> dict[str, Any] | None:
    """A Finding location from a ``[file, line, function]`` site."""
    if not site:
        return None
    out: dict[str, Any] = {"file": site[0], "line": int(site[1])}
    if len(site) > 2:
        out["function"] = site[2]
    return out


def where(site: list[Any] | tuple[Any, ...] | None) -> str:
    """``file.py:12`` for evidence text."""
    if not site:
        return "?"
    return f"{os.path.basename(str(site[0]))}:{site[1]}"


def pct(x: float) -> str:
    return f"{100 * x:.0f}%" if x >= 0.095 else f"{100 * x:.1f}%"


def secs(x: float) -> str:
    if x >= 1:
        return f"{x:.2f} s"
    if x >= 1e-3:
        return f"{1e3 * x:.1f} ms"
    return f"{1e6 * x:.0f} us"


def source(site: list[Any] | tuple[Any, ...] | None) -> str:
    if not site:
        return ""
    import linecache

    return linecache.getline(str(site[0]), int(site[1])).strip()
