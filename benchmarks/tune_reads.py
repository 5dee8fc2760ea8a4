"""What ``benchmarks/tune_scripts.py`` reads back from each tuner, and its A/B arithmetic.

Pure functions (no runs), so ``tests/test_bench_tune_scripts.py`` checks them on
synthetic outputs:

* :func:`read_train_doctor`: ``train-doctor fix --json`` (its stdout, the ``fix.json`` of
  its run directory): the proven change and its ratio, every candidate it tried, the patch
  it wrote;
* :func:`read_perfpilot`: ``perfpilot tune --out DIR`` (``DIR/record.json``, format
  ``perfpilot.script-tune/1``; ``DIR/train.patch``; ``DIR/plan.json``);
* :func:`ab_summary`: the A/B of the patched script against the original, interleaved
  rounds: the median of paired per-round ratios with its 95% bootstrap interval
  (:func:`perfpilot.measure.compare_samples`, 5 rounds or more) and a sign count.

Both readers return the same shape (:func:`empty`: :data:`EMPTY` plus what the tool
said), so the table has one column per question whichever tool answered it.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

SCRIPT_TUNE_FORMAT = "perfpilot.script-tune/1"
MIN_CI_ROUNDS = 5  # perfpilot.measure.MIN_ROUNDS

EMPTY: dict[str, Any] = {
    "error": None,       # why the tool gave no result (exit code and stderr tail, ...)
    "speedup": None,     # the speedup the tool says it proved (>1: faster), or None
    "ci_low": None, "ci_high": None,
    "rounds": None,      # pairs/rounds behind that figure
    "accepted": False,   # whether the tool kept a change (a patch or a plan to use)
    "changes": {},       # what it changed: knob -> value
    "candidates": [],    # what it tried: name, changes, fate, reason, ratio, ci_low, ci_high
    "patch_path": None,  # the unified diff it wrote, if any
    "patch_empty": None,
    "launcher": {},      # perfpilot: knobs only the launcher can apply (knob -> why)
    "plan_path": None,
    "headline": None,
}


def empty(**given: Any) -> dict[str, Any]:
    """A fresh :data:`EMPTY` (its lists and dicts new, not shared) updated with ``given``."""
    out = {k: (type(v)() if isinstance(v, (list, dict)) else v) for k, v in EMPTY.items()}
    out.update(given)
    return out


def _json_tail(text: str) -> dict[str, Any] | None:
    """The JSON object a command printed last on stdout (``--json`` output), or None."""
    start = text.find("{")
    while start != -1:
        try:
            doc = json.loads(text[start:])
            return doc if isinstance(doc, dict) else None
        except ValueError:
            start = text.find("\n{", start + 1)
            start = start + 1 if start != -1 else -1
    return None


def _td_ratio(r: Any) -> tuple[Any, Any, Any, Any]:
    r = r or {}
    return r.get("point"), r.get("low"), r.get("high"), r.get("n_pairs")


def _td_changes(env: dict[str, str] | None) -> dict[str, Any]:
    """train-doctor's injected settings (``TRAIN_DOCTOR_FIX_NUM_WORKERS=2``) as knobs."""
    out: dict[str, Any] = {}
    for k, v in (env or {}).items():
        name = k.removeprefix("TRAIN_DOCTOR_FIX_").lower()
        out[name] = int(v) if str(v).isdigit() else v
    return out


def read_train_doctor(stdout: str, out_dir: Path | None = None) -> dict[str, Any]:
    """What ``train-doctor fix --json --out OUT_DIR`` said, from its stdout (or, when that
    holds no JSON, the newest ``fix.json`` under ``out_dir``)."""
    doc = _json_tail(stdout)
    if doc is None and out_dir is not None:
        found = sorted(Path(out_dir).rglob("fix.json"), key=lambda p: p.stat().st_mtime)
        doc = json.loads(found[-1].read_text()) if found else None
    if doc is None:
        return empty(error="train-doctor fix printed no JSON")
    out = empty(headline=doc.get("headline"))
    if doc.get("error"):
        err = doc["error"]
        out["error"] = err.get("hint") if isinstance(err, dict) else str(err)
    tried = list(doc.get("candidates") or [])
    if doc.get("combined"):
        tried.append(doc["combined"])
    for c in tried:
        point, low, high, _ = _td_ratio(c.get("ratio"))
        out["candidates"].append({
            "name": c.get("candidate"), "changes": _td_changes(c.get("env")),
            "fate": c.get("decision"), "reason": c.get("reason"), "ratio": point,
            "ci_low": low, "ci_high": high,
            "loss": (c.get("loss_check") or {}).get("status")})
    proven = doc.get("proven")
    if proven:
        point, low, high, n = _td_ratio(proven.get("ratio"))
        chosen = next((c for c in tried if c.get("candidate") == proven.get("candidate")), {})
        out.update(speedup=point, ci_low=low, ci_high=high, rounds=n, accepted=True,
                   changes=_td_changes(chosen.get("env")) or {"describe": proven.get("describe")})
    patch = doc.get("patch") or {}
    if patch.get("patch_path"):
        p = Path(patch["patch_path"])
        out["patch_path"] = str(p)
        out["patch_empty"] = not p.exists() or not p.read_text().strip()
    out["suggestions"] = [s.get("id") for s in doc.get("suggestions") or []]
    return out


