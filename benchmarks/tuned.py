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
from demo import summary  # noqa: E402  (the same reading of record.json as the demo's)

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
    res.update(summary(out))
    rec = json.loads((out / "record.json").read_text())
    ttt = (rec.get("final") or {}).get("time_to_target") or {}
    if ttt.get("skipped"):
        res["time_to_target_skipped"] = ttt["skipped"]
    for arm in ("baseline", "tuned"):  # medians of the paired runs, in seconds
        if isinstance(ttt.get(arm), dict):
            res[f"{arm}_ttt_s"] = {k: ttt[arm].get(k) for k in ("median", "ci_low", "ci_high")}
    thr = (rec.get("final") or {}).get("throughput") or {}
    for k in ("baseline_samples_per_s", "tuned_samples_per_s"):
        if k in thr:
            res[k] = thr[k]
    return res


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


if __name__ == "__main__":
    sys.exit(main())
