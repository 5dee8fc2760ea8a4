"""Time ``perfpilot demo`` end to end (target: under 3 minutes on 2 CPU cores).

Runs the real command in a fresh directory, measures its wall time (process start to
exit, imports and report rendering included), and records what it produced: the
tuning's own elapsed time, the final check's verdict and speedups, the plan's changes,
the trial count, and the machine's cores and load (a shared machine makes the demo
slower; the load average says how busy it was).

Prints the figure and writes ``benchmarks/results/demo.json``.
Run: ``python benchmarks/demo.py [--budget 100s] [--keep DIR]``.
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

from _context import Context, Section, header, readable
from _fmt import cell, changes_str, secs, table, times
from _records import load_tune_record

TARGET_S = 180.0
RESULT = Path(__file__).parent / "results" / "demo.json"


def run_demo(out: Path, budget: str | None) -> tuple[float, subprocess.CompletedProcess[str]]:
    args = [sys.executable, "-c", "from perfpilot.cli import run_cli; run_cli()", "demo",
            "--out", str(out)]
    if budget:
        args += ["--budget", budget]
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    return time.perf_counter() - t0, proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", help="passed to perfpilot demo (default: the demo's)")
    parser.add_argument("--keep", type=Path, help="write the demo's files here")
    args = parser.parse_args()
    from perfpilot.execute import usable_cores

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp) / "demo"
        wall, proc = run_demo(out, args.budget)
        result: dict[str, Any] = {
            "benchmark": "demo", "command": "perfpilot demo", "wall_s": round(wall, 2),
            "target_s": TARGET_S, "under_target": proc.returncode == 0 and wall < TARGET_S,
            "exit_code": proc.returncode, "usable_cores": usable_cores(),
            "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        if proc.returncode == 0:
            result.update(load_tune_record(out / "record.json").summary)
        else:
            result["stderr_tail"] = proc.stderr[-2000:]
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"perfpilot demo: {wall:.1f} s wall on {result['usable_cores']} cores "
          f"(target < {TARGET_S:.0f} s: {'ok' if result['under_target'] else 'MISSED'}); "
          f"load average {load_before[0]:.1f} before; verdict {result.get('verdict')}")
    print(f"wrote {RESULT}")
    return 0 if proc.returncode == 0 else 1


# ---------------------------------------------------------------- docs/benchmarks.md


def section(ctx: Context) -> list[str]:
    doc = ctx.results.get("demo")
    out = header(ctx, "`perfpilot demo` wall time", "demo", "demo.py", doc)
    if not readable(doc):
        return out
    ttt, thr = doc.get("time_to_target") or {}, doc.get("throughput") or {}
    rows = [["wall time, process start to exit", secs(doc.get("wall_s"))],
            ["target", f"< {secs(doc.get('target_s'))}: "
             + ("met" if doc.get("under_target") else "not met")],
            ["exit code", cell(doc.get("exit_code"))],
            ["tuning budget / elapsed",
             f"{secs(doc.get('budget_s'))} / {secs(doc.get('tuning_elapsed_s'))}"],
            ["trials", cell(doc.get("trials"))],
            ["final check", f"{doc.get('verdict')}: {doc.get('claim')}"],
            ["time-to-target speedup", times(ttt.get("ratio"), ttt.get("ci_low"),
                                              ttt.get("ci_high"))
             + (f" ({ttt.get('verdict')}, {ttt.get('n')} rounds)" if ttt.get("n") else "")],
            ["throughput speedup", times(thr.get("ratio"), thr.get("ci_low"),
                                          thr.get("ci_high"))
             + (f" ({thr.get('verdict')}, {thr.get('n')} rounds)" if thr.get("n") else "")],
            ["plan changes", changes_str(doc.get("changes"))]]
    for st, v in (doc.get("stages") or {}).items():
        rows.append([f"stage {st}: elapsed / budget",
                     f"{secs(v.get('elapsed_s'))} / {secs(v.get('budget_s'))}"])
    if doc.get("stderr_tail"):
        rows.append(["stderr (tail)", doc["stderr_tail"][-300:]])
    return out + [table(["", "value"], rows), ""]


SECTION = Section(order=60, files=("demo",), render=section)


if __name__ == "__main__":
    sys.exit(main())
