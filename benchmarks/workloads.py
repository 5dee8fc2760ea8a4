"""Benchmark: each built-in workload's baseline throughput and time to its target.

Runs the real command ``perfpilot run WORKLOAD --until-target --json r.json`` for each
built-in workload (the baseline plan a typical user writes) and records from the
RunRecord: samples/s, the median step time and its 95% interval, the phase shares (the
``augmented`` baseline is input-bound by design: its data wait is most of the step), peak
memory, the metric reached and the training seconds to the target (evaluation excluded).
Absolute times depend on the machine and its load; the load average is recorded.

    .venv/bin/python benchmarks/workloads.py
    .venv/bin/python benchmarks/workloads.py --workloads charlm --repeats 3

Writes ``benchmarks/results/workloads.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _context import Context, Section
from _page import other_results

RESULTS = Path(__file__).resolve().parent / "results" / "workloads.json"
NAMES = ("digits", "charlm", "augmented")


def run_once(name: str, out: Path, cap_s: int) -> dict[str, Any]:
    args = [sys.executable, "-c", "from perfpilot.cli import run_cli; run_cli()", "run", name,
            "--until-target", "--time", str(cap_s), "--json", str(out)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=cap_s * 3 + 300)
    if proc.returncode != 0:
        return {"exit_code": proc.returncode, "stderr_tail": proc.stderr[-1500:]}
    from perfpilot.record import RunRecord

    r = RunRecord.load(out)
    step = sum(r.phases_s.values()) or 1.0
    return {"exit_code": 0, "samples_per_s": r.samples_per_s, "steps": r.steps,
            "step_time_s": r.step_time_s.to_dict(),
            "phase_share": {k: v / step for k, v in r.phases_s.items()},
            "peak_memory_bytes": r.peak_memory_bytes, "metric": r.metric,
            "time_to_target_s": r.time_to_target_s}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default=",".join(NAMES))
    p.add_argument("--repeats", type=int, default=1, help="runs per workload (seeds alike)")
    p.add_argument("--cap", type=int, default=300, help="most training seconds per run")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    names = args.workloads.split(",")
    if bad := [n for n in names if n not in NAMES]:
        p.error(f"unknown workload(s) {', '.join(bad)}; choose from {', '.join(NAMES)}")
    old = json.loads(args.out.read_text()).get("results", []) if args.out.is_file() else []
    results = [r for r in old if r["workload"] not in names]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            load = os.getloadavg()[0]
            runs = [run_once(name, Path(tmp) / f"{name}{i}.json", args.cap)
                    for i in range(args.repeats)]
            ok = [x for x in runs if x["exit_code"] == 0]
            ttts = [x["time_to_target_s"] for x in ok if x["time_to_target_s"] is not None]
            results.append({
                "workload": name, "command": f"perfpilot run {name} --until-target",
                "runs": runs, "load_avg_start": load, "load_avg_end": os.getloadavg()[0],
                "samples_per_s": statistics.median(x["samples_per_s"] for x in ok)
                if ok else None,
                "time_to_target_s": statistics.median(ttts) if ttts else None,
                "reached": f"{len(ttts)}/{len(runs)}",
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
            r = results[-1]
            print(f"{name}: {r['samples_per_s'] or 0:,.0f} samples/s; time to target "
                  f"{r['time_to_target_s'] if r['time_to_target_s'] is not None else '-'} s "
                  f"(reached {r['reached']}; load {load:.1f})", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "workloads", "cpu_count": os.cpu_count(),
                                    "results": results}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(r["time_to_target_s"] is not None for r in results) else 1


# ---------------------------------------------------------------- docs/benchmarks.md


def section(ctx: Context) -> list[str]:
    """The generic table of :func:`_page.other_results` (the page has no section of its
    own for these figures yet); nothing while the file is missing."""
    return other_results(ctx, "workloads") if "workloads" in ctx.results else []


SECTION = Section(order=80, files=("workloads",), render=section)


if __name__ == "__main__":
    sys.exit(main())
