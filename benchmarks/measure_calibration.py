"""Calibration of perfpilot.measure on synthetic samples (no wall time is measured).

Prints and writes ``benchmarks/results/measure_calibration.json``:

* false "faster"/"slower" verdicts for identical A and B (nominal: 5%), fixed and adaptive;
* coverage of the median interval of :func:`summarize` (nominal: 95%);
* power: how often a real speedup is called "faster", and the rounds adaptive mode used;
* drift: a 3x machine slowdown during the run, paired (per-round ratios) vs unpaired.

Noise is lognormal with sigma 0.10 (about 10% spread, typical of a shared CPU machine).
Run: ``python benchmarks/measure_calibration.py [--quick]``.
"""

from __future__ import annotations

import inspect
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _context import Context, Section, header, readable
from _fmt import is_num, num, secs, share, table

from perfpilot.measure import compare, compare_samples, median_ci

SIGMA = 0.10
N_BOOT = 500


def false_positive_fixed(rng: np.random.Generator, n: int, trials: int) -> float:
    wrong = 0
    for _ in range(trials):
        c = compare_samples(rng.lognormal(0, SIGMA, n), rng.lognormal(0, SIGMA, n),
                            n_boot=N_BOOT, seed=rng)
        wrong += c.verdict != "same"
    return wrong / trials


def _measure(rng: np.random.Generator, center: float):
    return lambda: float(center * rng.lognormal(0, SIGMA))


def adaptive(rng: np.random.Generator, effect: float, trials: int,
             max_repeats: int = 40) -> tuple[float, float, float]:
    """(share called faster, share called slower, mean rounds) for B = A / effect."""
    faster = slower = rounds = 0
    for _ in range(trials):
        c = compare(_measure(rng, effect), _measure(rng, 1.0), repeats=5,
                    max_repeats=max_repeats, warmup=0, n_boot=N_BOOT, seed=rng)
        faster += c.verdict == "faster"
        slower += c.verdict == "slower"
        rounds += c.n
    return faster / trials, slower / trials, rounds / trials


def coverage(rng: np.random.Generator, n: int, trials: int) -> float:
    hit = 0
    for _ in range(trials):
        lo, hi = median_ci(rng.lognormal(0, 0.3, n), n_boot=N_BOOT, seed=rng)
        hit += lo <= 1.0 <= hi
    return hit / trials


def power_fixed(rng: np.random.Generator, effect: float, n: int, trials: int) -> float:
    hits = 0
    for _ in range(trials):
        c = compare_samples(effect * rng.lognormal(0, SIGMA, n), rng.lognormal(0, SIGMA, n),
                            n_boot=N_BOOT, seed=rng)
        hits += c.verdict == "faster"
    return hits / trials


def drift(rng: np.random.Generator, trials: int) -> dict[str, float]:
    hits = {"paired": 0, "unpaired": 0}
    for _ in range(trials):
        d = np.linspace(1.0, 3.0, 12)
        a, b = d * 1.05 * rng.lognormal(0, 0.02, 12), d * rng.lognormal(0, 0.02, 12)
        for paired in (True, False):
            c = compare_samples(a, b, paired=paired, n_boot=N_BOOT, seed=rng)
            hits["paired" if paired else "unpaired"] += c.verdict == "faster"
    return {k: v / trials for k, v in hits.items()}


def main() -> None:
    quick = "--quick" in sys.argv
    t = 200 if quick else 1000
    rng = np.random.default_rng(2024)
    start = time.perf_counter()
    res = {
        "sigma": SIGMA, "n_boot": N_BOOT, "trials": t,
        "false_positive_fixed": {n: false_positive_fixed(rng, n, t) for n in (5, 6, 10, 20)},
        "false_positive_adaptive_5_to_40": adaptive(rng, 1.0, t // 2)[:2],
        "coverage_median_ci": {n: coverage(rng, n, t) for n in (6, 10, 20, 50)},
        "power_fixed_n10": {e: power_fixed(rng, e, 10, t // 2) for e in (1.05, 1.10, 1.20)},
        "power_adaptive_5_to_40": {e: adaptive(rng, e, t // 4) for e in (1.05, 1.10, 1.20)},
        "drift_detects_5pct": drift(rng, t // 4),
    }
    res["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(res, indent=2))
    out = Path(__file__).parent / "results" / "measure_calibration.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")


# ---------------------------------------------------------------- docs/benchmarks.md


def _nominal() -> float | None:
    try:
        from perfpilot.measure import compare_samples

        return float(inspect.signature(compare_samples).parameters["confidence"].default)
    except Exception:  # noqa: BLE001
        return None


def _wilson(p: Any, n: Any, conf: float | None) -> str:
    if not (is_num(p) and is_num(n) and n > 0 and conf):
        return ""
    z = statistics.NormalDist().inv_cdf(1 - (1 - conf) / 2)
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return f" [{share(c - h)}, {share(c + h)}]"


def section(ctx: Context) -> list[str]:
    doc = ctx.results.get("measure_calibration")
    out = header(ctx, "Statistics calibration (`perfpilot.measure`)", "measure_calibration",
                 "measure_calibration.py", doc)
    if not readable(doc):
        return out
    conf, t = _nominal(), doc.get("trials")
    out += [f"Synthetic samples, lognormal noise σ = {num(doc.get('sigma'))}, "
            f"{num(doc.get('n_boot'))} bootstrap resamples, {num(t)} trials per cell "
            f"(fewer for the adaptive and power cells); {secs(doc.get('seconds'))} to run. "
            "Brackets: Wilson 95% interval of the rate over the trials.", ""]
    fp = doc.get("false_positive_fixed") or {}
    cov = doc.get("coverage_median_ci") or {}
    nominal_fp = share(1 - conf) if conf else "–"
    if fp:
        out += [table(["rounds", "false \"faster\"/\"slower\" on identical A, B",
                       "nominal"], [[n, share(p) + _wilson(p, t, conf), nominal_fp]
                                    for n, p in fp.items()]), ""]
    afp = doc.get("false_positive_adaptive_5_to_40")
    if isinstance(afp, list) and len(afp) >= 2 and all(is_num(x) for x in afp[:2]):
        out += [f"Adaptive mode (5 to 40 rounds), identical A and B: "
                f"{share(afp[0] + afp[1])} false verdicts ({share(afp[0])} \"faster\", "
                f"{share(afp[1])} \"slower\"); nominal {nominal_fp}.", ""]
    if cov:
        out += [table(["samples", "coverage of the median's interval", "nominal"],
                      [[n, share(p) + _wilson(p, t, conf), share(conf)]
                       for n, p in cov.items()]), ""]
    pw = doc.get("power_fixed_n10") or {}
    pa = doc.get("power_adaptive_5_to_40") or {}
    if pw or pa:
        rows = []
        for e in dict.fromkeys([*pw, *pa]):
            a = pa.get(e) or [None, None, None]
            rows.append([f"{e}x", share(pw.get(e)), share(a[0]), share(a[1]), num(a[2])])
        out += [table(["true speedup", "called faster, 10 rounds",
                       "called faster, adaptive", "called slower, adaptive",
                       "mean rounds, adaptive"], rows), ""]
    dr = doc.get("drift_detects_5pct") or {}
    if dr:
        out += ["A machine slowing down 3x during the run, B 5% faster: detected "
                + ", ".join(f"{share(v)} of the time {k}" for k, v in dr.items()) + ".", ""]
    return out


SECTION = Section(order=70, files=("measure_calibration",), render=section)


if __name__ == "__main__":
    main()
