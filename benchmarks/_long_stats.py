"""Statistics of ``long_runs.py``: median time to target, the paired ratio of two arms
with its bootstrap, and the error of the baseline's extrapolated time to target."""

from __future__ import annotations

import math
import random
import statistics
from typing import Any

BOOT = 2000


def median_ttt(runs: list[dict[str, Any]]) -> float | None:
    """The median time to target; None when any run missed it (censored)."""
    if not runs or not all(r["reached"] for r in runs):
        return None
    return statistics.median(r["ttt_s"] for r in runs)


def paired_ratio(num_runs: list[dict[str, Any]], den_runs: list[dict[str, Any]],
                 seed: int = 0) -> dict[str, Any]:
    """Ratio of median times (``num`` / ``den``) with a 95% percentile bootstrap over the
    seeds both ran (pairs resampled together, so a round's load cancels)."""
    by = {r["seed"]: r for r in den_runs}
    pairs = [(r, by[r["seed"]]) for r in num_runs if r["seed"] in by]
    out: dict[str, Any] = {"pairs": len(pairs), "ratio": None, "ci_low": None,
                           "ci_high": None, "per_seed": []}
    if not pairs:
        return out
    if not all(a["reached"] and b["reached"] for a, b in pairs):
        out["censored"] = [{"seed": a["seed"], "num_reached": a["reached"],
                            "den_reached": b["reached"]} for a, b in pairs]
        return out
    xs = [a["ttt_s"] for a, _ in pairs]
    ys = [b["ttt_s"] for _, b in pairs]
    out["ratio"] = statistics.median(xs) / statistics.median(ys)
    out["per_seed"] = [x / y for x, y in zip(xs, ys, strict=True)]
    if len(pairs) >= 2:
        rng, boot = random.Random(seed), []
        for _ in range(BOOT):
            idx = [rng.randrange(len(pairs)) for _ in pairs]
            boot.append(statistics.median(xs[i] for i in idx)
                        / statistics.median(ys[i] for i in idx))
        boot.sort()
        out["ci_low"], out["ci_high"] = boot[int(0.025 * BOOT)], boot[int(0.975 * BOOT) - 1]
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
