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

    # Typed load (schema check, one-line errors); the figures below read its JSON form.
    rec = TuneRecord.load(path).to_dict()
    final = rec.get("final") or {}
    base, plan = rec.get("baseline_plan") or {}, rec.get("plan") or {}
    summary = {
        "status": rec["status"], "tuning_elapsed_s": rec["elapsed_s"],
        "budget_s": rec["budget_s"], "trials": len(rec["trials"]),
        "verdict": final.get("verdict"), "claim": final.get("claim"),
        "time_to_target": {k: (final.get("time_to_target") or {}).get(k) for k in _PICK},
        "throughput": {k: (final.get("throughput") or {}).get(k) for k in _PICK},
        "changes": {k: [base.get(k), v] for k, v in plan.items() if base.get(k) != v},
        "stages": {s["name"]: {"budget_s": s["budget_s"], "elapsed_s": s["elapsed_s"]}
                   for s in rec["stages"]},
    }
    check: dict[str, Any] = {}
    ttt = final.get("time_to_target") or {}
    if ttt.get("skipped"):
        check["time_to_target_skipped"] = ttt["skipped"]
    for arm in ("baseline", "tuned"):  # medians of the paired runs, in seconds
        if isinstance(ttt.get(arm), dict):
            check[f"{arm}_ttt_s"] = {k: ttt[arm].get(k) for k in ("median", "ci_low", "ci_high")}
    thr = final.get("throughput") or {}
    for k in ("baseline_samples_per_s", "tuned_samples_per_s"):
        if k in thr:
            check[k] = thr[k]
    return TuneFigures(summary, check)
