"""Statistics behind every decision perfpilot makes: repeat, summarize, compare.

Rules (DESIGN.md, "Measurement rules") and how this module keeps them:

* **Warm up, then repeat.** :func:`repeat` and :func:`compare` discard ``warmup`` calls
  before timing; nothing is decided on one sample (:data:`MIN_SAMPLES`, :data:`MIN_ROUNDS`).
* **Median and a confidence interval.** :func:`summarize` reports the median with a
  percentile-bootstrap interval (not BCa: the jackknife that BCa needs is degenerate for
  the median, and percentile intervals are exactly symmetric under swapping A and B),
  widened to at least the interpolated sign-test interval, because the bootstrap of a
  median alone under-covers at small n (see :func:`sign_test_interval`).
* **Interleave.** :func:`compare` runs rounds in the order A B | B A | A B | ... so that
  drift and "who runs second" hit both sides equally (:func:`round_order`).
* **Ratios, not absolute times.** A :class:`Comparison` is about the speedup of B over A:
  for paired (interleaved) samples it is the median over rounds of the per-round ratio
  ``a_i / b_i``, so drift common to a round cancels; the interval bootstraps over rounds.
* **Decide only when the interval says so.** ``verdict`` is ``"faster"`` only when the
  whole interval lies above ``1 + min_effect``, ``"slower"`` only when it lies below
  ``1 / (1 + min_effect)``, and ``"same"`` otherwise (keep the simpler choice).

Randomness and time are injectable (``seed`` may be an int or a ``numpy`` Generator;
``clock`` any ``() -> float``) so results are reproducible and tests never sleep. With the
default fixed seed a decision depends only on the samples, which keeps resumed tuning
runs deterministic (see :mod:`perfpilot.tune.stage`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from perfpilot.record import StatSummary

Verdict = Literal["faster", "slower", "same"]
StopReason = Literal["", "fixed", "decided", "equivalent", "max_repeats", "max_time"]

MIN_SAMPLES = 2  # summarize(): an interval needs a spread
MIN_ROUNDS = 5  # comparisons: below 5, no median interval reaches ~95% (1 - 2**(1 - n))
DEFAULT_BOOT = 2000
_BLOCK_ELEMENTS = 1_000_000  # bootstrap in blocks so long runs don't allocate n_boot * n


@dataclass(frozen=True)
class Comparison:
    """B relative to A. ``ratio`` > 1 means B is better (faster for costs, higher otherwise).

    ``ratio``/``ci_low``/``ci_high`` are the speedup of B over A and its interval at level
    ``confidence``; ``n`` is the number of rounds (paired) or the smaller sample count
    (unpaired); ``a``/``b`` summarize each side. ``stop_reason`` says why an adaptive
    :func:`compare` stopped (empty for :func:`compare_samples`).
    """

    verdict: Verdict
    ratio: float
    ci_low: float
    ci_high: float
    a: StatSummary
    b: StatSummary
    n: int
    confidence: float = 0.95
    min_effect: float = 0.0
    paired: bool = True
    lower_is_better: bool = True
    stop_reason: StopReason = ""

    @property
    def equivalent(self) -> bool:
        """True when the whole interval lies inside ``[1/(1+min_effect), 1+min_effect]``:
        B is shown to differ from A by less than ``min_effect`` (needs ``min_effect > 0``)."""
        band = 1.0 + self.min_effect
        return self.min_effect > 0 and self.ci_low >= 1.0 / band and self.ci_high <= band

    @property
    def decided(self) -> bool:
        """Whether more samples would not change the answer: a verdict or equivalence."""
        return self.verdict != "same" or self.equivalent

    def describe(self) -> str:
        """One line for humans, e.g. ``B is 1.23x faster than A (95% CI 1.10-1.37, 8 rounds)``."""
        words = {"faster": "better", "slower": "worse"}
        word = self.verdict if self.lower_is_better else words.get(self.verdict, "")
        factor = self.ratio if self.verdict == "faster" else 1.0 / self.ratio
        head = (f"B is {_num(factor)}x {word} than A" if self.verdict != "same"
                else f"B is not distinguishable from A (ratio {_num(self.ratio)}x)")
        unit = "rounds" if self.paired else "samples each"
        return (f"{head} ({self.confidence * 100:.4g}% CI {_num(self.ci_low)}-"
                f"{_num(self.ci_high)}, {self.n} {unit})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Comparison:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["a"], kw["b"] = StatSummary.from_dict(d["a"]), StatSummary.from_dict(d["b"])
        return cls(**kw)


def _num(x: float) -> str:
    """Ratios for people: 3 decimals near 1, fewer for large factors."""
    return f"{x:.3f}" if x < 10 else f"{x:.1f}" if x < 1000 else f"{x:,.0f}"


# ---------------------------------------------------------------- timing


def repeat(fn: Callable[[], Any], *, warmup: int = 1, repeats: int = 5,
           clock: Callable[[], float] = time.perf_counter,
           sync: Callable[[], None] | None = None) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed; return seconds.

    ``sync`` (e.g. ``torch.cuda.synchronize``) runs before each clock read, so queued
    device work is counted in the call that queued it.
    """
    _check_count("warmup", warmup, 0)
    _check_count("repeats", repeats, 1)
    for _ in range(warmup):
        fn()
    return [_timed_call(fn, clock, sync) for _ in range(repeats)]


