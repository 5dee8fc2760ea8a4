"""Benchmark: the hardware and loader stages on each built-in workload.

For every workload: run ``perfpilot tune WORKLOAD --only hardware,loader`` (in process,
the same code path as the CLI) with a fixed budget, then measure the chosen plan against
the workload's baseline in a separate interleaved A/B (two live Trainers, paired chunks,
median speedup with a bootstrap interval). When nothing changed, the same A/B runs the
baseline against itself (an A/A check of the noise floor).

Prints one table and writes ``benchmarks/results/hardware.json``. The machine is shared:
the load average at start and end is recorded next to the figures.

    .venv/bin/python benchmarks/hardware.py                      # all, 150 s each
    .venv/bin/python benchmarks/hardware.py --workloads augmented --stages loader \
        --out benchmarks/results/hardware_loader_only.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from _context import Context, Section, header, readable
from _fmt import Doc, cell, changes_str, num, secs, share, table, times

RESULTS = Path(__file__).resolve().parent / "results" / "hardware.json"


def tune(workload: Any, stages_: list[str], budget_s: float,
         horizon_s: float | None) -> dict[str, Any]:
    from perfpilot.tune.alone import run_stages

    t0 = time.perf_counter()
    stages = run_stages(workload, stages_, budget_s, horizon_s=horizon_s,
                        on_message=lambda m: print(f"    {m}", file=sys.stderr, flush=True))
    plan = stages[-1]["result"].plan
    return {"plan": plan, "tuning_s": time.perf_counter() - t0, "stages": stages}


def verify(workload: Any, plan: Any, pairs: int) -> dict[str, Any]:
    """Baseline (A) against the chosen plan (B), interleaved, in fresh Trainers."""
    from perfpilot.tune.abtest import ab_test, probe, size_settings

    step_s = probe(workload, workload.baseline, 6)["step_s"]
    settings = size_settings(step_s, chunk_s=0.5, pairs=pairs, max_pairs=pairs)
    t0 = time.perf_counter()
    r = ab_test(workload, workload.baseline, plan, settings)
    return {"verdict": r.verdict, "speedup": r.ratio, "ci_low": r.ci_low, "ci_high": r.ci_high,
            "confidence": r.confidence, "pairs": r.n, "chunk_steps": r.chunk_steps,
            "settle_steps": r.settle_steps, "baseline_step_s": r.a.step_s,
            "chosen_step_s": r.b.step_s, "baseline_data_share": r.a.data_share,
            "chosen_data_share": r.b.data_share, "verify_s": time.perf_counter() - t0,
            "samples_per_s": {"baseline": 1 / _median(r.a.s_per_sample),
                              "chosen": 1 / _median(r.b.s_per_sample)}}


def _median(xs: Any) -> float:
    import statistics

    return statistics.median(xs)


def stage_summary(stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in stages:
        res = s["result"]
        out.append({
            "stage": res.name, "summary": res.summary, "budget_s": s["budget_s"],
            "elapsed_s": s["elapsed_s"],
            "candidates": [{k: e.get(k) for k in ("label", "fate", "reason", "speedup",
                                                  "ci_low", "ci_high")}
                           for e in res.evidence.get("candidates", [])],
            "final": res.evidence.get("final"),
        })
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="digits,charlm,augmented")
    ap.add_argument("--stages", default="hardware,loader")
    ap.add_argument("--out", type=Path, default=RESULTS, help="result JSON path")
    ap.add_argument("--budget", type=float, default=150.0, help="tuning seconds per workload")
    ap.add_argument("--horizon", type=float, default=None,
                    help="expected run length in seconds (default: time to target)")
    ap.add_argument("--pairs", type=int, default=10, help="pairs of the verification A/B")
    args = ap.parse_args()

    from perfpilot.devices import discover
    from perfpilot.workload import load_workload

    load0 = os.getloadavg()
    rows = []
    for name in args.workloads.split(","):
        print(f"== {name}: tuning {args.stages} for {args.budget:.0f} s", file=sys.stderr)
        w = load_workload(name)
        tuned = tune(w, args.stages.split(","), args.budget, args.horizon)
        plan = tuned["plan"]
        changes = {k: [a, b] for k, (a, b) in w.baseline.diff(plan).items()}
        print(f"== {name}: verifying {changes or 'baseline (A/A)'}", file=sys.stderr)
        check = verify(w, plan, args.pairs)
        rows.append({"workload": name, "stages_run": args.stages, "changes": changes,
                     "plan": plan.to_dict(),
                     "tuning_s": tuned["tuning_s"], "verification": check,
                     "stages": stage_summary(tuned["stages"])})
        _print_row(rows[-1])
    doc = {"benchmark": "hardware", "budget_s_per_workload": args.budget,
           "horizon_s": args.horizon, "loadavg_start": load0, "loadavg_end": os.getloadavg(),
           "machine": discover().to_dict(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    tmp.replace(args.out)
    print(f"\nload average {load0[0]:.1f} -> {os.getloadavg()[0]:.1f} (2-core machine shared "
          f"with other jobs); wrote {args.out}")
    return 0


def _print_row(row: dict[str, Any]) -> None:
    v = row["verification"]
    changes = ", ".join(f"{k}={b}" for k, (a, b) in row["changes"].items()) or "(baseline kept)"
    print(f"{row['workload']:<10} {changes:<45} {v['speedup']:.2f}x "
          f"[{v['ci_low']:.2f}, {v['ci_high']:.2f}] {v['verdict']:<6} "
          f"tuned in {row['tuning_s']:.0f} s", flush=True)


# ---------------------------------------------------------------- docs/benchmarks.md


def _hardware_table(doc: Doc) -> str:
    rows = []
    for r in doc.get("rows") or []:
        v = r.get("verification") or {}
        sps = v.get("samples_per_s") or {}
        rows.append([
            r.get("workload"),
            r.get("stages_run") or ",".join(s.get("stage", "?") for s in r.get("stages") or [])
            or "–",
            changes_str(r.get("changes")),
            times(v.get("speedup"), v.get("ci_low"), v.get("ci_high")),
            v.get("verdict", "–"), cell(v.get("pairs")),
            f"{num(sps.get('baseline'))} → {num(sps.get('chosen'))}",
            f"{share(v.get('baseline_data_share'))} → {share(v.get('chosen_data_share'))}",
            secs(r.get("tuning_s"))])
    return table(["workload", "stages", "changes", "speedup (95% CI)", "verdict", "pairs",
                  "samples/s baseline → chosen", "data wait share", "tuning"], rows)


def section(ctx: Context) -> list[str]:
    out: list[str] = ["## Hardware and loader stages: speedup of the chosen plan", "",
                      "Each row: the stages tuned within the budget, then the chosen plan "
                      "against the baseline in a separate interleaved A/B (paired chunks, "
                      "median speedup, 95% bootstrap interval; an A/A check when nothing "
                      "changed).", ""]
    for name, title in (("hardware", "Hardware and loader stages (`hardware.json`)"),
                        ("hardware_loader_only", "Loader stage alone "
                         "(`hardware_loader_only.json`)")):
        doc = ctx.results.get(name)
        out += [f"### {title}", ""] + header(ctx, "", name, "hardware.py", doc)[2:]
        if not readable(doc):
            continue
        out += [f"Budget {secs(doc.get('budget_s_per_workload'))} per workload"
                + (f", horizon {secs(doc['horizon_s'])}" if doc.get("horizon_s") else "")
                + ".", "", _hardware_table(doc), ""]
        for r in doc.get("rows") or []:
            for s in r.get("stages") or []:
                out.append(f"- {r.get('workload')} / {s.get('stage')}: {s.get('summary')} "
                           f"({secs(s.get('elapsed_s'))} of {secs(s.get('budget_s'))})")
        out.append("")
    return out


SECTION = Section(order=50, files=("hardware", "hardware_loader_only"), render=section)


if __name__ == "__main__":
    sys.exit(main())
