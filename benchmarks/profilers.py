"""Benchmark: `perfpilot profile` against peer profilers on the planted-bottleneck examples.

Each example script in ``examples/bottlenecks/`` (each plants one bottleneck, see its
README) runs as

* ``plain``          ``python script.py``
* ``perfpilot``      ``python -m perfpilot.probes.bootstrap script.py`` (default probes,
  stack sampler at ``--rate`` Hz) -- the child ``perfpilot profile`` starts; the parent's
  analysis (findings) runs afterwards, outside the timed run;
* ``py-spy``         ``py-spy record -r RATE -f raw -o FILE -- python script.py`` (skipped,
  with the reason, where ptrace is not permitted);
* ``pyinstrument``   ``python -m pyinstrument -r json -o FILE script.py`` (its default
  interval, 1 ms);
* ``scalene``        ``python -m scalene run --cpu-only -o FILE script.py`` (Scalene 2.x;
  1.x had ``--cpu --cli --json --outfile``);
* ``torch.profiler`` this file as a wrapper: the script runs via ``runpy`` inside
  ``torch.profiler.profile(activities=[CPU])``, then ``key_averages().table()`` (sorted by
  self CPU time) is written, as a user would print it;

interleaved round by round, the order rotating each round (drift on this shared machine
hits every arm alike). A sample is the whole run's wall time and the CPU time of the
process tree (the profiler's own process included). Overhead = median of the paired
per-round ratios ``tool / plain`` - 1, with a 95% bootstrap interval from
:func:`perfpilot.measure.compare_samples` (from 5 rounds; fewer give no interval).

**What each tool tells the user** is read from its real output of every round:

* ``top``: the tool's first-ranked item -- the leaf frame with the most self samples
  (py-spy), the frame with the most self time (pyinstrument), the line with the most CPU
  (Scalene), the operator with the most self CPU time (torch.profiler), the top finding
  (perfpilot);
* ``own``: the first-ranked item in the example's own code (time of a sample charged to
  the deepest frame in the script: a line for py-spy, a function for pyinstrument; Scalene
  profiles only the script anyway; perfpilot's ``hot_lines``); torch.profiler has no
  source locations without ``with_stack``.

An item *points at the planted bottleneck* when it is in the planted region: the marked
line(s) of the example and the body of a planted function (``PLANTED`` below, located by
source text, not line numbers), library code whose samples mostly came through the planted
lines (the stack a flame graph or call tree shows under it), or an operator only the
planted code runs; for perfpilot, when its top finding is the planted finding id. ``hit`` is the
majority over rounds. Only perfpilot names a cause and a fix (with its estimated speedup);
peers report where time went.

    .venv/bin/python benchmarks/profilers.py                 # all planted CPU examples, 5 rounds
    .venv/bin/python benchmarks/profilers.py --quick         # 2 examples, 3 rounds
    .venv/bin/python benchmarks/profilers.py --examples python_hotspot,io_in_loop --rounds 7

Prints a markdown table and writes ``benchmarks/results/profilers.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _context import Context, Section, header  # noqa: E402  (sibling modules, not a package)
from _fmt import Doc, cell, generic_table, is_num, pct, records, secs, table, times  # noqa: E402
from profile_overhead import (  # noqa: E402
    EXAMPLES,
    ROOT,
    arms,
    interleaved,
    paired_overhead,
    run,
)
from profiler_reads import (  # noqa: E402
    DEFAULT_EXAMPLES,
    PLANTED,
    describe,
    judge,
    planted_region,
    read_output,
)

RESULTS = ROOT / "benchmarks" / "results" / "profilers.json"
TOOLS = ("perfpilot", "py-spy", "pyinstrument", "scalene", "torch.profiler")
QUICK_EXAMPLES = ("inefficient_membership", "io_in_loop")  # ~22 s a round each
WRAPPER_FLAG = "--torch-profiler-wrapper"
MIN_CI_ROUNDS = 5  # perfpilot.measure.MIN_ROUNDS: fewer rounds give no 95% interval

# --- the arms --------------------------------------------------------------------------


def torch_profiler_wrapper(out: str, script: str, args: list[str]) -> None:
    """Run ``script`` as ``__main__`` under torch.profiler (CPU) and write its table."""
    import runpy

    from torch.profiler import ProfilerActivity, profile

    sys.argv = [script, *args]
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    code = 0
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 0
    Path(out).write_text(prof.key_averages().table(sort_by="self_cpu_time_total",
                                                   row_limit=15) + "\n")
    sys.exit(code)


def commands(script: Path, args: list[str], out: str, rate: int) -> dict[str, list[str]]:
    """The command line of each peer, writing its output to ``out``."""
    py = sys.executable
    pyspy = shutil.which("py-spy") or str(Path(py).parent / "py-spy")
    return {
        "py-spy": [pyspy, "record", "-r", str(rate), "-f", "raw", "-o", out, "--", py,
                   str(script), *args],
        "pyinstrument": [py, "-m", "pyinstrument", "-r", "json", "-o", out, str(script),
                         *args],
        "scalene": [py, "-m", "scalene", "run", "--cpu-only", "-o", out, str(script),
                    *(["---", *args] if args else [])],
        "torch.profiler": [py, str(Path(__file__).resolve()), WRAPPER_FLAG, out, str(script),
                           *args],
    }


def availability(tools: list[str], rate: int) -> dict[str, str | None]:
    """None per usable tool (one tiny run each, which also warms its imports), else why
    not."""
    why: dict[str, str | None] = {}
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.py"
        probe.write_text("import time\nimport torch\nt = time.time()\n"
                         "while time.time() - t < 0.3:\n    torch.ones(8).sum()\n")
        for tool in tools:
            if tool == "perfpilot":
                why[tool] = None
                continue
            out = os.path.join(tmp, "out.json")
            cmd = commands(probe, [], out, rate)[tool]
            if tool == "py-spy" and not os.path.exists(cmd[0]):
                why[tool] = "py-spy not installed (pip install py-spy)"
                continue
            try:
                run(cmd)
                why[tool] = None if os.path.exists(out) else "wrote no output"
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
                why[tool] = f"cannot run here: {str(e)[-300:]}"
    return why


def guarded(fn: Callable[[], tuple[float, float]], errors: list[str]) -> Callable[[], Any]:
    def call() -> tuple[float, float]:
        try:
            return fn()
        except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
            errors.append(str(e)[-400:])
            return float("nan"), float("nan")
    return call


def overhead(base: list[float], other: list[float], prefix: str = "") -> dict[str, Any]:
    """Paired overhead with its 95% interval; below 5 rounds the median ratio alone."""
    if len(base) >= MIN_CI_ROUNDS:
        return paired_overhead(base, other, prefix)
    mid = statistics.median(o / b for b, o in zip(base, other, strict=True)) - 1
    return {f"{prefix}overhead": mid, f"{prefix}ci_low": None, f"{prefix}ci_high": None}


def bench_example(name: str, tools: list[str], rounds: int, rate: int) -> dict[str, Any]:
    script = EXAMPLES / f"{name}.py"
    region = planted_region(script, PLANTED[name]) if name in PLANTED else None
    result: dict[str, Any] = {"planted": None if region is None else
                              {"finding": region.planted.finding, "lines": sorted(region.lines)},
                              "tools": {}}
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "perfpilot.json")
        base = arms(script, [], rate, raw, pyspy=False)
        outs = {"perfpilot": raw}
        table: dict[str, Callable[[], Any]] = {"plain": base["plain"]}
        errors: dict[str, list[str]] = {n: [] for n in ["plain", *tools]}
        for tool in tools:
            if tool != "perfpilot":
                ext = ".txt" if tool in ("py-spy", "torch.profiler") else ".json"
                outs[tool] = os.path.join(tmp, tool.replace(".", "_") + ext)  # scalene: .json
                cmd = commands(script, [], outs[tool], rate)[tool]
                base[tool] = partial(run, cmd)
            table[tool] = guarded(base[tool], errors[tool])
        table["plain"] = guarded(table["plain"], errors["plain"])
        reads: dict[str, list[dict[str, Any]]] = defaultdict(list)

        def collect(tool: str, r: int) -> None:
            if tool == "plain" or not os.path.exists(outs[tool]):
                return
            try:
                reads[tool].append(read_output(tool, outs[tool], script.name))
            except Exception as e:  # noqa: BLE001  (a tool's odd output: recorded, not fatal)
                errors[tool].append(f"could not read its output: {e!r}")
            os.remove(outs[tool])

        wall, cpu = interleaved(table, rounds, collect)
    if errors["plain"]:
        raise RuntimeError(f"{name}: the plain run failed: {errors['plain'][0]}")
    result["plain_median_s"] = statistics.median(wall["plain"])
    result["plain_cpu_median_s"] = statistics.median(cpu["plain"])
    for tool in tools:
        if errors[tool]:
            result["tools"][tool] = {"skipped": errors[tool][0]}
            continue
        result["tools"][tool] = {
            **overhead(wall["plain"], wall[tool]), **overhead(cpu["plain"], cpu[tool], "cpu_"),
            "median_s": statistics.median(wall[tool]), "samples_s": wall[tool],
            "cpu_s": cpu[tool], **judge(reads[tool], region)}
    result["samples_plain_s"] = wall["plain"]
    result["cpu_plain_s"] = cpu["plain"]
    return result


# --- report ----------------------------------------------------------------------------


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:+.0f}%"


def _console_cell(t: dict[str, Any]) -> str:
    """One table cell: wall overhead [CI], then what its top item is and whether it hits."""
    if "skipped" in t:
        return "skipped"
    ci = f" [{_pct(t['ci_low'])},{_pct(t['ci_high'])}]" if t["ci_low"] is not None else ""
    mark = {True: "yes", False: "no", None: "n/a"}
    return (f"{_pct(t['overhead'])}{ci}; top `{describe(t['top'])}` "
            f"{mark[t['top_hit']]} ({t['top_hits']}); own {mark[t['own_hit']]}")


def summarize(results: dict[str, Any], tools: list[str]) -> dict[str, Any]:
    out = {}
    for tool in tools:
        done = [r["tools"][tool] for r in results.values() if "skipped" not in r["tools"][tool]]
        if not done:
            out[tool] = {"examples": 0}
            continue
        planted = [t for t in done if t["top_hit"] is not None]
        out[tool] = {
            "examples": len(done),
            "median_overhead": statistics.median(t["overhead"] for t in done),
            "median_cpu_overhead": statistics.median(t["cpu_overhead"] for t in done),
            "top_points_at_planted": sum(bool(t["top_hit"]) for t in planted),
            "own_points_at_planted": sum(bool(t["own_hit"]) for t in planted),
            "of": len(planted),
            "names_fix": sum(t["names_fix"] for t in done),
        }
    return out


def versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("torch", "perfpilot", "pyinstrument", "scalene", "py-spy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def main() -> None:
    if sys.argv[1:2] == [WRAPPER_FLAG]:
        torch_profiler_wrapper(sys.argv[2], sys.argv[3], sys.argv[4:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--examples", default=None,
                    help="comma-separated example names (default: all planted CPU examples)")
    ap.add_argument("--rounds", type=int, default=None, help="default 5 (3 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help=f"{', '.join(QUICK_EXAMPLES)}, 3 rounds (a few minutes)")
    ap.add_argument("--rate", type=int, default=100, help="sampling rate of perfpilot and py-spy")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--out", type=Path, default=RESULTS, help="result JSON path")
    args = ap.parse_args()
    names = ([n.strip() for n in args.examples.split(",") if n.strip()] if args.examples
             else list(QUICK_EXAMPLES if args.quick else DEFAULT_EXAMPLES))
    rounds = args.rounds or (3 if args.quick else 5)
    t_start, load0 = time.perf_counter(), os.getloadavg()
    why = availability([t.strip() for t in args.tools.split(",") if t.strip()], args.rate)
    tools = [t for t, w in why.items() if w is None]
    for t, w in why.items():
        if w is not None:
            print(f"{t}: skipped, {w}")
    results: dict[str, Any] = {}
    for name in names:
        results[name] = r = bench_example(name, tools, rounds, args.rate)
        print(f"{name}: plain {r['plain_median_s']:.2f}s; " + "; ".join(
            f"{t} {_pct(r['tools'][t].get('overhead'))} "
            f"{describe(r['tools'][t].get('top'))!r}" for t in tools), flush=True)
    for name in results:  # tools missing everywhere: skipped, with the reason
        results[name]["tools"].update({t: {"skipped": w} for t, w in why.items() if w})
    summary = summarize(results, list(why))
    print("\nPer example: wall-time overhead [95% CI]; the tool's top item, whether it points "
          "at the planted bottleneck (rounds); whether its top item in the script's own "
          "code does.\n")
    print("| example | plain | " + " | ".join(why) + " |")
    print("|---|---|" + "---|" * len(why))
    for name, r in results.items():
        print(f"| {name} | {r['plain_median_s']:.1f}s | "
              + " | ".join(_console_cell(r["tools"][t]) for t in why) + " |")
    print("\n| tool | median wall overhead | median CPU overhead | top item points at planted "
          "| own-code top points at planted | names a fix |")
    print("|---|---|---|---|---|---|")
    for t, s in summary.items():
        if not s["examples"]:
            print(f"| {t} | skipped: {why[t]} | | | | |")
            continue
        print(f"| {t} | {_pct(s['median_overhead'])} | {_pct(s['median_cpu_overhead'])} | "
              f"{s['top_points_at_planted']}/{s['of']} | {s['own_points_at_planted']}/{s['of']}"
              f" | {s['names_fix']}/{s['examples']} |")
    elapsed = time.perf_counter() - t_start
    payload = {"benchmark": "profilers", "command": " ".join([Path(sys.executable).name,
                                                              *sys.argv]),
               "rounds": rounds, "rate_hz": args.rate, "pyinstrument_interval_s": 0.001,
               "commands": {t: " ".join(c) for t, c in
                            commands(Path("script.py"), [], "OUT", args.rate).items()},
               "skipped_tools": {t: w for t, w in why.items() if w},
               "summary": summary, "examples": results,
               "machine": {"cpu_count": os.cpu_count(), "loadavg_start": load0,
                           "loadavg_end": os.getloadavg(), "platform": platform.platform(),
                           "versions": versions()},
               "elapsed_s": elapsed, "finished_at": time.time()}
    out = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    from perfpilot.jsonio import write_json_atomic  # the project's one atomic writer

    write_json_atomic(out, payload)
    print(f"\n{elapsed / 60:.1f} min; load average {load0[0]:.1f} -> {os.getloadavg()[0]:.1f}; "
          f"wrote {out}")


# ---------------------------------------------------------------- docs/benchmarks.md


def _item(x: Any) -> str:
    """A profiler's top item (as profilers.py records it) in a few words."""
    if not isinstance(x, dict):
        return "–" if x is None else str(x)
    if x.get("kind") == "finding" or "id" in x:
        sp = x.get("estimated_speedup")
        return f"{x.get('id')}" + (f" (est. {times(sp)})" if is_num(sp) else "")
    if x.get("kind") == "op" or ("name" in x and "file" not in x):
        return str(x.get("name"))
    where = f"{Path(str(x.get('file') or '?')).name}:{x.get('line')}"
    return f"{where} {x['function']}" if x.get("function") else where


