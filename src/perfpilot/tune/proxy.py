"""Proxy targets: deciding batch size and LR for runs whose target is beyond the budget.

Real training reaches its target in hours; the tuner's baseline trains for a share of the
budget. When the baseline misses the target, its metric curve still says how training
goes. :func:`proxy_from_baseline` turns that run into a :class:`ProxyTarget`:

* the **proxy target** ``level``: the level the baseline reached within its share (the
  best 3-point running median of its evaluations, :func:`~perfpilot.tune.curve.level_at`),
  which every stage and the final check then use as the workload's target;
* the baseline's **learning curve** in samples (``curve``: ``[samples, seconds, value]``
  per evaluation) and its **extrapolation** to the real target
  (:func:`~perfpilot.tune.curve.extrapolate`, with an interval and how far it reaches),
  which also gives the tuning a horizon (the expected length of the real run).

The batch stage decides on an earlier level its budget can afford
(:func:`decision_level`) and re-checks the decision at ``level`` when the budget allows
(:mod:`perfpilot.tune.stages.batch.recheck`): a batch size that is faster early in
training is not always faster later (short-horizon bias), so both are measured and
reported. Which numbers are measured and which are extrapolated is said in words
(:func:`describe`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from perfpilot.tune.curve import MAX_REACH, Curve, Extrapolation, extrapolate, level_at

# The batch stage's runs to its decision level: at the incumbent's speed, about this share
# of the stage's budget (about a dozen such runs fit: screening, search, repeats) and at
# most half the baseline's samples to the proxy target (so the re-check is later).
DECISION_RUN_SHARE, DECISION_MAX_FRACTION = 0.06, 0.5
MIN_DECISION_EVALUATION = 3  # the decision level is at least the baseline's 3rd evaluation
# ... and at least this share of the way from its first evaluation to the proxy level: a
# baseline whose LR is far too small can sit near its first value (chance) for several
# evaluations, and a race to that level measures start-up, not learning (the test
# test_decision_level_is_past_a_baseline_that_sits_at_chance shows such a curve).
MIN_DECISION_PROGRESS = 0.25
MIN_EVALUATIONS = 4
PLOT_REACH = 10.0  # the report draws the fitted curve at most this far past the measured


@dataclass(frozen=True)
class ProxyTarget:
    """The proxy target of a tuning whose baseline missed the real one (module docstring).

    ``target``: the workload's real target; ``level``: the proxy target; ``trained_s``: the
    baseline's training seconds; ``level_at_s``: when it first held ``level``;
    ``samples_per_s``: its training throughput (samples over training seconds);
    ``extrapolation``: :meth:`Extrapolation.to_dict` of its curve to ``target``, or None
    when no curve fits."""

    metric: str
    direction: str
    target: float
    level: float
    trained_s: float
    level_at_s: float
    samples_per_s: float
    curve: list[list[float]] = field(default_factory=list)
    extrapolation: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProxyTarget:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def samples_to(self, level: float) -> float | None:
        """The baseline's samples at its first evaluation at ``level`` or past it (None
        when none was)."""
        return next((s for s, _, v in self.curve if holds(v, level, self.direction)), None)

    def horizon_s(self) -> float | None:
        """The extrapolated training seconds to the real target (None when unknown)."""
        ext = self.extrapolation or {}
        x = ext.get("seconds")
        return float(x) if x is not None and ext.get("reach", 0) <= MAX_REACH else None


def samples_curve(history: Sequence[Sequence[float]], samples_per_step: int
                  ) -> list[list[float]]:
    """The engine's metric history ``[step, seconds, value]`` as ``[samples, seconds,
    value]`` (a step is ``batch_size x grad_accum`` samples; the last batch of an epoch
    may be smaller, which this ignores: at most one batch per epoch)."""
    return [[float(s) * samples_per_step, float(t), float(v)] for s, t, v in history]


def proxy_from_baseline(run: Mapping[str, Any], *, metric: str, direction: str,
                        target: float, samples_per_step: int) -> ProxyTarget | None:
    """The proxy target from the baseline's run (``run_unit``'s measurements) that missed
    ``target``; None when its curve cannot give one (too few evaluations, or no
    improvement since the first)."""
    record = run.get("record") or {}
    history = (record.get("metric") or {}).get("history") or []
    if len(history) < MIN_EVALUATIONS:
        return None
    curve = samples_curve(history, samples_per_step)
    trained = float(curve[-1][1])
    level = level_at([[t, v] for _, t, v in curve], trained, direction)
    if level is None or (level - curve[0][2]) * (1 if direction == "max" else -1) <= 0:
        return None  # no better than its first evaluation: no level to decide on
    at = next(t for _, t, v in curve if holds(v, level, direction))
    sps = curve[-1][0] / trained if trained > 0 else 0.0
    ext = extrapolate([[s, v] for s, _, v in curve], target, direction, sps)
    return ProxyTarget(metric, direction, float(target), float(level), trained, float(at),
                       sps, curve, ext.to_dict() if ext is not None else None)


def why_none(run: Mapping[str, Any]) -> str:
    """Why :func:`proxy_from_baseline` gave no proxy for ``run``, in words."""
    n = len(((run.get("record") or {}).get("metric") or {}).get("history") or [])
    if n < MIN_EVALUATIONS:
        return (f"its {n} evaluation(s) are too few for a proxy level ({MIN_EVALUATIONS} "
                "needed; evaluation is kept under a quarter of training time)")
    return f"none of its {n} evaluations held a level better than the first"


def decision_level(proxy: ProxyTarget, stage_budget_s: float, samples_per_s: float
                   ) -> tuple[float, float, float]:
    """``(level, seconds, samples)`` for the batch stage's decision runs, which train the
    stage's incumbent plan at ``samples_per_s`` (often faster than the baseline the proxy
    came from, e.g. after the hardware stage): the level the baseline's curve held by
    ``DECISION_RUN_SHARE x stage_budget_s`` seconds of *that* speed, in samples; at least
    its :data:`MIN_DECISION_EVALUATION`-th evaluation and its first one
    :data:`MIN_DECISION_PROGRESS` of the way from its first value to the proxy level, held (a
    level runs reach in a step or two is start-up, not learning) and, above that floor, at most
    :data:`DECISION_MAX_FRACTION` of its samples to the proxy level (so the re-check is at
    a later level). The floor wins over that cap: a short baseline curve then gets a
    decision level closer to its proxy level, never one from its start-up."""
    rows = [[s, v] for s, _, v in proxy.curve]
    at = proxy.samples_to(proxy.level) or rows[-1][0]  # the level is one it held
    start = rows[0][1] + MIN_DECISION_PROGRESS * (proxy.level - rows[0][1])
    held = (s for s, _ in rows  # level_at only improves with samples: the first is the one
            if (got := level_at(rows, s, proxy.direction)) is not None
            and holds(got, start, proxy.direction))
    floor = max(rows[min(MIN_DECISION_EVALUATION, len(rows)) - 1][0], next(held, at))
    want = DECISION_RUN_SHARE * stage_budget_s * max(samples_per_s, 0.0)
    samples = max(min(want, DECISION_MAX_FRACTION * at), floor)
    level = level_at(rows, samples, proxy.direction)
    if level is None:  # before the first evaluation: its level
        samples, level = rows[0]
    return float(level), float(samples) / samples_per_s if samples_per_s > 0 else 0.0, \
        float(samples)


def holds(value: float, level: float, direction: str) -> bool:
    """Whether ``value`` is at ``level`` or past it, in the metric's ``direction``."""
    return value >= level if direction == "max" else value <= level


