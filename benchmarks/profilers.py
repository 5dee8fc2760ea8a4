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
import ast
import json
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
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from profile_overhead import (  # noqa: E402  (a sibling script, not a package)
    EXAMPLES,
    ROOT,
    arms,
    interleaved,
    paired_overhead,
    run,
)

RESULTS = ROOT / "benchmarks" / "results" / "profilers.json"
TOOLS = ("perfpilot", "py-spy", "pyinstrument", "scalene", "torch.profiler")
QUICK_EXAMPLES = ("inefficient_membership", "io_in_loop")  # ~22 s a round each
WRAPPER_FLAG = "--torch-profiler-wrapper"
MIN_CI_ROUNDS = 5  # perfpilot.measure.MIN_ROUNDS: fewer rounds give no 95% interval

Frame = tuple[str, str, int]  # (function, file, line)


@dataclass(frozen=True)
class Planted:
    """Where an example's bottleneck is: ``finding`` (perfpilot's id), ``markers``
    (source text of the planted lines), ``functions`` (functions of the script that are
    the bottleneck: their whole body), ``ops`` (operator-name fragments only the planted
    code produces)."""

    finding: str
    markers: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()
    ops: tuple[str, ...] = ()


PLANTED = {
    "dataloader_bound": Planted("dataloader-bound", ("time.sleep(0.001)",), ("__getitem__",),
                                ("enumerate(DataLoader)",)),
    "small_batch": Planted("small-batch", ("batch_size=4",)),
    "python_hotspot": Planted("python-hotspot", ("running_stats(feature_log)",),
                              ("running_stats",)),
    "inefficient_membership": Planted("inefficient-membership", ("t not in stop_ids",)),
    "repeated_concat": Planted("repeated-concat", ("torch.cat([embeddings",), ops=("aten::cat",)),
    "thread_oversubscription": Planted("thread-oversubscription", ("set_num_threads(8",)),
    "eval_dominates": Planted("eval-dominates", ("evaluate(model, val)",), ("evaluate",)),
    "io_in_loop": Planted("io-in-loop", ("torch.save(",)),
    "grad_in_eval": Planted("grad-in-eval", ("predictions = [model(batch)",)),
}
DEFAULT_EXAMPLES = tuple(PLANTED)


@dataclass
class Region:
    """The planted region of one script, resolved to line numbers."""

    script: str  # the file name, e.g. "python_hotspot.py"
    lines: set[int]
    planted: Planted
    functions: set[str] = field(default_factory=set)


def planted_region(script: Path, planted: Planted) -> Region:
    """Lines holding a marker, plus the whole definition of each planted function."""
    source = script.read_text()
    lines = {n for n, text in enumerate(source.splitlines(), 1)
             if any(m in text for m in planted.markers)}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name in planted.functions:
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return Region(script.name, lines, planted, set(planted.functions))


def in_region(item: dict[str, Any] | None, region: Region | None) -> bool | None:
    """Whether a tool's item is the planted bottleneck (None: no item or no plant)."""
    if item is None or region is None:
        return None
    kind = item["kind"]
    if kind == "finding":
        return item["id"] == region.planted.finding
    if kind == "op":
        return any(o in item["name"] for o in region.planted.ops)
    if os.path.basename(item.get("file") or "") == region.script:
        return item.get("line") in region.lines or item.get("function") in region.functions
    return bool(in_region(item.get("via"), region))  # library code the planted line calls


# --- reading each tool's output --------------------------------------------------------


def parse_pyspy_raw(text: str) -> list[tuple[list[Frame], float]]:
    """py-spy ``--format raw`` (collapsed stacks, ``f (file:line);... count``), root first."""
    out = []
    for row in text.splitlines():
        stack, _, count = row.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = []
        for part in stack.split(";"):
            name, _, where = part.rpartition(" (")
            file, _, line = where.rstrip(")").rpartition(":")
            if not name:  # no location: "name" alone
                name, file, line = part, "", "0"
            frames.append((name, file, int(line) if line.isdigit() else 0))
        out.append((frames, float(count)))
    return out