def timed(fn: Callable[[], Any], *, clock: Callable[[], float] = time.perf_counter,
          sync: Callable[[], None] | None = None) -> Callable[[], float]:
    """Turn ``fn`` into a measure function for :func:`compare`: one call -> its seconds."""
    return lambda: _timed_call(fn, clock, sync)


def _timed_call(fn: Callable[[], Any], clock: Callable[[], float],
                sync: Callable[[], None] | None) -> float:
    if sync is not None:
        sync()
    start = clock()
    fn()
    if sync is not None:
        sync()
    return clock() - start


def round_order(index: int) -> tuple[str, str]:
    """Which side runs first in round ``index``: A B, B A, A B, ... (A B B A A B ...)."""
    return ("a", "b") if index % 2 == 0 else ("b", "a")


# ---------------------------------------------------------------- summaries


def summarize(samples: Sequence[float], *, confidence: float = 0.95,
              n_boot: int = DEFAULT_BOOT, seed: Any = 0) -> StatSummary:
    """Mean, median and a percentile-bootstrap interval of the median.

    Needs at least :data:`MIN_SAMPLES` finite samples; raises ``ValueError`` otherwise.
    """
    x = _as_samples(samples, "samples", MIN_SAMPLES)
    lo, hi = median_ci(x, confidence=confidence, n_boot=n_boot, seed=seed)
    return StatSummary(mean=float(x.mean()), median=float(np.median(x)),
                       ci_low=lo, ci_high=hi, n=int(x.size))


