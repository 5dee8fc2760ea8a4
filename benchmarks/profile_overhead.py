"""Benchmark: what `perfpilot profile`'s probes cost the profiled program, vs py-spy.

Each example script in ``examples/bottlenecks/`` runs as

* ``plain``     ``python script.py``
* ``perfpilot`` ``python -m perfpilot.probes.bootstrap script.py`` with the default probes
  (stack sampler at ``--rate`` Hz, torch hooks, profiler window, memory, calibrations,
  raw profile written) -- the child ``perfpilot profile`` starts;
* ``py-spy``    ``py-spy record -r RATE -o /dev/null -- python script.py`` (when py-spy
  is installed and allowed to attach; ``pip install py-spy``);

interleaved round by round (the order rotates each round) so drift on this shared
machine hits every arm alike. One sample is the whole process's wall time; its CPU time
(user + system of the process tree, py-spy's own process included) is recorded too,
being far less sensitive to other load on a shared machine. Per example,
the overhead is ``profiled / plain - 1`` from :func:`perfpilot.measure.compare_samples`
(median of paired per-round ratios, 95% bootstrap interval); the summary is the median
over examples. ``after startup`` divides the same extra seconds by the part of the run
after startup (wall minus interpreter start and imports, from the profile record): the
overhead a long run would see.

The parent's analysis and report (``perfpilot profile`` after the child exits) is timed
separately, once per example, as a fixed cost.

    .venv/bin/python benchmarks/profile_overhead.py                  # all CPU examples
    .venv/bin/python benchmarks/profile_overhead.py --rounds 7 --examples clean,small_batch

A longer run (``clean.py`` for 10 epochs, ``--long``) is reported apart: there the fixed
costs (runner start, profiler window, calibrations, writing the profile) are amortized
and what remains is the per-second cost of the sampler and hooks.

Prints a table and writes ``benchmarks/results/profile_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _context import Context, Section, header, readable
from _fmt import num, pct, secs, table

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "bottlenecks"
RESULTS = ROOT / "benchmarks" / "results" / "profile_overhead.json"
DEFAULT_EXAMPLES = ("clean", "dataloader_bound", "small_batch", "python_hotspot",
                    "inefficient_membership", "repeated_concat", "thread_oversubscription",
                    "eval_dominates", "io_in_loop", "grad_in_eval")
LONG_RUN = "clean:10"  # clean.py for 10 epochs: the steady-state cost of a longer run


def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process tree) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         timeout=600)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {res.returncode}: {res.stderr[-500:]!r}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def pyspy_usable(script: Path, rate: int) -> str | None:
    """None when py-spy can record here; else why not."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.path.exists(exe):
        return "py-spy not installed (pip install py-spy)"
    try:
        run([exe, "record", "-r", str(rate), "-o", os.devnull, "--", sys.executable, "-c",
             "import time\nt = time.time()\nwhile time.time() - t < 0.5: pass"])
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        return f"py-spy cannot record here: {e}"
    return None


def arms(script: Path, args: list[str], rate: int, out: str, pyspy: bool) -> dict[str, Any]:
    env = dict(os.environ)
    from perfpilot.probes.threads import usable_cores

    env["PERFPILOT_PROFILE"] = json.dumps({"out": out, "interval_s": 1.0 / rate,
                                           "usable_cores": usable_cores()})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"),
                                                    env.get("PYTHONPATH", "")) if p)
    py = sys.executable
    table = {
        "plain": lambda: run([py, str(script), *args]),
        "perfpilot": lambda: run([py, "-m", "perfpilot.probes.bootstrap", str(script), *args],
                                 env),
    }
    if pyspy:
        exe = shutil.which("py-spy") or str(Path(py).parent / "py-spy")
        table["py-spy"] = lambda: run([exe, "record", "-r", str(rate), "-o", os.devnull,
                                       "--", py, str(script), *args])
    return table


def analysis_cost(raw_path: str) -> float:
    """Seconds the parent spends turning the raw profile into findings and reports."""
    from rich.console import Console

    from perfpilot.commands.profile import analyze
    from perfpilot.render.profile_console import print_profile
    from perfpilot.render.profile_html import profile_page

    with open(raw_path) as f:
        raw = json.load(f)
    t0 = time.perf_counter()
    record, _ = analyze(raw)
    print_profile(record, Console(file=open(os.devnull, "w"), width=100))  # noqa: SIM115
    profile_page(record)
    return time.perf_counter() - t0


def after_startup_s(raw_path: str) -> float:
    from perfpilot.probes.assemble import build_record

    with open(raw_path) as f:
        rec = build_record(json.load(f))
    return max(rec.timeline.total_s - rec.timeline.startup_s, 1e-3)