def sign(direction: str) -> str:
    return ">=" if direction == "max" else "<="


def describe(proxy: ProxyTarget) -> list[str]:
    """What was measured and what was extrapolated, in words (for notes and the report)."""
    m, s = proxy.metric, sign(proxy.direction)
    lines = [f"measured: the baseline trained {proxy.trained_s:.0f} s and did not reach "
             f"{m} {s} {proxy.target:g}; it held {m} {s} {proxy.level:.4g} (the proxy target) "
             f"after {proxy.level_at_s:.0f} s."]
    ext = proxy.extrapolation
    if ext is None:
        lines.append("extrapolated: nothing (no learning curve fits the baseline's "
                     "evaluations), so the time to the real target is not known.")
    elif ext.get("seconds") is None and ext.get("reachable"):
        low = ext.get("seconds_low")
        lines.append(f"extrapolated: the baseline's fitted learning curve levels off short of "
                     f"{m} {s} {proxy.target:g} (asymptote {ext['curve']['a']:.4g}), but "
                     f"{ext['reachable']:.0%} of its bootstrap refits reach it"
                     + (f", the earliest after about {low:.0f} s" if low is not None else "")
                     + ": a curve this short does not say when, or whether, it gets there.")
    elif ext.get("seconds") is None:
        lines.append(f"extrapolated: the baseline's fitted learning curve levels off short of "
                     f"{m} {s} {proxy.target:g} (asymptote {ext['curve']['a']:.4g}) and none "
                     "of its bootstrap refits reach it: at this batch size and LR it may never "
                     "get there.")
    elif ext["reach"] > MAX_REACH:
        lines.append(f"extrapolated: nothing; the baseline's fitted learning curve reaches "
                     f"{m} {s} {proxy.target:g} only {ext['reach']:.0f}x beyond its last "
                     f"evaluation, too far to estimate (figures are given to {MAX_REACH:.0f}x).")
    else:
        hi = ext.get("seconds_high")
        hi_s = f"{hi:.0f}" if hi is not None else "inf"
        lines.append(f"extrapolated: the baseline's learning curve (power law with offset, "
                     f"{ext['curve']['n']} evaluations) reaches {m} {s} {proxy.target:g} after "
                     f"about {ext['seconds']:.0f} s of training (95% CI {ext['seconds_low']:.0f}"
                     f"-{hi_s}), {ext['reach']:.1f}x beyond the last measured point; the "
                     "interval covers the evaluations' noise, not a wrong curve shape.")
    return lines


