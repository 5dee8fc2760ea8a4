"""Benchmark: tuned vs baseline time to target, for every built-in workload.

For each workload this runs the real command ``perfpilot tune WORKLOAD --budget B --out
DIR`` (a fresh study) and reports what its final check measured: the baseline plan
against the tuned plan in paired, interleaved runs to the workload's target (round ``r``
of both arms on seed ``seed + r``, order A B | B A | ...; training seconds to the target,
evaluation excluded), and in an interleaved throughput A/B. Ratios and their 95%
intervals come from ``perfpilot.measure.compare_samples`` inside the tuner; this script
measures nothing itself except the command's wall time. Nothing is compared across runs
made at different times, so the ratios hold on a shared machine.

    .venv/bin/python benchmarks/tuned.py                      # digits, charlm, augmented
    .venv/bin/python benchmarks/tuned.py --workloads digits --budget-digits 90s
    .venv/bin/python benchmarks/tuned.py --quick            # digits, 150 s

Prints a table and writes ``benchmarks/results/tuned.json`` (results of workloads not run
this time are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _context import Context, Section, header  # noqa: E402
from _fmt import cell, generic_table, label, load_str, records, scalars  # noqa: E402
from _records import load_tune_record  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "tuned.json"
# Enough for the stages plus the final check's 5 paired rounds to the target (charlm's
# baseline needs ~40 s of training per run on 2 quiet cores).
BUDGETS = {"digits": "3m", "charlm": "12m", "augmented": "9m"}


def tune(name: str, budget: str, out: Path) -> dict[str, Any]:
    args = [sys.executable, "-c", "from perfpilot.cli import run_cli; run_cli()", "tune",
            name, "--budget", budget, "--out", str(out)]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=7200)
    res: dict[str, Any] = {"workload": name, "budget": budget, "command":
                           f"perfpilot tune {name} --budget {budget} --out DIR",
                           "wall_s": round(time.perf_counter() - t0, 1),
                           "exit_code": proc.returncode, "load_avg_start": load,
                           "load_avg_end": os.getloadavg()[0],
                           "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if proc.returncode != 0 or not (out / "record.json").is_file():
        return {**res, "stderr_tail": proc.stderr[-2000:]}
    figures = load_tune_record(out / "record.json")
    return {**res, **figures.summary, **figures.final_check}


def table(results: list[dict[str, Any]]) -> str:
    rows = ["| workload | budget | baseline → tuned time to target (s) | speedup (95% CI) |"
            " throughput speedup (95% CI) | verdict | plan changes |",
            "|---|---|---|---|---|---|---|"]

    def ratio(d: dict[str, Any] | None) -> str:
        if not d or d.get("ratio") is None:
            return "not measured"
        return f"{d['ratio']:.2f}x ({d['ci_low']:.2f}–{d['ci_high']:.2f})"

    for r in results:
        if r.get("verdict") == "unchanged":
            rows.append(f"| {r['workload']} | {r['budget']} | baseline kept: {r.get('claim')} "
                        "| 1.00x (nothing to compare) | | unchanged | |")
            continue
        if r.get("exit_code"):
            rows.append(f"| {r['workload']} | {r['budget']} | failed (exit {r['exit_code']}) "
                        "| | | | |")
            continue
        b, t = r.get("baseline_ttt_s") or {}, r.get("tuned_ttt_s") or {}
        ttt = (f"{b['median']:.1f} → {t['median']:.1f}" if b.get("median") is not None
               and t.get("median") is not None
               else f"not measured: {r.get('time_to_target_skipped', '?')}")
        changes = ", ".join(f"{k} {v[0]}→{v[1]}" for k, v in (r.get("changes") or {}).items())
        rows.append(f"| {r['workload']} | {r['budget']} | {ttt} | "
                    f"{ratio(r.get('time_to_target'))} | {ratio(r.get('throughput'))} | "
                    f"{r.get('verdict')} | {changes} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default="digits,charlm,augmented")
    for name, budget in BUDGETS.items():
        p.add_argument(f"--budget-{name}", default=budget)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="digits only, budget 150s")
    args = p.parse_args(argv)
    if args.quick:
        args.workloads, args.budget_digits = "digits", "150s"
    names = args.workloads.split(",")
    unknown = [n for n in names if n not in BUDGETS]
    if unknown:
        p.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(BUDGETS)}")
    old = json.loads(args.out.read_text()).get("results", []) if args.out.is_file() else []
    results = [r for r in old if r["workload"] not in names]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            budget = getattr(args, f"budget_{name}")
            print(f"[{time.strftime('%H:%M:%S')}] perfpilot tune {name} --budget {budget}",
                  file=sys.stderr, flush=True)
            results.append(tune(name, budget, Path(tmp) / name))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"benchmark": "tuned", "results": results},
                                           indent=1) + "\n")
    order = {n: i for i, n in enumerate(BUDGETS)}
    results.sort(key=lambda r: order.get(r["workload"], 99))
    print(table(results))
    print(f"wrote {args.out}")
    return 0 if all(r.get("exit_code") == 0 for r in results) else 1


# ---------------------------------------------------------------- docs/benchmarks.md


TUNED_COLUMNS: list[tuple[str, tuple[str, ...], str]] = [
    ("workload", ("workload", "name"), ""),
    ("budget", ("budget_s", "budget"), "s"),
    ("baseline time to target", ("baseline", "baseline_time_to_target_s",
                                 "baseline_ttt_s"), "s"),
    ("tuned time to target", ("tuned", "tuned_time_to_target_s", "tuned_ttt_s"), "s"),
    ("speedup, time to target", ("speedup", "time_to_target_speedup", "ttt_speedup",
                                 "time_to_target"), "x"),
    ("speedup, throughput", ("throughput_speedup", "throughput"), "x"),
    ("verdict", ("verdict",), ""),
    ("plan changes", ("changes", "plan_changes"), "changes"),
]


TUNED_DETAILS = (("status", ""), ("exit_code", ""), ("wall_s", "s"),
                 ("tuning_elapsed_s", "s"), ("trials", ""),
                 ("baseline_samples_per_s", ""), ("tuned_samples_per_s", ""),
                 ("claim", ""), ("command", "cmd"))


def section(ctx: Context) -> list[str]:
    doc = ctx.results.get("tuned")
    out = header(ctx, "Tuned vs baseline, time to target per workload", "tuned", "tuned.py",
                 doc)
    if doc is None or (isinstance(doc, dict) and "_error" in doc):
        return out
    out += ["Each workload: `perfpilot tune` with the budget shown, then its final check: "
            "the baseline against the tuned plan in paired, interleaved runs to the "
            "workload's target (median seconds with 95% intervals; speedup = baseline / "
            "tuned, median of paired ratios with its 95% interval) and an interleaved "
            "throughput A/B.", ""]
    rows = records(doc, ("workloads", "rows", "results"), "workload")
    if not rows:
        out += ["(no per-workload rows found in tuned.json)", ""]
    else:
        known = {k for _, keys, _ in TUNED_COLUMNS for k in keys} | {
            k for k, _ in TUNED_DETAILS}
        skip = {"plan", "baseline_plan", "stages", "stderr_tail", "load_avg_start",
                "load_avg_end", "loadavg_start", "loadavg_end", "measured_at"}
        out += [generic_table(rows, TUNED_COLUMNS, skip=known | skip, always=tuple(
            h for h, _, _ in TUNED_COLUMNS[:5])), ""]
        for r in rows:
            name = r.get("workload") or r.get("name") or "?"
            bits = []
            for k, kind in TUNED_DETAILS:
                if r.get(k) is None:
                    continue
                v = f"`{r[k]}`" if kind == "cmd" else cell(r[k], k)
                bits.append(f"{label(k)} {v}")
            bits.append("load average " + load_str(
                r.get("load_avg_start", r.get("loadavg_start")),
                r.get("load_avg_end", r.get("loadavg_end"))))
            if r.get("measured_at"):
                bits.append(f"measured {r['measured_at']}")
            if r.get("stderr_tail"):
                bits.append(f"stderr: {str(r['stderr_tail'])[-200:]!r}")
            out.append(f"- {name}: " + "; ".join(bits))
        out.append("")
    if isinstance(doc, dict):
        out += [*scalars(doc, ("benchmark",)), ""]
    return out


SECTION = Section(order=30, files=("tuned",), render=section)


if __name__ == "__main__":
    sys.exit(main())
