"""Time the CLI's answer to ``--help`` and to a mistake (target: under 2 s each).

Each case runs the real command in a fresh interpreter, ``--repeats`` times (default 5),
and reports the median wall time (process start to exit) with the 1-minute load average
before and after, since on a shared machine the load, not perfpilot, sets the time. The
cases are the ones issue 21 timed: ``--help``, ``run --help``, a plan with a misspelt
key, a bad ``--budget`` and a missing workload file; each must fail with exit code 2 (or
succeed, for ``--help``) without importing torch (``tests/test_cli_fast.py`` checks that).

Prints the figures and writes ``benchmarks/results/cli_startup.json``.
Run: ``python benchmarks/cli_startup.py [--repeats 5]``.
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

TARGET_S = 2.0
RESULT = Path(__file__).parent / "results" / "cli_startup.json"
# name -> (arguments, expected exit code)
CASES: dict[str, tuple[list[str], int]] = {
    "--help": (["--help"], 0),
    "run --help": (["run", "--help"], 0),
    "run digits --plan misspelt.json": (["run", "digits", "--plan", "misspelt.json"], 2),
    "tune digits --budget 5x": (["tune", "digits", "--budget", "5x"], 2),
    "profile nosuch.py:fn": (["profile", "nosuch.py:fn"], 2),
}


def time_case(args: list[str], code: int, repeats: int, cwd: str) -> list[float]:
    cmd = [sys.executable, "-c", "from perfpilot.cli import run_cli; run_cli()", *args]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=300)
        times.append(time.perf_counter() - t0)
        if proc.returncode != code:
            raise SystemExit(f"{' '.join(args)}: exit {proc.returncode}, expected {code}\n"
                             f"{proc.stderr}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    opts = parser.parse_args()
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "misspelt.json").write_text(json.dumps({"batch_sise": 64}))
        for name, (args, code) in CASES.items():
            times = time_case(args, code, opts.repeats, tmp)
            rows.append({"case": name, "median_s": round(statistics.median(times), 3),
                         "min_s": round(min(times), 3), "max_s": round(max(times), 3)})
            print(f"{name:34s} median {rows[-1]['median_s']:.2f} s "
                  f"(min {rows[-1]['min_s']:.2f}, max {rows[-1]['max_s']:.2f}; "
                  f"{opts.repeats} runs)")
    load_after = os.getloadavg()[0]
    worst = max(r["median_s"] for r in rows)
    print(f"load average (1 min) {load_before:.2f} before, {load_after:.2f} after; "
          f"{os.cpu_count()} CPUs; worst median {worst:.2f} s "
          f"({'within' if worst < TARGET_S else 'OVER'} the {TARGET_S:g} s target)")
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps({
        "target_s": TARGET_S, "repeats": opts.repeats, "cases": rows,
        "load_avg_1m": [round(load_before, 2), round(load_after, 2)],
        "cpus": os.cpu_count(), "python": sys.version.split()[0]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
