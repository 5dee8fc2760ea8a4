"""Learning curves: fit metric vs training samples and extrapolate to a target.

A run that cannot reach its target within the tuning budget still shows how its metric
falls (or rises) with samples. :func:`fit_curve` fits the usual power law with an offset,

    metric(s) = a + sign * b * s**(-c),   b > 0, c > 0

(``sign`` +1 for a metric to minimize, -1 for one to maximize: the curve approaches the
asymptote ``a`` from the side the run starts on), by least squares over a grid of
exponents ``c`` (for each ``c`` the model is linear in ``a`` and ``b``: closed form, so the
whole grid is one vectorized step and the fit has no local minima to get stuck in).

:func:`extrapolate` turns a fit into the samples and seconds to reach a level, with a 95%
interval from a residual bootstrap (refits on the fitted curve plus resampled residuals):
the interval widens with the distance extrapolated and with the curve's noise, and when
some refits never reach the level (their asymptote is on the wrong side of it) the upper
bound is infinite. ``reach`` says how far beyond the last measured point the estimate
goes (samples to the level / last measured samples): a figure read with care beyond ~3x.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

EXPONENTS = np.geomspace(0.02, 3.0, 80)  # the grid of c
MIN_POINTS = 4
BOOTSTRAP = 300
MAX_REACH = 10.0  # describe() gives no figure further than this beyond the measured
SKIP_FRACTION = 0.05  # points before this fraction of the last one's samples: start-up


@dataclass(frozen=True)
class Curve:
    """A fitted learning curve (see the module docstring); ``sign`` is +1 (minimize) or
    -1 (maximize); ``first``/``last``: the samples of the first and last points fitted."""

    a: float
    b: float
    c: float
    sign: float
    n: int
    rmse: float
    first: float
    last: float

    def at(self, samples: float) -> float:
        return self.a + self.sign * self.b * samples ** (-self.c)

    def samples_to(self, level: float) -> float:
        """Samples at which the curve reaches ``level``: ``inf`` when its asymptote is on
        the wrong side, the first fitted point's samples when it starts past it."""
        gap = self.sign * (level - self.a)  # how far above the asymptote, in "worse" units
        if gap <= 0:
            return math.inf
        if self.b <= 0:  # a flat line: at (or past) the level from its first point
            return self.first
        return max((self.b / gap) ** (1.0 / self.c), 0.0)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Extrapolation:
    """Samples and seconds to ``level`` from a fitted curve, with 95% intervals (``inf``
    when refits never reach it); ``measured_to``: the last measured samples; ``reach``:
    samples / measured_to; ``reachable``: the share of bootstrap refits that reach it."""

    level: float
    samples: float
    samples_low: float
    samples_high: float
    seconds: float
    seconds_low: float
    seconds_high: float
    measured_to: float
    reach: float
    reachable: float
    curve: Curve

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["curve"] = self.curve.to_dict()
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in d.items()}

    def describe(self, unit: str = "s") -> str:
        """E.g. ``"412 s (95% CI 301-640), extrapolated 4.2x beyond the last measured
        point"``."""
        if not math.isfinite(self.seconds):
            return "not reached on the fitted curve (its asymptote is short of the target)"
        if self.reach > MAX_REACH:
            return (f"not estimated: the level is {self.reach:.0f}x beyond the last measured "
                    f"point (estimates are given to {MAX_REACH:.0f}x)")
        hi = "inf" if not math.isfinite(self.seconds_high) else f"{self.seconds_high:.0f}"
        return (f"{self.seconds:.0f} {unit} (95% CI {self.seconds_low:.0f}-{hi}), "
                f"extrapolated {self.reach:.1f}x beyond the last measured point")


