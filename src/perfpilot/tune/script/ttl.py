"""Time to the baseline's loss: how changes that alter training (batch size, learning rate)
are judged on a script.

A larger batch makes each step cheaper per sample but each sample may teach less, so
throughput alone would mislead. The criterion is the one of the batch stage for
workloads, applied to a window of real runs: take the training loss the baseline reaches
at the end of its window (``level``: the mean of its last ``span`` step losses) and the
wall time it took (from its first training step); the candidate, run from the same seed,
must reach that level sooner. Each step's loss is smoothed by a moving mean over the same
number of *samples* in both arms (``span`` baseline steps, ``span / k`` candidate steps
for a batch ``k`` times larger), so a noisier small-batch curve is not favoured.

Rows are the runner's loss rows ``[step, loss, t_s, samples]`` (``t_s``: seconds since
the first training step started).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MIN_SPAN = 3


def span_for(rows: int) -> int:
    """Steps to smooth over in the baseline: an eighth of its window, at least 3."""
    return max(MIN_SPAN, rows // 8)


def _moving(values: Sequence[float], span: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= span:
            acc -= values[i - span]
        out.append(acc / min(i + 1, span))
    return out


def _usable(rows: Sequence[Sequence[float]]) -> list[Sequence[float]]:
    return [r for r in rows if len(r) >= 3 and math.isfinite(float(r[1]))
            and math.isfinite(float(r[2]))]


def target_level(baseline: Sequence[Sequence[float]]) -> tuple[float, float, int] | None:
    """``(level, seconds, span)``: the baseline's smoothed loss at the end of its window,
    when its smoothed curve first reached it, and the smoothing span; None when it has
    fewer than ``2 * MIN_SPAN`` timed losses."""
    rows = _usable(baseline)
    if len(rows) < 2 * MIN_SPAN:
        return None
    span = span_for(len(rows))
    level = _moving([float(r[1]) for r in rows], span)[-1]
    t = time_to(rows, level, span)
    return (level, t, span) if t is not None else None


def time_to(candidate: Sequence[Sequence[float]], level: float, span: int) -> float | None:
    """Seconds until the candidate's smoothed loss first reaches ``level`` (None: never
    within its run). The first ``span`` steps are not counted: a mean of fewer losses is
    not comparable."""
    rows = _usable(candidate)
    smooth = _moving([float(r[1]) for r in rows], span)
    for i, (r, s) in enumerate(zip(rows, smooth, strict=True)):
        if i + 1 >= span and s <= level:
            return max(float(r[2]), 1e-9)
    return None


def candidate_span(span: int, batch_ratio: float) -> int:
    """The candidate's smoothing span: the same samples as ``span`` baseline steps."""
    return max(MIN_SPAN, round(span / batch_ratio)) if batch_ratio > 0 else span