def parse_pyinstrument(doc: dict[str, Any]) -> list[tuple[list[Frame], float]]:
    """pyinstrument ``-r json``: a stack per frame with its self time (``time`` minus its
    children's); ``[self]`` pseudo-frames charge their parent. Lines are ``def`` lines."""
    out: list[tuple[list[Frame], float]] = []

    def walk(node: dict[str, Any], stack: list[Frame]) -> None:
        children = node.get("children", [])
        if node["function"] == "[self]":
            out.append((stack, float(node["time"])))
            return
        here = [*stack, (node["function"], node.get("file_path") or "", int(node["line_no"]))]
        own = float(node["time"]) - sum(float(c["time"]) for c in children)
        if own > 0:
            out.append((here, own))
        for c in children:
            walk(c, here)

    root = doc.get("root_frame")
    if root:
        walk(root, [])
    return out


def parse_scalene(doc: dict[str, Any], script: str) -> list[dict[str, Any]]:
    """Scalene JSON: the script's lines, most CPU (Python + native + system %) first."""
    rows = []
    for path, info in doc.get("files", {}).items():
        if os.path.basename(path) != script:
            continue
        for ln in info.get("lines", []):
            share = sum(float(ln.get(k, 0.0)) for k in
                        ("n_cpu_percent_python", "n_cpu_percent_c", "n_sys_percent"))
            if share > 0:
                rows.append({"kind": "line", "file": path, "line": int(ln["lineno"]),
                             "text": ln.get("line", "").strip(), "share": share / 100})
    rows.sort(key=lambda r: -r["share"])
    return rows


def parse_torch_table(text: str) -> list[dict[str, Any]]:
    """Rows of ``key_averages().table()``: name and self CPU share, table order."""
    lines = text.splitlines()
    rules = [i for i, ln in enumerate(lines) if ln.startswith("---")]
    if len(rules) < 3:
        return []
    spans, start = [], None  # the columns: runs of dashes in the rule line
    for i, ch in enumerate(lines[rules[0]] + " "):
        if ch == "-" and start is None:
            start = i
        elif ch != "-" and start is not None:
            spans.append((start, i))
            start = None
    header = [lines[rules[0] + 1][a:b].strip() for a, b in spans]
    rows = []
    for ln in lines[rules[1] + 1:rules[2]]:
        cells = dict(zip(header, (ln[a:b].strip() for a, b in spans), strict=False))
        pct = cells.get("Self CPU %", "").rstrip("%")
        rows.append({"kind": "op", "name": cells.get("Name", ""),
                     "share": float(pct) / 100 if pct else None})
    return rows


def is_import(frames: list[Frame]) -> bool:
    """A sample taken while a module was being imported (a module body below the
    script's, or the import machinery)."""
    return any(fn == "<module>" for fn, _, _ in frames[1:]) or any(
        "importlib" in file for _, file, _ in frames)