def read_perfpilot(out_dir: Path) -> dict[str, Any]:
    """What ``perfpilot tune --out OUT_DIR -- python script.py`` wrote (``record.json``,
    ``train.patch``, ``plan.json``); an ``error`` when the record is missing or not a
    ``perfpilot.script-tune/1`` record."""
    rec_path = Path(out_dir) / "record.json"
    if not rec_path.exists():
        return empty(error=f"no {rec_path.name} in the --out folder")
    rec = json.loads(rec_path.read_text())
    if rec.get("format") != SCRIPT_TUNE_FORMAT:
        return empty(error=f"record.json format {rec.get('format')!r}, "
                           f"expected {SCRIPT_TUNE_FORMAT!r}")
    res = rec.get("result") or {}
    out = {**empty(), "speedup": res.get("speedup"), "ci_low": res.get("ci_low"),
           "ci_high": res.get("ci_high"), "rounds": res.get("rounds"),
           "changes": dict(res.get("changes") or {}), "verdict": res.get("verdict"),
           "tool_elapsed_s": rec.get("elapsed_s"),
           "candidates": [{k: c.get(k) for k in ("name", "changes", "fate", "reason", "ratio",
                                                  "ci_low", "ci_high")}
                          for c in rec.get("candidates") or []],
           "launcher": dict((rec.get("patch") or {}).get("launcher") or {})}
    out["accepted"] = bool(out["changes"]) and res.get("verdict") == "faster"
    patch = Path(out_dir) / "train.patch"
    if patch.exists():
        out["patch_path"] = str(patch)
        out["patch_empty"] = not patch.read_text().strip()
    plan = Path(out_dir) / "plan.json"
    if plan.exists():
        out["plan_path"] = str(plan)
    return out


def ab_summary(orig: list[dict[str, Any]], patched: list[dict[str, Any]]) -> dict[str, Any]:
    """The patched script against the original, from paired rounds of ``{"wall_s",
    "step_s"}``: per key, ``speedup`` = original / patched (> 1: the patched script is
    faster), the median of per-round ratios with a 95% bootstrap interval from 5 rounds,
    and ``faster_rounds`` (how many rounds the patched run was the faster)."""
    out: dict[str, Any] = {"rounds": min(len(orig), len(patched))}
    for key in ("step_s", "wall_s"):
        pairs = [(o[key], p[key]) for o, p in zip(orig, patched, strict=False)
                 if o.get(key) and p.get(key)]
        fig: dict[str, Any] = {"speedup": None, "ci_low": None, "ci_high": None,
                               "verdict": None, "faster_rounds": None, "n": len(pairs),
                               "original_median": None, "patched_median": None}
        if pairs:
            a, b = [x for x, _ in pairs], [y for _, y in pairs]
            fig.update(original_median=statistics.median(a), patched_median=statistics.median(b),
                       faster_rounds=sum(y < x for x, y in pairs))
            if len(pairs) >= MIN_CI_ROUNDS:
                from perfpilot.measure import compare_samples

                c = compare_samples(a, b, paired=True)  # a/b: > 1 when b (patched) is faster
                fig.update(speedup=c.ratio, ci_low=c.ci_low, ci_high=c.ci_high,
                           verdict=c.verdict)
            else:
                fig["speedup"] = statistics.median(x / y for x, y in pairs)
        out[key.removesuffix("_s")] = fig
    return out
