"""The words of ``long_runs.py``'s figures: a paired ratio (with its censored bounds), the
oracle's line and the extrapolation's error, as docs/benchmarks.md prints them."""

from __future__ import annotations

from typing import Any

from _fmt import num, secs, times


def seeds(n: int) -> str:
    return f"{n} seed{'s' * (n != 1)}"


def ratio_str(r: dict[str, Any]) -> str:
    miss = len(r.get("censored") or [])
    if r.get("ratio") is None:
        for key, words in (("ratio_at_most", "at most"), ("ratio_at_least", "at least")):
            if r.get(key) is not None:
                return (f"{words} {num(r[key])}x over {seeds(r['pairs'])} (one arm's median "
                        "run did not reach the target within its cap; bounded by the cap)")
        return "not measured (" + (f"too many runs did not reach the target: {miss} of "
                                   f"{r['pairs']} seeds" if miss else "no paired seeds") + ")"
    ci = (f" [{num(r['ci_low'])}, inf]" if r.get("ci_high_unbounded") and r.get("ci_low")
          is not None else "")
    return (f"{times(r['ratio'], r['ci_low'], r['ci_high'])}{ci} over {seeds(r['pairs'])}"
            + (f" ({miss} with a run that did not reach the target within its cap, ranked "
               "slowest)" if miss else ""))


def oracle_str(o: dict[str, Any]) -> str:
    """The oracle's line (:func:`_long_stats.oracle`)."""
    if not o.get("seeds"):
        return "- best arm: not compared (no seed was run by every arm)."
    on = f"on seed {o['seeds'][0]}" if len(o["seeds"]) == 1 else \
        f"on seeds {', '.join(map(str, o['seeds']))}"
    if o.get("best") is None:
        return f"- best arm: none; no arm's median reached the target {on} (the seeds " \
            "every arm ran)."
    if o["best"] == "decision":
        return f"- best arm {on} (the seeds every arm ran): the decision itself."
    return f"- decision / best arm ({o['best']}, {on}, the seeds every arm ran): " \
        f"{ratio_str(o['paired'])}."


def extrapolation_str(e: dict[str, Any] | None) -> str:
    if not e or "seconds" not in e:
        return (e or {}).get("why", "–")
    s, n = e["seconds"], e["samples"]
    inside = {True: "inside", False: "outside", None: "–"}
    return (f"extrapolated {secs(s['extrapolated'])} vs measured {secs(s['measured'])} "
            f"(ratio {num(s['ratio'])}, measured {inside[s['inside']]} its interval "
            f"{secs(s['low'])}-{secs(s['high']) if s['high'] is not None else 'inf'}); in "
            f"samples ratio {num(n['ratio'])}, {inside[n['inside']]} its interval; "
            f"reach {num(e.get('reach'))}x")