def median_ci(samples: Sequence[float], *, confidence: float = 0.95,
              n_boot: int = DEFAULT_BOOT, seed: Any = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of the median at level ``confidence``."""
    x = _as_samples(samples, "samples", MIN_SAMPLES)
    _check_level(confidence, n_boot)
    lo, hi = _median_interval(x, _boot_medians(x, n_boot, _rng(seed)), confidence)
    return float(lo), float(hi)


# ---------------------------------------------------------------- comparisons


def compare_samples(a: Sequence[float], b: Sequence[float], *, paired: bool = True,
                    lower_is_better: bool = True, confidence: float = 0.95,
                    min_effect: float = 0.0, n_boot: int = DEFAULT_BOOT,
                    seed: Any = 0) -> Comparison:
    """Compare B with A from samples already taken (positive costs or rates).

    ``paired``: ``a[i]`` and ``b[i]`` come from the same interleaved round; the ratio is
    the median of per-round ratios and the bootstrap resamples rounds, so drift shared by
    a round cancels. Unpaired: ``median(a) / median(b)`` with independent resampling.
    For costs (``lower_is_better``) the ratio is a/b, for rates b/a: > 1 means B is better.
    Raises ``ValueError`` for fewer than :data:`MIN_ROUNDS` samples, non-positive or
    non-finite values, or unequal lengths when paired.
    """
    xa = _as_samples(a, "a", MIN_ROUNDS, positive=True)
    xb = _as_samples(b, "b", MIN_ROUNDS, positive=True)
    _check_level(confidence, n_boot)
    if not (isinstance(min_effect, (int, float)) and 0 <= min_effect < math.inf):
        raise ValueError(f"min_effect must be a finite number >= 0, got {min_effect!r}")
    if paired and xa.size != xb.size:
        raise ValueError(f"paired samples need equal lengths, got {xa.size} and {xb.size}")
    # Work in logs: ratios become differences and swapping A and B exactly inverts them.
    sign = 1.0 if lower_is_better else -1.0
    la, lb = np.log(xa), np.log(xb)
    rng = _rng(seed)
    if paired:
        d = sign * (la - lb)
        est = float(np.median(d))
        log_ci = _median_interval(d, _boot_medians(d, n_boot, rng), confidence)
    else:
        est = sign * float(np.log(np.median(xa)) - np.log(np.median(xb)))
        boot = sign * (np.log(_boot_medians(xa, n_boot, rng))
                       - np.log(_boot_medians(xb, n_boot, rng)))
        log_ci = _percentile(boot, confidence)
    lo, hi = (float(math.exp(v)) for v in log_ci)
    return Comparison(
        verdict=verdict_of(lo, hi, min_effect), ratio=math.exp(est), ci_low=lo, ci_high=hi,
        a=summarize(xa, confidence=confidence, n_boot=n_boot, seed=seed),
        b=summarize(xb, confidence=confidence, n_boot=n_boot, seed=seed),
        n=int(min(xa.size, xb.size)), confidence=confidence, min_effect=float(min_effect),
        paired=paired, lower_is_better=lower_is_better,
    )


def verdict_of(ci_low: float, ci_high: float, min_effect: float = 0.0) -> Verdict:
    """The verdict rule: the whole interval must clear ``1 + min_effect`` (or its inverse)."""
    threshold = 1.0 + min_effect
    if ci_low > threshold:
        return "faster"
    if ci_high < 1.0 / threshold:
        return "slower"
    return "same"


def compare(measure_a: Callable[[], float], measure_b: Callable[[], float], *,
            repeats: int = 5, warmup: int = 1, lower_is_better: bool = True,
            confidence: float = 0.95, min_effect: float = 0.0,
            max_repeats: int | None = None, max_time_s: float | None = None,
            clock: Callable[[], float] = time.perf_counter, n_boot: int = DEFAULT_BOOT,
            seed: Any = 0, on_round: Callable[[int, float, float], None] | None = None,
            ) -> Comparison:
    """Measure A and B interleaved (A B | B A | ...) and compare them (paired).

    ``measure_x()`` returns one sample: a cost in seconds by default (see :func:`timed`),
    or a rate with ``lower_is_better=False``. ``warmup`` interleaved rounds are discarded.

    Fixed mode (``max_repeats`` is None): exactly ``repeats`` rounds. Adaptive mode
    (``max_repeats`` set): looks at doubling round counts up to ``max_repeats`` (see
    :func:`look_schedule`) and stops at the first look that is decided (a verdict, or
    equivalence when ``min_effect > 0``), at ``max_repeats``, or as soon as ``max_time_s``
    seconds (by ``clock``, warm-up included) have passed after the first look's rounds.
    Each look uses level ``1 - (1 - confidence) / looks`` (Bonferroni) so peeking does not
    inflate false verdicts; the returned ``confidence`` is that level. ``on_round(i, a_i,
    b_i)`` is called after each timed round (for progress bars). ``measure_x`` exceptions
    propagate; a non-finite or non-positive sample raises ``ValueError`` naming the side.
    """
    _check_count("repeats", repeats, MIN_ROUNDS)
    _check_count("warmup", warmup, 0)
    if max_repeats is not None and (isinstance(max_repeats, bool) or
                                    not isinstance(max_repeats, int) or max_repeats < repeats):
        raise ValueError(f"max_repeats must be an integer >= repeats ({repeats}), "
                         f"got {max_repeats!r}")
    if max_time_s is not None and not max_time_s > 0:
        raise ValueError(f"max_time_s must be > 0, got {max_time_s!r}")
    _check_level(confidence, n_boot)
    looks, level = look_schedule(repeats, max_repeats, confidence)
    start = clock()
    for i in range(warmup):
        _run_round(i, measure_a, measure_b, check=False)
    a: list[float] = []
    b: list[float] = []
    out_of_time = False
    for look in looks:
        while len(a) < look and not out_of_time:
            # The order continues across warm-up so the whole run reads A B B A A B ...
            sa, sb = _run_round(warmup + len(a), measure_a, measure_b, check=True)
            a.append(sa)
            b.append(sb)
            if on_round is not None:
                on_round(len(a) - 1, sa, sb)
            out_of_time = (max_time_s is not None and len(a) >= looks[0]
                           and clock() - start >= max_time_s)
        result = compare_samples(a, b, paired=True, lower_is_better=lower_is_better,
                                 confidence=level, min_effect=min_effect, n_boot=n_boot,
                                 seed=seed)
        reason = _stop_reason(result, look == looks[-1], out_of_time, max_repeats)
        if reason:
            return dataclasses.replace(result, stop_reason=reason)
    raise AssertionError("unreachable: the last look always stops")  # pragma: no cover


def look_schedule(repeats: int, max_repeats: int | None,
                  confidence: float = 0.95) -> tuple[list[int], float]:
    """Round counts at which :func:`compare` looks, and the per-look confidence level.

    Looks double from ``repeats`` up to ``max_repeats``; each uses the Bonferroni level
    ``1 - (1 - confidence) / len(looks)``. The first look moves up to the fewest rounds
    that can reach that level (:func:`min_rounds_for`), else it would decide on too little.
    """
    if max_repeats is None or max_repeats <= repeats:
        return [repeats], confidence
    looks = _doubling(repeats, max_repeats)
    for _ in range(8):  # fixed point: the level depends on the looks and vice versa
        level = 1.0 - (1.0 - confidence) / len(looks)
        first = min(max(repeats, min_rounds_for(level)), max_repeats)
        new = _doubling(first, max_repeats)
        if new == looks:
            break
        looks = new
    return looks, 1.0 - (1.0 - confidence) / len(looks)


def _doubling(first: int, last: int) -> list[int]:
    looks = [first]
    while looks[-1] * 2 < last:
        looks.append(looks[-1] * 2)
    return looks + [last] if last > first else looks


def _stop_reason(result: Comparison, last_look: bool, out_of_time: bool,
                 max_repeats: int | None) -> StopReason:
    if max_repeats is None:
        return "fixed"
    if result.verdict != "same":
        return "decided"
    if result.equivalent:
        return "equivalent"
    if last_look:
        return "max_repeats"
    return "max_time" if out_of_time else ""


def _run_round(index: int, measure_a: Callable[[], float], measure_b: Callable[[], float],
               *, check: bool) -> tuple[float, float]:
    got: dict[str, float] = {}
    for side in round_order(index):
        value = (measure_a if side == "a" else measure_b)()
        if check:
            _check_sample(value, f"measure_{side}")
        got[side] = float(value) if check else 0.0
    return got["a"], got["b"]


# ---------------------------------------------------------------- internals


def _boot_medians(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of ``n_boot`` resamples of ``x``, computed in bounded-memory blocks."""
    n = x.size
    rows = max(1, _BLOCK_ELEMENTS // n)
    out = np.empty(n_boot)
    for first in range(0, n_boot, rows):
        k = min(rows, n_boot - first)
        out[first:first + k] = np.median(x[rng.integers(0, n, size=(k, n))], axis=1)
    return out


def _median_interval(x: np.ndarray, boot: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile-bootstrap interval of the median, never narrower than the sign-test one.

    The percentile bootstrap of a median under-covers for small n (about 92% at n=10 for
    a nominal 95%); the distribution-free order-statistic interval cannot, so the union
    keeps the nominal level while large samples still get the bootstrap's shape.
    """
    lo, hi = _percentile(boot, confidence)
    flo, fhi = sign_test_interval(x, confidence)
    return float(min(lo, flo)), float(max(hi, fhi))


def sign_test_interval(samples: Sequence[float], confidence: float) -> tuple[float, float]:
    """Distribution-free interval of the median: order statistics chosen by the sign test,
    interpolated (Hettmansperger & Sheather 1986) so the level is close to exact rather
    than conservative. Below :func:`min_rounds_for` samples it is the full range."""
    xs = np.sort(np.asarray(samples, dtype=float))
    n = xs.size
    k = order_stat_rank(n, confidence)
    lo, hi = xs[k], xs[n - 1 - k]
    if n > 1000 or k + 1 > n - 2 - k:  # large n: interpolation changes nothing visible
        return float(lo), float(hi)
    outer = _sign_coverage(n, k)
    if outer < confidence:
        return float(lo), float(hi)
    inner = _sign_coverage(n, k + 1)
    share = (outer - confidence) / (outer - inner)
    j = k + 1  # 1-based rank of the outer order statistic
    lam = (n - j) * share / (j + (n - 2 * j) * share)
    return (float((1 - lam) * lo + lam * xs[k + 1]),
            float((1 - lam) * hi + lam * xs[n - 2 - k]))


def _sign_coverage(n: int, k: int) -> float:
    """Coverage of ``[x_(k), x_(n-1-k)]`` (0-based) for the median: 1 - 2 P(Bin(n,1/2) <= k)."""
    cdf, pmf = 0.0, 0.5**n
    for i in range(k + 1):
        cdf += pmf
        pmf *= (n - i) / (i + 1)
    return 1.0 - 2.0 * cdf


def order_stat_rank(n: int, confidence: float) -> int:
    """0-based rank k such that ``[x_(k), x_(n-1-k)]`` (sorted) covers the median with
    probability >= ``confidence`` for any continuous distribution (sign test).

    When n is too small for the level (below :func:`min_rounds_for`), returns 0: the
    full range, whose coverage is only ``1 - 2**(1 - n)``.
    """
    tail = (1.0 - confidence) / 2
    if n > 1000:  # normal approximation of Binomial(n, 1/2)
        from statistics import NormalDist

        z = NormalDist().inv_cdf(1.0 - tail)
        return max(0, math.floor((n - 1) / 2 - z * math.sqrt(n) / 2))
    # The interval misses low when at most k samples fall below the median: P(Bin <= k).
    cdf, pmf, best = 0.0, 0.5**n, 0
    for k in range(n // 2):
        cdf += pmf
        if cdf > tail:
            break
        best = k
        pmf *= (n - k) / (k + 1)
    return best


def min_rounds_for(confidence: float) -> int:
    """Fewest samples for which some median interval reaches ``confidence``."""
    return max(MIN_SAMPLES, math.ceil(1.0 - math.log2(1.0 - confidence) - 1e-9))


def _percentile(boot: np.ndarray, confidence: float) -> np.ndarray:
    alpha = 1.0 - confidence
    return np.quantile(boot, [alpha / 2, 1 - alpha / 2])


def _rng(seed: Any) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _as_samples(samples: Any, name: str, minimum: int, positive: bool = False) -> np.ndarray:
    try:
        x = np.asarray(samples, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: samples must be numbers") from None
    if x.ndim != 1:
        raise ValueError(f"{name}: samples must be a flat sequence, got shape {x.shape}")
    if x.size < minimum:
        raise ValueError(f"{name}: need at least {minimum} samples to decide anything, "
                         f"got {x.size}")
    bad = ~np.isfinite(x) | ((x <= 0) if positive else False)
    if bad.any():
        i = int(np.argmax(bad))
        hint = (": a ratio needs positive values (a cost of 0 means the clock is too coarse "
                "for the work; time more work per sample)") if positive else ""
        raise ValueError(f"{name}: sample {i} is {x[i]!r}{hint}")
    return x


def _check_sample(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name}() returned {type(value).__name__}, expected a number")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}() returned {value!r}; samples must be finite and > 0 "
                         "(a cost of 0 means the clock is too coarse for the work)")


def _check_count(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_level(confidence: float, n_boot: int) -> None:
    if not (isinstance(confidence, (int, float)) and 0 < confidence < 1):
        raise ValueError(f"confidence must be between 0 and 1, got {confidence!r}")
    _check_count("n_boot", n_boot, 100)
