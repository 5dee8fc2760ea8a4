"""The one place benchmarks read a ``perfpilot tune`` record (``DIR/record.json``).

``demo.py`` and ``tuned.py`` run the real command and keep a few of its figures; every
key they read from the tune record is read here, by :func:`load_tune_record`, so a change
of the record's shape (a typed ``TuneRecord``) changes this file only. Run records
(``perfpilot run --json``) are read with :meth:`perfpilot.record.RunRecord.load` where
they are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PICK = ("verdict", "ratio", "ci_low", "ci_high", "n")


@dataclass(frozen=True)
class TuneFigures:
    """What benchmarks keep of one tuning: ``summary`` (the keys ``demo.json`` and
    ``tuned.json`` share) and ``final_check`` (the final check's per-arm figures that only
    ``tuned.json`` records)."""

    summary: dict[str, Any]
    final_check: dict[str, Any]


def load_tune_record(path: Path) -> TuneFigures:
    """The figures of the tune record at ``path`` (a UserError naming the file when it is
    missing or not a tune record)."""
    from perfpilot.tune_record import TuneRecord

    rec = TuneRecord.load(path)
    final = rec.final
    ttt = final.time_to_target if final else None
    thr = final.throughput if final else None
    base = rec.baseline_plan.to_dict() if rec.baseline_plan else {}
    plan = rec.plan.to_dict() if rec.plan else {}
    summary = {
        "status": rec.status, "tuning_elapsed_s": rec.elapsed_s, "budget_s": rec.budget_s,
        "trials": len(rec.trials),
        "verdict": final.verdict if final else None, "claim": final.claim if final else None,
        "time_to_target": _picked(ttt), "throughput": _picked(thr),
        "changes": {k: [base.get(k), v] for k, v in plan.items() if base.get(k) != v},
        "stages": {s.name: {"budget_s": s.budget_s, "elapsed_s": s.elapsed_s}
                   for s in rec.stages},
    }
    check: dict[str, Any] = {}
    if ttt is not None and ttt.skipped:
        check["time_to_target_skipped"] = ttt.skipped
    for arm in ("baseline", "tuned"):  # medians of the paired runs, in seconds
        stat = getattr(ttt, arm, None) if ttt is not None else None
        if stat is not None:
            check[f"{arm}_ttt_s"] = {"median": stat.median, "ci_low": stat.ci_low,
                                     "ci_high": stat.ci_high}
    for k in ("baseline_samples_per_s", "tuned_samples_per_s"):
        if thr is not None and getattr(thr, k) is not None:
            check[k] = getattr(thr, k)
    return TuneFigures(summary, check)


def _picked(c: Any) -> dict[str, Any]:
    """The comparison's verdict, ratio, interval and rounds (all None without one)."""
    return {k: getattr(c, k, None) if c is not None else None for k in _PICK}
