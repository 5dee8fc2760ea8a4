"""Goodput = throughput x statistical efficiency (Pollux/AdaptDL), from measured parts.

McCandlish et al.'s model: training to a given loss at batch ``B`` needs
``E = E_min (1 + B / B_noise)`` samples, so relative to the baseline batch ``B0`` a batch
``B`` needs ``(B_noise + B) / (B_noise + B0)`` times the samples, and its statistical
efficiency is the inverse, ``(B_noise + B0) / (B_noise + B)``.

B_noise grows as the loss falls, so it is measured along the baseline's run; this module
averages the samples ratio over that run (trapezoid rule over samples seen, constant after
the last measurement), which is exact for the model when B_noise is piecewise linear in
samples. The predicted time to target of ``B`` is then
``ttt(B0) * throughput(B0) / throughput(B) * ratio(B)``.

This is a prior, not a decision: on small workloads B_simple overshoots the measured
critical batch size several-fold, which is why the batch stage validates with real runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ThroughputPoint:
    """Samples/s at one batch size: median and confidence interval of repeated windows."""

    batch_size: int
    samples_per_s: float
    ci_low: float
    ci_high: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NoisePoint:
    """B_simple measured after ``samples`` training samples (``inf``: noise dominated)."""

    samples: int
    b_simple: float


def efficiency(batch: float, b_noise: float, base_batch: float) -> float:
    """Statistical efficiency of ``batch`` relative to ``base_batch`` (1 at the baseline)."""
    if math.isinf(b_noise):
        return 1.0
    return (b_noise + base_batch) / (b_noise + batch)


def samples_ratio(batch: int, base_batch: int, profile: Sequence[NoisePoint],
                  end_samples: int | None = None) -> float:
    """Samples needed at ``batch`` over samples needed at ``base_batch``, averaged over a
    B_noise profile measured along the baseline run (which ended at ``end_samples``)."""
    if not profile:
        raise ValueError("an empty noise profile")
    pts = sorted(profile, key=lambda p: p.samples)
    ratios = [1.0 / efficiency(batch, p.b_simple, base_batch) for p in pts]
    if len(pts) == 1:
        return ratios[0]
    xs = [p.samples for p in pts]
    end = max(end_samples or xs[-1], xs[-1])
    area = sum((xs[i + 1] - xs[i]) * (ratios[i] + ratios[i + 1]) / 2 for i in range(len(xs) - 1))
    area += (end - xs[-1]) * ratios[-1]
    span = end - xs[0]
    return area / span if span > 0 else ratios[-1]


def knee(points: Sequence[ThroughputPoint], fraction: float = 0.9) -> int:
    """The smallest batch whose median throughput reaches ``fraction`` of the largest:
    beyond it, bigger batches buy little speed."""
    if not points:
        raise ValueError("no throughput points")
    best = max(p.samples_per_s for p in points)
    return min(p.batch_size for p in points if p.samples_per_s >= fraction * best)


@dataclass(frozen=True)
class GoodputPoint:
    """Prediction at one batch size (times in seconds of training, None without a ttt0)."""

    batch_size: int
    samples_per_s: float
    efficiency: float
    goodput: float
    goodput_low: float
    goodput_high: float
    predicted_ttt_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def goodput_curve(points: Sequence[ThroughputPoint], base_batch: int,
                  profile: Sequence[NoisePoint], *, end_samples: int | None = None,
                  base_ttt_s: float | None = None) -> list[GoodputPoint]:
    """Goodput at every measured batch size; ``base_batch`` must be among ``points``."""
    by_size = {p.batch_size: p for p in points}
    if base_batch not in by_size:
        raise ValueError(f"the baseline batch {base_batch} has no throughput point")
    base = by_size[base_batch]
    out = []
    for p in sorted(points, key=lambda q: q.batch_size):
        eff = 1.0 / samples_ratio(p.batch_size, base_batch, profile, end_samples)
        ttt = None
        if base_ttt_s is not None:
            ttt = base_ttt_s * base.samples_per_s / (p.samples_per_s * eff)
        out.append(GoodputPoint(p.batch_size, p.samples_per_s, eff, p.samples_per_s * eff,
                                p.ci_low * eff, p.ci_high * eff, ttt))
    return out


def top_candidates(curve: Sequence[GoodputPoint], base_batch: int, k: int) -> list[int]:
    """The ``k`` batch sizes of highest predicted goodput, the baseline excluded."""
    ranked = sorted((p for p in curve if p.batch_size != base_batch),
                    key=lambda p: (-p.goodput, p.batch_size))
    return [p.batch_size for p in ranked[:k]]