def _fit_arrays(s: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """Least squares of ``y = a + b s**-c`` over :data:`EXPONENTS`, ``b > 0``:
    ``(a, b, c, sse)``; ``b`` is 0 (a flat line) when no exponent gives a falling curve."""
    x = s[None, :] ** (-EXPONENTS[:, None])  # grid x points
    xm, ym = x.mean(axis=1, keepdims=True), y.mean()
    dx = x - xm
    var = (dx * dx).sum(axis=1)
    b = np.where(var > 0, (dx * (y - ym)).sum(axis=1) / np.where(var > 0, var, 1.0), 0.0)
    b = np.maximum(b, 0.0)
    a = ym - b * xm[:, 0]
    sse = ((y[None, :] - a[:, None] - b[:, None] * x) ** 2).sum(axis=1)
    i = int(np.argmin(sse))
    return float(a[i]), float(b[i]), float(EXPONENTS[i]), float(sse[i])


def fit_curve(points: Sequence[Sequence[float]], direction: str) -> Curve | None:
    """Fit ``[(samples, metric), ...]`` (samples > 0; the start-up points before
    :data:`SKIP_FRACTION` of the last one are left out); None with fewer than
    :data:`MIN_POINTS`. A metric that does not improve with samples fits a flat line
    (``b = 0``, ``a`` its mean): the run has levelled off, and a level past ``a`` is
    never reached on it."""
    pts = sorted((float(p[0]), float(p[1])) for p in points
                 if p[0] and p[0] > 0 and math.isfinite(float(p[1])))
    if len(pts) < MIN_POINTS:
        return None
    last = pts[-1][0]
    kept = [p for p in pts if p[0] >= SKIP_FRACTION * last]
    pts = kept if len(kept) >= MIN_POINTS else pts[-MIN_POINTS:]
    sign = 1.0 if direction == "min" else -1.0
    s = np.array([p[0] for p in pts])
    y = sign * np.array([p[1] for p in pts])  # in "lower is better" units
    a, b, c, sse = _fit_arrays(s, y)
    return Curve(sign * a, b, c, sign, len(pts), math.sqrt(sse / len(pts)), pts[0][0], last)


def extrapolate(points: Sequence[Sequence[float]], level: float, direction: str,
                samples_per_s: float, *, boots: int = BOOTSTRAP,
                seed: int = 0) -> Extrapolation | None:
    """Samples and seconds (at ``samples_per_s``) for the curve through ``points`` to
    reach ``level``, with a residual-bootstrap 95% interval; None when no curve fits."""
    curve = fit_curve(points, direction)
    if curve is None or samples_per_s <= 0:
        return None
    pts = sorted((float(p[0]), float(p[1])) for p in points
                 if p[0] and p[0] >= curve.first and math.isfinite(float(p[1])))
    s = np.array([p[0] for p in pts])
    sign = curve.sign
    y = sign * np.array([p[1] for p in pts])
    fitted = sign * np.array([curve.at(v) for v in s])
    resid = y - fitted
    rng = np.random.default_rng(seed)
    ys = fitted[None, :] + rng.choice(resid, size=(boots, len(s)), replace=True)
    found = []
    for row in ys:
        a, b, c, _ = _fit_arrays(s, row)
        gap = sign * level - a
        found.append(math.inf if gap <= 0 else s[0] if b <= 0 else (b / gap) ** (1.0 / c))
    found.sort()
    lo = found[int(0.025 * (boots - 1))]
    hi = found[int(math.ceil(0.975 * (boots - 1)))]
    mid = curve.samples_to(level)
    return Extrapolation(
        level=level, samples=mid, samples_low=lo, samples_high=hi,
        seconds=mid / samples_per_s, seconds_low=lo / samples_per_s,
        seconds_high=hi / samples_per_s, measured_to=curve.last,
        reach=mid / curve.last if curve.last else math.inf,
        reachable=sum(math.isfinite(v) for v in found) / boots, curve=curve)


def level_at(points: Sequence[Sequence[float]], x: float, direction: str) -> float | None:
    """The level a run had reached by ``x`` (samples or seconds, the first coordinate of
    ``points``): the best of the 3-point running medians of the metric up to ``x``, so one
    lucky evaluation does not set a level the run does not hold."""
    vals = [float(p[1]) for p in points if p[0] <= x and math.isfinite(float(p[1]))]
    if not vals:
        return None
    worse = max if direction == "min" else min
    smooth = []
    for i in range(len(vals)):
        window = sorted(vals[max(0, i - 2):i + 1])
        smooth.append(window[1] if len(window) == 3 else worse(window))
    return min(smooth) if direction == "min" else max(smooth)