def record_of(proxy: ProxyTarget, points: int = 40) -> dict[str, Any]:
    """``proxy`` as the tune record keeps it: its fields, :func:`describe`'s ``words``, and
    ``fitted``, the fitted curve as ``[seconds, value]`` points from its first fitted
    evaluation to just past the extrapolated time to the target (at most
    :data:`PLOT_REACH` x the measured samples), for the report to draw without fitting."""
    out = {**proxy.to_dict(), "words": describe(proxy), "fitted": []}
    ext = proxy.extrapolation
    if ext is None or proxy.samples_per_s <= 0:
        return out
    c = ext["curve"]
    curve = Curve(**{k: c[k] for k in Curve.__dataclass_fields__})
    goal = ext.get("samples") or math.inf
    end = min(max(goal * 1.05, curve.last), PLOT_REACH * curve.last)
    out["fitted"] = [[float(x) / proxy.samples_per_s, curve.at(float(x))]
                     for x in np.geomspace(curve.first, end, points)]
    return out


def extrapolate_config(rows: Sequence[Sequence[float]], proxy: ProxyTarget,
                       samples_per_s: float) -> Extrapolation | None:
    """A configuration's time to the real target from its runs' curves (``[samples,
    seconds, value]`` rows, several runs pooled) at its measured ``samples_per_s``."""
    pts = [[r[0], r[2]] for r in rows if len(r) >= 3 and math.isfinite(float(r[2]))]
    return extrapolate(pts, proxy.target, proxy.direction, samples_per_s)