def top_items(samples: list[tuple[list[Frame], float]],
              script: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(heaviest leaf frame, heaviest frame of the script counted as its deepest script
    frame in each sample, import-time samples left out), each with its share of all
    samples. A leaf outside the script gets ``via``: the script frame most of its samples
    passed through (where the user's code calls it)."""
    total = sum(w for _, w in samples)
    if total <= 0:
        return None, None
    leaf: dict[Frame, float] = defaultdict(float)
    via: dict[Frame, dict[Frame, float]] = defaultdict(lambda: defaultdict(float))
    own: dict[Frame, float] = defaultdict(float)
    for frames, w in samples:
        if not frames:
            continue
        leaf[frames[-1]] += w
        mine = [f for f in frames if os.path.basename(f[1]) == script]
        if mine:
            via[frames[-1]][mine[-1]] += w
            if not is_import(frames):
                own[mine[-1]] += w

    def item(table: dict[Frame, float]) -> dict[str, Any] | None:
        if not table:
            return None
        (fn, file, line), w = max(table.items(), key=lambda kv: kv[1])
        return {"kind": "frame", "function": fn, "file": file, "line": line,
                "share": w / total}

    top = item(leaf)
    if top is not None and os.path.basename(top["file"]) != script:
        key = (top["function"], top["file"], top["line"])
        top["via"] = item(via[key]) if via[key] else None  # where the script calls it
    return top, item(own)


def read_perfpilot(raw_path: str) -> dict[str, Any]:
    """perfpilot's findings (the parent's analysis) from a runner's raw profile."""
    from perfpilot.commands.profile import analyze

    with open(raw_path) as f:
        record, _ = analyze(json.load(f))
    return perfpilot_items([f.to_dict() for f in record.findings],
                           [h.to_dict() for h in record.hot_lines])


def perfpilot_items(findings: list[dict[str, Any]],
                    hot_lines: list[dict[str, Any]]) -> dict[str, Any]:
    top = own = None
    if findings:
        f = findings[0]
        loc = f.get("location") or {}
        top = {"kind": "finding", "id": f["id"], "estimated_speedup": f["estimated_speedup"],
               "file": loc.get("file"), "line": loc.get("line"), "fix": f.get("fix") or "",
               "share": f.get("time_share")}
    if hot_lines:
        h = max(hot_lines, key=lambda h: h.get("self_share") or 0.0)
        own = {"kind": "frame", "function": h.get("function"), "file": h["file"],
               "line": h["line"], "share": h.get("self_share")}
    return {"top": top, "own": own}


def read_output(tool: str, path: str, script: str) -> dict[str, Any]:
    """``{"top": item, "own": item}`` from one run's output file of ``tool``."""
    if tool == "perfpilot":
        return read_perfpilot(path)
    text = Path(path).read_text()
    if tool == "py-spy":
        top, own = top_items(parse_pyspy_raw(text), script)
    elif tool == "pyinstrument":
        top, own = top_items(parse_pyinstrument(json.loads(text)), script)
    elif tool == "scalene":
        rows = parse_scalene(json.loads(text), script)
        code = [r for r in rows if not r["text"].startswith(("import ", "from "))]
        top, own = (rows[0] if rows else None), (code[0] if code else None)
    else:
        rows = parse_torch_table(text)
        top, own = (rows[0] if rows else None), None
    return {"top": top, "own": own}


def describe(item: dict[str, Any] | None) -> str:
    if item is None:
        return "-"
    if item["kind"] == "finding":
        return f"{item['id']} {item['estimated_speedup']:.2f}x"
    if item["kind"] == "op":
        return item["name"]
    where = f"{os.path.basename(item.get('file') or '?')}:{item.get('line')}"
    text = f"{where} {item['function']}" if item.get("function") else where
    return f"{text} (via {describe(item['via'])})" if item.get("via") else text


def judge(reads: list[dict[str, Any]], region: Region | None) -> dict[str, Any]:
    """Per round what the tool said; ``hit``: in the planted region in most rounds."""
    out: dict[str, Any] = {"rounds": []}
    for which in ("top", "own"):
        hits = [in_region(r[which], region) for r in reads]
        known = [h for h in hits if h is not None]
        out[f"{which}_hit"] = (2 * sum(known) > len(reads)) if known else None
        out[f"{which}_hits"] = f"{sum(known)}/{len(reads)}"
        out[which] = reads[-1][which] if reads else None
    for r in reads:
        out["rounds"].append({"top": describe(r["top"]), "own": describe(r["own"])})
    last = reads[-1]["top"] if reads else None
    out["names_fix"] = bool(last and last.get("fix"))
    out["estimated_speedup"] = last.get("estimated_speedup") if last else None
    return out


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


def cell(t: dict[str, Any]) -> str:
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
              + " | ".join(cell(r["tools"][t]) for t in why) + " |")
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
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(out)
    print(f"\n{elapsed / 60:.1f} min; load average {load0[0]:.1f} -> {os.getloadavg()[0]:.1f}; "
          f"wrote {out}")


if __name__ == "__main__":
    main()
