"""Statistics of ``long_runs.py``: median time to target, the paired ratio of two arms
with its bootstrap, and the error of the baseline's extrapolated time to target."""

from __future__ import annotations

import math
import random
import statistics
from typing import Any

BOOT = 2000


def _ttt(r: dict[str, Any]) -> float:
    """A run's time to target; a run stopped at its cap took longer than any that reached
    it: +inf keeps its rank (the top), which is all a median needs."""
    return float(r["ttt_s"]) if r["reached"] else math.inf


def _at_least(r: dict[str, Any]) -> float:
    """A lower bound of a run's time to target: its time when it reached the target, else
    the training seconds it had when stopped at its cap (0 when not recorded)."""
    return float(r["ttt_s"] if r["reached"] else (r.get("trained_s") or 0.0))


def median_ttt(runs: list[dict[str, Any]]) -> float | None:
    """The median time to target, runs that missed it (censored at their cap) ranked
    last; None when the median is not identified (half or more of the runs missed)."""
    if not runs:
        return None
    m = statistics.median(_ttt(r) for r in runs)
    return m if math.isfinite(m) else None


def _ratio(x: float, y: float) -> float:
    """``x / y`` of medians that may be +inf (censored): both censored is counted as inf,
    against the numerator's arm (the conservative side for "no slower")."""
    if math.isinf(x):
        return math.inf
    return 0.0 if math.isinf(y) else x / y


def paired_ratio(num_runs: list[dict[str, Any]], den_runs: list[dict[str, Any]],
                 seed: int = 0) -> dict[str, Any]:
    """Ratio of median times (``num`` / ``den``) with a 95% percentile bootstrap over the
    seeds both ran (pairs resampled together, so a round's load cancels). A run that
    missed the target counts as slower than every run that reached it (:func:`_ttt`):
    the ratio is given while both medians are identified; a bootstrap bound may be 0 or
    unbounded (``ci_high`` None, ``ci_high_unbounded``: a resample whose median is a
    censored run); ``censored`` lists the pairs with a run that missed; ``per_seed`` has
    None for them. When one arm's median is censored and the other's is not, the ratio is
    bounded through the missed runs' training time at their caps: ``ratio_at_most`` (the
    denominator's median missed) or ``ratio_at_least`` (the numerator's)."""
    by = {r["seed"]: r for r in den_runs}
    pairs = [(r, by[r["seed"]]) for r in num_runs if r["seed"] in by]
    out: dict[str, Any] = {"pairs": len(pairs), "ratio": None, "ci_low": None,
                           "ci_high": None, "per_seed": []}
    if not pairs:
        return out
    if not all(a["reached"] and b["reached"] for a, b in pairs):
        out["censored"] = [{"seed": a["seed"], "num_reached": a["reached"],
                            "den_reached": b["reached"]} for a, b in pairs
                           if not (a["reached"] and b["reached"])]
    xs = [_ttt(a) for a, _ in pairs]
    ys = [_ttt(b) for _, b in pairs]
    mx, my = statistics.median(xs), statistics.median(ys)
    out["per_seed"] = [x / y if math.isfinite(x) and math.isfinite(y) else None
                       for x, y in zip(xs, ys, strict=True)]
    # One median censored: a one-sided bound. Each missed run's cap is a lower bound of
    # its time, and a median is monotone in every value, so the median with the caps in
    # their place is a lower bound of the censored median.
    if math.isfinite(mx) and not math.isfinite(my):
        if (low := statistics.median(_at_least(b) for _, b in pairs)) > 0:
            out["ratio_at_most"] = mx / low
    elif math.isfinite(my) and not math.isfinite(mx):
        out["ratio_at_least"] = statistics.median(_at_least(a) for a, _ in pairs) / my
    if not (math.isfinite(mx) and math.isfinite(my)):
        return out
    out["ratio"] = mx / my
    if len(pairs) >= 2:
        rng, boot = random.Random(seed), []
        for _ in range(BOOT):
            idx = [rng.randrange(len(pairs)) for _ in pairs]
            boot.append(_ratio(statistics.median(xs[i] for i in idx),
                               statistics.median(ys[i] for i in idx)))
        boot.sort()
        out["ci_low"], hi = boot[int(0.025 * BOOT)], boot[int(0.975 * BOOT) - 1]
        # JSON has no inf: an unbounded upper end is None with a flag
        out["ci_high"], out["ci_high_unbounded"] = (hi, False) if math.isfinite(hi) else \
            (None, True)
    return out


def extrapolation_error(proxy: dict[str, Any] | None, runs: list[dict[str, Any]]
                        ) -> dict[str, Any] | None:
    """The tune's extrapolated baseline time (and samples) to the target over the
    measured median, and whether the measured median fell inside the 95% interval."""
    ext = (proxy or {}).get("extrapolation")
    measured = median_ttt(runs)
    if ext is None:
        return {"extrapolated": None, "why": "no learning curve fits the baseline's "
                "evaluations" if proxy else "no proxy target (the baseline reached it)"}
    out: dict[str, Any] = {"reach": ext.get("reach"), "reachable": ext.get("reachable")}
    meas_samples = (statistics.median(r["samples"] for r in runs)
                    if measured is not None else None)
    for unit, m in (("seconds", measured), ("samples", meas_samples)):
        x, lo, hi = ext.get(unit), ext.get(f"{unit}_low"), ext.get(f"{unit}_high")
        hi_v = math.inf if hi is None and x is not None else hi
        out[unit] = {"extrapolated": x, "low": lo, "high": hi, "measured": m,
                     "ratio": x / m if x is not None and m else None,
                     "inside": (lo <= m <= hi_v) if None not in (x, lo, m) else None}
    return out


def oracle(arm_runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The best arm and the decision's ratio to it, on the seeds *every* arm ran.

    Why common seeds: the grid arms often run fewer seeds than the decision (one, to fit
    the time). Picking the best arm by each arm's own median and dividing medians then
    compares a 3-seed median with a 1-seed run: a digits case read "decision / best 1.07x"
    where, on the one seed both ran, the decision took 192 s and that arm 479 s. Runs that
    missed the target rank last (+inf). ``arm_runs`` must include "decision"."""
    seeds = sorted(set.intersection(*({r["seed"] for r in runs}
                                      for runs in arm_runs.values())))
    out: dict[str, Any] = {"seeds": seeds, "best": None, "best_ttt_s": None,
                           "decision_over_best": None, "paired": None}
    if not seeds:
        return out
    on = {a: [r for r in runs if r["seed"] in seeds] for a, runs in arm_runs.items()}
    medians = {a: statistics.median(_ttt(r) for r in runs) for a, runs in on.items()}
    best = min(medians, key=lambda a: (medians[a], a != "decision"))  # a tie: the decision
    if not math.isfinite(medians[best]):
        return out  # no arm reached the target on the common seeds
    paired = paired_ratio(on["decision"], on[best])
    out.update(best=best, best_ttt_s=medians[best], paired=paired,
               decision_over_best=paired["ratio"])
    return out