def interleaved(table: dict[str, Any], rounds: int,
                after: Any = None) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and CPU seconds per arm: every arm once per round, the order rotating each
    round (drift hits every arm alike). ``after(name, round)`` runs after each run."""
    names = list(table)
    samples: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            wall, used = table[n]()
            samples[n].append(wall)
            cpu[n].append(used)
            if after is not None:
                after(n, r)
    return samples, cpu


def paired_overhead(base: list[float], other: list[float], prefix: str = "") -> dict[str, float]:
    """``other / base - 1`` as the median of paired per-round ratios, with its 95%
    bootstrap interval (:func:`perfpilot.measure.compare_samples`)."""
    from perfpilot.measure import compare_samples

    c = compare_samples(base, other, paired=True)
    return {f"{prefix}overhead": 1 / c.ratio - 1, f"{prefix}ci_low": 1 / c.ci_high - 1,
            f"{prefix}ci_high": 1 / c.ci_low - 1}


def bench_example(name: str, rounds: int, rate: int, pyspy: bool) -> dict[str, Any]:
    stem, *args = name.split(":")
    script = EXAMPLES / f"{stem}.py"
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "raw.json")
        table = arms(script, args, rate, raw, pyspy)
        names = list(table)
        for n in names:  # warm-up round: page cache, .pyc files
            table[n]()
        samples, cpu = interleaved(table, rounds)
        fixed = analysis_cost(raw)
        steady = after_startup_s(raw)
    out: dict[str, Any] = {"samples_s": samples, "cpu_s": cpu, "analysis_s": fixed,
                           "after_startup_s": steady}
    plain_med = statistics.median(samples["plain"])
    for n in names[1:]:
        extra_s = statistics.median(samples[n]) - plain_med
        out[n] = {**paired_overhead(samples["plain"], samples[n]), "extra_s": extra_s,
                  "overhead_after_startup": extra_s / steady,
                  **paired_overhead(cpu["plain"], cpu[n], "cpu_")}
    out["plain_median_s"] = plain_med
    return out


def _pct(mid: float, lo: float, hi: float) -> str:
    return f"{100 * mid:+.1f}% [{100 * lo:+.1f},{100 * hi:+.1f}]"


def _median(results: dict[str, Any], arm: str, key: str) -> float:
    return statistics.median(r[arm][key] for r in results.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--examples", default=",".join(DEFAULT_EXAMPLES),
                    help="comma-separated example names; NAME:ARG passes ARG to the script")
    ap.add_argument("--long", default=LONG_RUN,
                    help="an extra, longer run reported apart ('' to skip)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rate", type=int, default=100)
    ap.add_argument("--no-pyspy", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS, help="result JSON path")
    args = ap.parse_args()
    names = [n.strip() for n in args.examples.split(",") if n.strip()]
    why_not = "disabled" if args.no_pyspy else pyspy_usable(EXAMPLES / "clean.py", args.rate)
    pyspy = why_not is None
    load0 = os.getloadavg()
    results: dict[str, Any] = {}
    long_result: dict[str, Any] | None = None
    print(f"{'example':24s} {'plain':>8s} {'perfpilot wall':>22s} {'perfpilot CPU':>22s}"
          + (f" {'py-spy wall':>22s} {'py-spy CPU':>22s}" if pyspy else ""))
    runs = names + ([args.long] if args.long else [])
    for name in runs:
        r = bench_example(name, args.rounds, args.rate, pyspy)
        if name == args.long:
            long_result = r
        else:
            results[name] = r
        line = f"{name:24s} {r['plain_median_s']:7.2f}s"
        for arm in ("perfpilot", "py-spy") if pyspy else ("perfpilot",):
            a = r[arm]
            line += (f" {_pct(a['overhead'], a['ci_low'], a['ci_high']):>22s}"
                     f" {_pct(a['cpu_overhead'], a['cpu_ci_low'], a['cpu_ci_high']):>22s}")
        print(line, flush=True)
    summary = {"median_overhead": _median(results, "perfpilot", "overhead"),
               "median_cpu_overhead": _median(results, "perfpilot", "cpu_overhead"),
               "median_overhead_after_startup": _median(results, "perfpilot",
                                                        "overhead_after_startup"),
               "median_analysis_s": statistics.median(r["analysis_s"]
                                                      for r in results.values())}
    if pyspy:
        summary["median_pyspy_overhead"] = _median(results, "py-spy", "overhead")
        summary["median_pyspy_cpu_overhead"] = _median(results, "py-spy", "cpu_overhead")
    print(f"\nmedian overhead of perfpilot's probes: {100 * summary['median_overhead']:+.1f}% "
          f"wall time, {100 * summary['median_cpu_overhead']:+.1f}% CPU time "
          f"({100 * summary['median_overhead_after_startup']:+.1f}% of the wall time after "
          f"startup)")
    if long_result is not None:
        lr = long_result["perfpilot"]
        summary["long_run"] = {"example": args.long, "plain_s": long_result["plain_median_s"],
                               "overhead": lr["overhead"], "ci": [lr["ci_low"], lr["ci_high"]],
                               "cpu_overhead": lr["cpu_overhead"],
                               "cpu_ci": [lr["cpu_ci_low"], lr["cpu_ci_high"]]}
        print(f"longer run ({args.long}, {long_result['plain_median_s']:.1f} s plain): "
              f"{_pct(lr['overhead'], lr['ci_low'], lr['ci_high'])} wall, "
              f"{_pct(lr['cpu_overhead'], lr['cpu_ci_low'], lr['cpu_ci_high'])} CPU")
    if pyspy:
        print(f"py-spy at the same rate: {100 * summary['median_pyspy_overhead']:+.1f}% wall, "
              f"{100 * summary['median_pyspy_cpu_overhead']:+.1f}% CPU")
    else:
        print(f"py-spy: {why_not}")
    print(f"analysis + reports after the run (parent): {summary['median_analysis_s']:.2f} s")
    out = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "profile_overhead", "rate_hz": args.rate, "rounds": args.rounds,
               "summary": summary, "examples": results, "long_run": long_result,
               "pyspy": why_not or "used",
               "machine": {"cpu_count": os.cpu_count(), "loadavg_start": load0,
                           "loadavg_end": os.getloadavg(), "python": sys.version.split()[0]},
               "finished_at": time.time()}
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(out)
    print(f"wrote {out}")


# ---------------------------------------------------------------- docs/benchmarks.md


def section(ctx: Context) -> list[str]:
    doc = ctx.results.get("profile_overhead")
    out = header(ctx, "", "profile_overhead", "profile_overhead.py", doc)[2:]
    out = ["### perfpilot's probes vs py-spy (`profile_overhead.py`)", "", *out]
    if not readable(doc):
        return out
    s = doc.get("summary") or {}
    pyspy = doc.get("pyspy")
    out += [f"Sampling at {doc.get('rate_hz', '–')} Hz, {doc.get('rounds', '–')} interleaved "
            "rounds per example; overhead = profiled / plain − 1, median of per-round ratios "
            "with its 95% bootstrap interval. py-spy: "
            f"{'measured in the same rounds' if pyspy == 'used' else pyspy}.", ""]
    summary = [["perfpilot, wall", pct(s.get("median_overhead"))],
               ["perfpilot, CPU time", pct(s.get("median_cpu_overhead"))],
               ["perfpilot, wall, per second after startup",
                pct(s.get("median_overhead_after_startup"))],
               ["parent's analysis and reports after the run",
                secs(s.get("median_analysis_s"))]]
    if "median_pyspy_overhead" in s:
        summary += [["py-spy, wall", pct(s.get("median_pyspy_overhead"))],
                    ["py-spy, CPU time", pct(s.get("median_pyspy_cpu_overhead"))]]
    lr = s.get("long_run")
    if isinstance(lr, dict):
        lo, hi = (lr.get("ci") or [None, None])[:2]
        clo, chi = (lr.get("cpu_ci") or [None, None])[:2]
        summary += [[f"longer run `{lr.get('example')}` ({secs(lr.get('plain_s'))} plain), "
                     "wall", pct(lr.get("overhead"), lo, hi)],
                    ["longer run, CPU time", pct(lr.get("cpu_overhead"), clo, chi)]]
    out += [table(["median over examples", "overhead"], summary), ""]
    ex = doc.get("examples") or {}
    arms = [a for a in ("perfpilot", "py-spy") if any(a in r for r in ex.values())]
    hdr = ["example", "plain s"]
    for a in arms:
        hdr += [f"{a} wall", f"{a} CPU"]
    rows = []
    for name, r in ex.items():
        line = [name, num(r.get("plain_median_s"))]
        for a in arms:
            x = r.get(a) or {}
            line += [pct(x.get("overhead"), x.get("ci_low"), x.get("ci_high")),
                     pct(x.get("cpu_overhead"), x.get("cpu_ci_low"), x.get("cpu_ci_high"))]
        rows.append(line)
    if rows:
        out += [table(hdr, rows), ""]
    return out


SECTION = Section(order=11, files=("profile_overhead",), render=section)


if __name__ == "__main__":
    main()