def _hit(t: Doc, which: str) -> str:
    h = t.get(f"{which}_hit")
    word = {True: "yes", False: "no"}.get(h, "n/a")
    return word + (f" ({t[f'{which}_hits']})" if t.get(f"{which}_hits") else "")


def section(ctx: Context) -> list[str]:
    out = ["## Profiling overhead and what each tool tells", ""]
    doc = ctx.results.get("profilers")
    sub = header(ctx, "", "profilers", "profilers.py", doc)[2:]
    out += ["### Every profiler on the planted-bottleneck examples (`profilers.py`)", "", *sub]
    if isinstance(doc, dict) and "_error" not in doc:
        out += [f"{cell(doc.get('rounds'))} interleaved rounds per example, sampling at "
                f"{cell(doc.get('rate_hz'))} Hz (perfpilot, py-spy). Overhead = tool / plain "
                "− 1, median of paired per-round ratios with its 95% bootstrap interval "
                "(none below 5 rounds). \"Top item\" is the tool's first-ranked item; it "
                "points at the planted bottleneck when it lies in the planted code (majority "
                "of rounds); \"own code\" is the same for its first item in the example's "
                "own code.", ""]
        summ = doc.get("summary") or {}
        srows = []
        for tool, t in summ.items():
            if not isinstance(t, dict):
                continue
            if not t.get("examples"):
                why = (doc.get("skipped_tools") or {}).get(tool)
                srows.append([tool, f"skipped: {why}" if why else "no example ran",
                              "", "", "", ""])
                continue
            of = t.get("of")
            srows.append([tool, pct(t.get("median_overhead")),
                          pct(t.get("median_cpu_overhead")),
                          f"{cell(t.get('top_points_at_planted'))}/{cell(of)}",
                          f"{cell(t.get('own_points_at_planted'))}/{cell(of)}",
                          f"{cell(t.get('names_fix'))}/{cell(t.get('examples'))}"])
        if srows:
            out += [table(["tool", "median wall overhead", "median CPU overhead",
                           "top item points at planted", "own-code item points at planted",
                           "names a cause and fix"], srows), ""]
        ex = doc.get("examples") or {}
        erows = []
        for name, r in ex.items():
            if not isinstance(r, dict):
                continue
            planted = (r.get("planted") or {}).get("finding") if isinstance(
                r.get("planted"), dict) else None
            for tool, t in (r.get("tools") or {}).items():
                if not isinstance(t, dict):
                    continue
                if "skipped" in t:
                    erows.append([name, tool, f"skipped: {str(t['skipped'])[:100]}", "", "",
                                  "", ""])
                    continue
                erows.append([name + (f" (planted: {planted})" if planted else ""), tool,
                              pct(t.get("overhead"), t.get("ci_low"), t.get("ci_high")),
                              pct(t.get("cpu_overhead"), t.get("cpu_ci_low"),
                                  t.get("cpu_ci_high")),
                              f"`{_item(t.get('top'))}`", _hit(t, "top"), _hit(t, "own")])
        if erows:
            out += ["Per example (plain run medians: " + ", ".join(
                f"{n} {secs(r.get('plain_median_s'))}" for n, r in ex.items()
                if isinstance(r, dict)) + "):", "",
                table(["example", "tool", "wall overhead", "CPU overhead", "top item",
                       "points at planted", "own code points at planted"], erows), ""]
        if not summ and not ex:
            rows = records(doc, ("tools", "profilers", "rows", "results"), "tool")
            if rows:
                out += [generic_table(rows, [("tool", ("tool", "name"), "")]), ""]
        if is_num(doc.get("elapsed_s")):
            out += [f"Benchmark run time: {secs(doc['elapsed_s'])}.", ""]
    return out


SECTION = Section(order=10, files=("profilers",), render=section)


if __name__ == "__main__":
    main()
