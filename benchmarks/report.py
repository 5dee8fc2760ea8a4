"""Write ``docs/benchmarks.md`` from ``benchmarks/results/*.json``.

    .venv/bin/python benchmarks/report.py                       # the repository's results
    .venv/bin/python benchmarks/report.py --results DIR --out FILE

Every figure on the page is read from a results file (nothing is typed in here): one
section per benchmark with its table, the spreads (95% intervals where the benchmark
recorded or its raw samples allow one), the machine and load it ran under, and the
command that reruns it. A benchmark whose file is missing gets "not run yet" and its
command. ``benchmarks/run_all`` calls this at the end of every run.

``tuned.json`` and ``profilers.json`` are rendered tolerantly: rows are read from
``workloads``/``rows``/``results``/``tools`` (a list of objects, or an object keyed by
name); a figure may be a number, an object with a middle value (``ratio``, ``median``,
``time_to_target_s``, ``value``, ...) and ``ci_low``/``ci_high`` (or ``ci: [lo, hi]``),
or a number with ``<key>_ci_low``/``<key>_ci_high`` beside it; keys not known here become
extra columns.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.machinery
import importlib.util
import inspect
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DOC = ROOT / "docs" / "benchmarks.md"
PY = ".venv/bin/python"

Doc = dict[str, Any]


# ---------------------------------------------------------------- loading


def file_hashes(results_dir: Path) -> dict[str, str]:
    return {p.stem: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(results_dir.glob("*.json"))}


def load_results(results_dir: Path) -> dict[str, Any]:
    """``{stem: parsed JSON}`` of every ``*.json`` in the folder (unreadable files map to
    ``{"_error": why}``)."""
    out: dict[str, Any] = {}
    for p in sorted(results_dir.glob("*.json")):
        try:
            out[p.stem] = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            out[p.stem] = {"_error": f"{type(e).__name__}: {e}"}
    return out


def load_run_all() -> Any:
    """The ``benchmarks/run_all`` module (no ``.py`` suffix), for its plan; None if it
    cannot be loaded."""
    path = HERE / "run_all"
    try:
        loader = importlib.machinery.SourceFileLoader("perfpilot_bench_run_all", str(path))
        spec = importlib.util.spec_from_loader(loader.name, loader)
        assert spec is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[loader.name] = mod  # dataclasses look their module up
        loader.exec_module(mod)
        return mod
    except (OSError, ImportError, SyntaxError, AssertionError):
        return None


# ---------------------------------------------------------------- formatting


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def num(x: Any, digits: int = 3) -> str:
    """A number for people: ``digits`` significant digits, no exponent below a million."""
    if not _is_num(x):
        return "–" if x is None else str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    if mag >= 6:
        return f"{x:.3g}"
    decimals = max(0, digits - 1 - mag)
    return f"{x:,.{decimals}f}"


def ci(lo: Any, hi: Any, fmt: Any = num) -> str:
    return f" [{fmt(lo)}, {fmt(hi)}]" if _is_num(lo) and _is_num(hi) else ""


def times(x: Any, lo: Any = None, hi: Any = None) -> str:
    if not _is_num(x):
        return "–"
    return f"{num(x)}x" + ci(lo, hi)


def pct(x: Any, lo: Any = None, hi: Any = None) -> str:
    def p(v: float) -> str:
        return f"{100 * v:+.1f}%"

    if not _is_num(x):
        return "–"
    return p(x) + ci(lo, hi, p)


def share(x: Any) -> str:
    return f"{100 * x:.1f}%" if _is_num(x) else "–"


def secs(x: Any, lo: Any = None, hi: Any = None) -> str:
    return f"{num(x)} s" + ci(lo, hi) if _is_num(x) else "–"


def load_str(before: Any, after: Any) -> str:
    def one(v: Any) -> str | None:
        if isinstance(v, (list, tuple)) and v and _is_num(v[0]):
            return f"{v[0]:.1f}"
        return f"{v:.1f}" if _is_num(v) else None

    a, b = one(before), one(after)
    if a and b:
        return f"{a} → {b}"
    return a or b or "not recorded"


def table(header: list[str], rows: list[list[str]]) -> str:
    def esc(c: Any) -> str:
        return str(c).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def changes_str(ch: Any) -> str:
    if isinstance(ch, dict):
        parts = []
        for k, v in ch.items():
            if isinstance(v, (list, tuple)) and len(v) == 2:
                parts.append(f"{k} {_plain(v[0])}→{_plain(v[1])}")
            else:
                parts.append(f"{k}={_plain(v)}")
        return ", ".join(parts) or "none (baseline kept)"
    if isinstance(ch, (list, tuple)):
        return ", ".join(_plain(x) for x in ch) or "none (baseline kept)"
    return "–" if ch is None else str(ch)


def _plain(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


# ---------------------------------------------------------------- tolerant figures

MID_KEYS = ("ratio", "speedup", "time_to_target_s", "ttt_s", "median_s", "median", "value",
            "overhead", "mean", "seconds", "s")


def stat(x: Any, row: Doc | None = None, key: str = "") -> dict[str, Any] | None:
    """A figure as ``{mid, lo, hi, n, verdict}`` from the shapes described in the module
    docstring; None when ``x`` is not a figure."""
    row = row or {}
    if _is_num(x):
        lo, hi = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
        c = row.get(f"{key}_ci")
        if isinstance(c, (list, tuple)) and len(c) == 2:
            lo, hi = c
        return {"mid": x, "lo": lo, "hi": hi, "n": None, "verdict": None}
    if not isinstance(x, dict):
        return None
    mid = next((x[k] for k in MID_KEYS if _is_num(x.get(k))), None)
    if mid is None:
        return None
    lo, hi = x.get("ci_low"), x.get("ci_high")
    c = x.get("ci") or x.get("ci95")
    if isinstance(c, (list, tuple)) and len(c) == 2:
        lo, hi = c
    n = next((x[k] for k in ("n", "runs", "rounds", "pairs") if _is_num(x.get(k))), None)
    if n is None and isinstance(x.get("seeds"), list):
        n = len(x["seeds"])
    return {"mid": mid, "lo": lo, "hi": hi, "n": n, "verdict": x.get("verdict")}


def fmt_stat(s: dict[str, Any] | None, kind: str) -> str:
    if s is None:
        return "–"
    f = {"x": times, "%": pct, "s": secs}.get(kind, lambda m, lo, hi: num(m) + ci(lo, hi))
    out = f(s["mid"], s["lo"], s["hi"])
    extra = [str(s["verdict"])] if s.get("verdict") else []
    if _is_num(s.get("n")):
        extra.append(f"n={s['n']:g}")
    return out + (f" ({', '.join(extra)})" if extra else "")


def kind_of(key: str) -> str:
    k = key.lower()
    if k.endswith("_per_s"):
        return ""
    if "overhead" in k:
        return "%"
    if "speedup" in k or "ratio" in k:
        return "x"
    if k.endswith("_s") or k in ("baseline", "tuned", "seconds", "time_to_target"):
        return "s"
    return ""


def cell(v: Any, key: str = "") -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if _is_num(v):
        return fmt_stat(stat(v), kind_of(key))
    if isinstance(v, str):
        return v
    s = stat(v)
    if s is not None:
        return fmt_stat(s, kind_of(key))
    if "change" in key.lower():
        return changes_str(v)
    if isinstance(v, (list, tuple)) and all(not isinstance(x, (dict, list)) for x in v):
        return ", ".join(_plain(x) for x in v)
    text = json.dumps(v, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def records(doc: Any, keys: tuple[str, ...], name_key: str) -> list[Doc]:
    """Rows of a tolerant results file: the first of ``keys`` holding a list of objects or
    an object of objects (its keys become ``name_key``)."""
    if isinstance(doc, list):
        return [r for r in doc if isinstance(r, dict)]
    for k in keys:
        v = doc.get(k) if isinstance(doc, dict) else None
        if isinstance(v, list) and v and all(isinstance(r, dict) for r in v):
            return v
        if isinstance(v, dict) and v and all(isinstance(r, dict) for r in v.values()):
            return [{name_key: n, **r} for n, r in v.items()]
    return []


def generic_table(rows: list[Doc], columns: list[tuple[str, tuple[str, ...], str]],
                  skip: set[str] | None = None, always: tuple[str, ...] = ()) -> str:
    """A table with the ``columns`` (header, candidate keys, kind) that any row has (or
    whose header is in ``always``), then one column per other scalar or figure key."""
    used: set[str] = set(skip or ())
    cols = []
    for header, keys, kind in columns:
        if header in always or any(k in r for r in rows for k in keys):
            cols.append((header, keys, kind))
            used.update(keys)
            used.update(f"{k}_ci{s}" for k in keys for s in ("", "_low", "_high"))
    for r in rows:
        for k, v in r.items():
            if k in used or k.startswith("_") or k.endswith("_hits"):
                continue
            if isinstance(v, (str, int, float, bool)) or v is None or stat(v) is not None:
                cols.append((label(k), (k,), kind_of(k)))
                used.add(k)
                used.update(f"{k}_ci{s}" for s in ("", "_low", "_high"))
    body = []
    for r in rows:
        line = []
        for _, keys, kind in cols:
            k = next((k for k in keys if k in r), None)
            if k is None:
                line.append("not measured" if header_of(keys, cols) in always else "–")
            elif kind == "changes":
                line.append(changes_str(r[k]))
            elif kind in ("x", "%", "s") and stat(r[k], r, k) is not None:
                line.append(fmt_stat(stat(r[k], r, k), kind))
            elif kind in ("x", "%", "s") and isinstance(r[k], dict):
                line.append("not measured" + (f" ({r[k]['verdict']})"
                                              if r[k].get("verdict") else ""))
            else:
                line.append(cell(r[k], k))
        body.append(line)
    return table([c[0] for c in cols], body)


def header_of(keys: tuple[str, ...], cols: list[tuple[str, tuple[str, ...], str]]) -> str:
    return next(h for h, k, _ in cols if k == keys)


def label(key: str) -> str:
    """A key as words: ``wall_s`` -> ``wall``, ``tuning_elapsed_s`` -> ``tuning elapsed``."""
    if key.endswith("_s") and not key.endswith("_per_s"):
        key = key[:-2]
    return key.replace("_per_s", " per second").replace("_", " ")


def scalars(doc: Doc, skip: tuple[str, ...] = ()) -> list[str]:
    """Bullet lines for the top-level scalar keys of a results file."""
    out = []
    for k, v in doc.items():
        if k in skip or k.startswith("_"):
            continue
        if isinstance(v, (str, int, float, bool)) or v is None or stat(v) is not None:
            out.append(f"- {label(k)}: {cell(v, k)}")
    return out


# ---------------------------------------------------------------- context of a result


def find_key(doc: Any, keys: tuple[str, ...], depth: int = 3) -> Any:
    """The first value under any of ``keys``, searching objects breadth-first."""
    level = [doc]
    for _ in range(depth + 1):
        nxt = []
        for d in level:
            if isinstance(d, dict):
                for k in keys:
                    if d.get(k) is not None:
                        return d[k]
                nxt += [v for v in d.values() if isinstance(v, (dict, list))]
            elif isinstance(d, list):
                nxt += [v for v in d if isinstance(v, (dict, list))]
        level = nxt
    return None


LOAD_BEFORE = ("loadavg_before", "loadavg_start", "load_avg_start", "load_before")
LOAD_AFTER = ("loadavg_after", "loadavg_end", "load_avg_end", "load_after")
CORES = ("usable_cores", "cores", "cpu_count", "logical_cores")


def cpu_model(doc: Any) -> str | None:
    """The CPU model a results file recorded (``machine.cpu.model`` or ``cpu_model``)."""
    if not isinstance(doc, dict):
        return None
    m = doc.get("machine") if isinstance(doc.get("machine"), dict) else {}
    cpu = m.get("cpu") if isinstance(m.get("cpu"), dict) else {}
    return cpu.get("model") or m.get("cpu_model") or doc.get("cpu_model")


class Context:
    """What a section needs besides its results file: run_all's record and plan."""

    def __init__(self, results: dict[str, Any], run_all: Any,
                 hashes: dict[str, str] | None = None) -> None:
        self.results, self.run_all, self.hashes = results, run_all, hashes or {}
        rec = results.get("run_all")
        self.record: Doc = rec if isinstance(rec, dict) and "_error" not in rec else {}

    def step(self, name: str) -> Doc:
        """run_all's entry for the step that wrote ``name``.json, while that file is still
        the one the step wrote (a later direct run of the script replaces it)."""
        st = (self.record.get("steps") or {}).get(name) or {}
        made = (st.get("results_sha256") or {}).get(f"{name}.json")
        if made and self.hashes.get(name) and made != self.hashes[name]:
            return {}
        return st

    def full_command(self, name: str, script: str) -> str:
        if self.run_all is not None:
            for p in self.run_all.plan(quick=False):
                if p.step.name == name:
                    return p.command
        return f"{PY} benchmarks/{script}"

    def rerun(self, name: str, script: str) -> str:
        steps = self.run_all.STEPS if self.run_all is not None else ()
        group = next((s.benchmark for s in steps if s.name == name), None)
        tail = (f" (or `{PY} benchmarks/run_all --only {group}`, `--quick` for smaller "
                "sizes)" if group else " (not part of `benchmarks/run_all`)")
        return f"Rerun: `{self.full_command(name, script)}`{tail}."

    def provenance(self, name: str, doc: Any) -> str:
        """Machine, load and how the file was produced, in one line."""
        st = self.step(name)
        machine = cpu_model(doc) or (st.get("machine") or {}).get("cpu_model")
        cores = find_key(doc, CORES, 2) or (st.get("machine") or {}).get("usable_cores")
        before = find_key(doc, LOAD_BEFORE) or st.get("loadavg_before")
        after = find_key(doc, LOAD_AFTER) or st.get("loadavg_after")
        when = (find_key(doc, ("measured_at",), 1) or st.get("finished_at"))
        parts = []
        if machine or cores:
            parts.append(f"machine: {machine or 'CPU model not recorded'}"
                         + (f", {cores} usable cores" if cores else ""))
        parts.append(f"load average (1 min) {load_str(before, after)}")
        if st.get("mode"):
            parts.append(f"{st['mode']} run by run_all"
                         + (f" in {secs(st.get('wall_s'))}" if "wall_s" in st else "")
                         + (f": `{st['command']}`" if st.get("command") else ""))
        if when:
            parts.append(f"finished {when}")
        return "*" + "; ".join(parts) + ".*"


def header(ctx: Context, title: str, name: str, script: str, doc: Any) -> list[str]:
    out = [f"## {title}", ""]
    if doc is None:
        out += [f"Not run yet (`benchmarks/results/{name}.json` is missing). "
                + ctx.rerun(name, script), ""]
        return out
    if isinstance(doc, dict) and "_error" in doc:
        out += [f"`benchmarks/results/{name}.json` could not be read ({doc['_error']}). "
                + ctx.rerun(name, script), ""]
        return out
    out += [ctx.provenance(name, doc), "", ctx.rerun(name, script), ""]
    return out


# ---------------------------------------------------------------- sections


def _item(x: Any) -> str:
    """A profiler's top item (as profilers.py records it) in a few words."""
    if not isinstance(x, dict):
        return "–" if x is None else str(x)
    if x.get("kind") == "finding" or "id" in x:
        sp = x.get("estimated_speedup")
        return f"{x.get('id')}" + (f" (est. {times(sp)})" if _is_num(sp) else "")
    if x.get("kind") == "op" or ("name" in x and "file" not in x):
        return str(x.get("name"))
    where = f"{Path(str(x.get('file') or '?')).name}:{x.get('line')}"
    return f"{where} {x['function']}" if x.get("function") else where


def _hit(t: Doc, which: str) -> str:
    h = t.get(f"{which}_hit")
    word = {True: "yes", False: "no"}.get(h, "n/a")
    return word + (f" ({t[f'{which}_hits']})" if t.get(f"{which}_hits") else "")


def section_profilers(ctx: Context) -> list[str]:
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
        if _is_num(doc.get("elapsed_s")):
            out += [f"Benchmark run time: {secs(doc['elapsed_s'])}.", ""]
    out += profile_overhead(ctx)
    return out


def profile_overhead(ctx: Context) -> list[str]:
    doc = ctx.results.get("profile_overhead")
    out = header(ctx, "", "profile_overhead", "profile_overhead.py", doc)[2:]
    out = ["### perfpilot's probes vs py-spy (`profile_overhead.py`)", "", *out]
    if not isinstance(doc, dict) or "_error" in doc:
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


def _batch_markdown() -> Any:
    """``markdown()`` of benchmarks/batch_size.py (its table format), or None."""
    try:
        spec = importlib.util.spec_from_file_location("perfpilot_bench_batch_size",
                                                      HERE / "batch_size.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod.markdown
    except Exception:  # noqa: BLE001 - fall back to our own table
        return None


def _batch_table(r: Doc) -> str:
    md = _batch_markdown()
    if md is not None:
        try:
            return md(r)
        except Exception:  # noqa: BLE001 - an arm without a figure: our table below
            pass
    rows = []
    for a, x in (r.get("arms") or {}).items():
        rows.append([a, cell(x.get("batch_size")), num(x.get("lr")), num(x.get("samples")),
                     secs(x.get("ttt_s"), x.get("ci_low"), x.get("ci_high"))
                     if x.get("ttt_s") is not None
                     else f"not reached (> {secs(x.get('censored_above_s'))})",
                     secs(x.get("wall_ttt_s"))])
    return table(["arm", "batch", "lr", "samples to target", "time to target (95% CI)",
                  "wall"], rows)


def section_batch_size(ctx: Context) -> list[str]:
    doc = ctx.results.get("batch_size")
    out = header(ctx, "Batch size: perfpilot vs Lightning, Accelerate and a grid oracle",
                 "batch_size", "batch_size.py", doc)
    if not isinstance(doc, dict) or "_error" in doc:
        return out
    out += ["Time to target = samples to target (real runs, interpolated at the crossing) / "
            "samples per second at that batch; median over seeds with its 95% bootstrap "
            "interval. \"vs baseline\" is the baseline's time over the arm's. Verdicts pair "
            "perfpilot with each arm seed by seed (`perfpilot.measure.compare_samples`); "
            "the ratio is the other arm's time over perfpilot's (> 1: perfpilot faster).", ""]
    if _is_num(doc.get("runtime_s")):
        out += [f"Benchmark run time: {secs(doc['runtime_s'])}.", ""]
    for r in doc.get("results") or []:
        out += [f"### {r.get('workload')}", "",
                f"Stage budget {secs(r.get('budget_s'))}; seeds {cell(r.get('seeds'))}; "
                f"load average {load_str(r.get('load_avg_start'), r.get('load_avg_end'))}"
                + (f"; this workload's benchmark took {secs(r['runtime_s'])}"
                   if _is_num(r.get("runtime_s")) else "") + ".",
                "", _batch_table(r), ""]
        vrows = []
        for a, v in (r.get("verdicts") or {}).items():
            if "perfpilot_over_oracle" in v:
                vrows.append([a, f"perfpilot's time / oracle's: "
                              f"{times(v['perfpilot_over_oracle'])}", "", ""])
                continue
            ratio = times(v.get("ratio_of_medians"))
            paired = (times(None) if v.get("ci_low") is None else
                      f"{v.get('describe') or ''}")
            vrows.append([a, ratio, f"{v.get('verdict') or 'not enough seeds'}"
                          + (f": {paired}" if v.get("ci_low") is not None else ""),
                          v.get("wall_describe") or "–"])
        if vrows:
            out += [table(["perfpilot vs", "ratio of medians", "paired verdict (95% CI)",
                           "wall-clock verdict"], vrows), ""]
        skipped = [f"- {a}: skipped ({p['skipped']})"
                   for a, p in (r.get("peers") or {}).items() if "skipped" in p]
        picked = [f"- {a} picked batch {p.get('picked')}, trained at {p.get('batch_size')}"
                  + (f" (finder took {secs(p.get('tuning_s'))})" if "tuning_s" in p else "")
                  for a, p in (r.get("peers") or {}).items() if "picked" in p]
        pp = r.get("perfpilot") or {}
        if pp:
            picked.insert(0, f"- perfpilot chose batch {pp.get('batch_size')}, lr "
                             f"{num(pp.get('lr'))}, warmup {pp.get('warmup_steps')} in "
                             f"{secs(pp.get('tuning_s'))}: {pp.get('summary', '')}")
        out += [*picked, *skipped, ""]
    return out


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


def section_tuned(ctx: Context) -> list[str]:
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


def _paired(base: list[float], other: list[float]) -> dict[str, Any] | None:
    """Speedup over serial with its 95% interval from interleaved rounds."""
    from perfpilot.measure import MIN_ROUNDS, compare_samples

    if len(base) != len(other) or len(base) < MIN_ROUNDS or min(base + other) <= 0:
        return None
    c = compare_samples(base, other, paired=True)
    return {"mid": c.ratio, "lo": c.ci_low, "hi": c.ci_high}


def _median_spread(xs: list[float], kind: str) -> str:
    """Median with a 95% bootstrap interval, or the range when too few rounds."""
    from perfpilot.measure import MIN_ROUNDS, median_ci

    f = {"s": secs, "x": times}.get(kind, lambda m, lo=None, hi=None: num(m) + ci(lo, hi))
    if not xs:
        return "–"
    med = statistics.median(xs)
    if len(xs) >= MIN_ROUNDS:
        lo, hi = median_ci(xs)
        return f(med, lo, hi)
    return f(med) + f" (range {num(min(xs))}–{num(max(xs))}, {len(xs)} rounds)"


def section_pmap(ctx: Context) -> list[str]:
    doc = ctx.results.get("pmap")
    out = header(ctx, "pmap vs multiprocessing.Pool, joblib and Ray", "pmap", "pmap.py", doc)
    if not isinstance(doc, dict) or "_error" in doc:
        return out
    m = doc.get("machine") or {}
    if m.get("cpu_pressure_end"):
        out += [f"CPU pressure at the end: `{m['cpu_pressure_end']}`.", ""]
    ws = doc.get("worker_start") or {}
    if ws:
        out += [f"Worker start (all workers answering): "
                f"{_median_spread(ws.get('times_s') or [], 's')}.", ""]
    out += ["Medians over interleaved rounds; speedups are medians of per-round ratios to "
            "serial with their 95% bootstrap interval (a range when fewer rounds than an "
            "interval needs).", ""]
    for key, title in (("cpu_bound", "CPU-bound calls"), ("tiny", "Tiny calls")):
        sec = doc.get(key) or {}
        if not sec:
            continue
        serial = (sec.get("serial") or {}).get("times_s") or []
        n = sec.get("n")
        rows = []
        for name, v in sec.items():
            if not isinstance(v, dict) or "median_s" not in v:
                continue
            ts = v.get("times_s") or []
            sp = _paired(serial, ts) if name != "serial" else None
            speed = (times(sp["mid"], sp["lo"], sp["hi"]) if sp
                     else _median_spread([b / t for b, t in zip(serial, ts, strict=False)
                                          if t > 0], "x") if name != "serial" else "1x")
            over = "–"
            if name != "serial" and _is_num(n) and len(ts) == len(serial):
                over = _median_spread([(t - b) / n * 1e6 for b, t in zip(serial, ts,
                                                                         strict=True)], "")
            rows.append([name, secs(v.get("median_s")), speed, over])
        out += [f"### {title}: {num(n)} x {sec.get('per_call', '')}", "",
                table(["variant", "median wall", "speedup vs serial",
                       "overhead per task (µs)"], rows), ""]
    ray = doc.get("ray")
    if isinstance(ray, dict):
        if "skipped" in ray:
            out += [f"Ray: skipped ({ray['skipped']}).", ""]
        else:
            serial = (ray.get("serial") or {}).get("times_s") or []
            pr = ray.get("pmap_ray") or {}
            sp = _paired(serial, pr.get("times_s") or [])
            out += [f"Ray {ray.get('ray_version')} (local; start {secs(ray.get('ray_start_s'))}):"
                    f" `pmap(backend=\"ray\")` {secs(pr.get('median_s'))} vs serial "
                    f"{secs((ray.get('serial') or {}).get('median_s'))}, speedup "
                    + (times(sp["mid"], sp["lo"], sp["hi"]) if sp
                       else times(pr.get("speedup_vs_serial"))) + ".", ""]
    return out


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


def section_hardware(ctx: Context) -> list[str]:
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
        if not isinstance(doc, dict) or "_error" in doc:
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


def section_demo(ctx: Context) -> list[str]:
    doc = ctx.results.get("demo")
    out = header(ctx, "`perfpilot demo` wall time", "demo", "demo.py", doc)
    if not isinstance(doc, dict) or "_error" in doc:
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


def _nominal() -> float | None:
    try:
        from perfpilot.measure import compare_samples

        return float(inspect.signature(compare_samples).parameters["confidence"].default)
    except Exception:  # noqa: BLE001
        return None


def _wilson(p: Any, n: Any, conf: float | None) -> str:
    if not (_is_num(p) and _is_num(n) and n > 0 and conf):
        return ""
    z = statistics.NormalDist().inv_cdf(1 - (1 - conf) / 2)
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return f" [{share(c - h)}, {share(c + h)}]"


def section_calibration(ctx: Context) -> list[str]:
    doc = ctx.results.get("measure_calibration")
    out = header(ctx, "Statistics calibration (`perfpilot.measure`)", "measure_calibration",
                 "measure_calibration.py", doc)
    if not isinstance(doc, dict) or "_error" in doc:
        return out
    conf, t = _nominal(), doc.get("trials")
    out += [f"Synthetic samples, lognormal noise σ = {num(doc.get('sigma'))}, "
            f"{num(doc.get('n_boot'))} bootstrap resamples, {num(t)} trials per cell "
            f"(fewer for the adaptive and power cells); {secs(doc.get('seconds'))} to run. "
            "Brackets: Wilson 95% interval of the rate over the trials.", ""]
    fp = doc.get("false_positive_fixed") or {}
    cov = doc.get("coverage_median_ci") or {}
    nominal_fp = share(1 - conf) if conf else "–"
    if fp:
        out += [table(["rounds", "false \"faster\"/\"slower\" on identical A, B",
                       "nominal"], [[n, share(p) + _wilson(p, t, conf), nominal_fp]
                                    for n, p in fp.items()]), ""]
    afp = doc.get("false_positive_adaptive_5_to_40")
    if isinstance(afp, list) and len(afp) >= 2 and all(_is_num(x) for x in afp[:2]):
        out += [f"Adaptive mode (5 to 40 rounds), identical A and B: "
                f"{share(afp[0] + afp[1])} false verdicts ({share(afp[0])} \"faster\", "
                f"{share(afp[1])} \"slower\"); nominal {nominal_fp}.", ""]
    if cov:
        out += [table(["samples", "coverage of the median's interval", "nominal"],
                      [[n, share(p) + _wilson(p, t, conf), share(conf)]
                       for n, p in cov.items()]), ""]
    pw = doc.get("power_fixed_n10") or {}
    pa = doc.get("power_adaptive_5_to_40") or {}
    if pw or pa:
        rows = []
        for e in dict.fromkeys([*pw, *pa]):
            a = pa.get(e) or [None, None, None]
            rows.append([f"{e}x", share(pw.get(e)), share(a[0]), share(a[1]), num(a[2])])
        out += [table(["true speedup", "called faster, 10 rounds",
                       "called faster, adaptive", "called slower, adaptive",
                       "mean rounds, adaptive"], rows), ""]
    dr = doc.get("drift_detects_5pct") or {}
    if dr:
        out += ["A machine slowing down 3x during the run, B 5% faster: detected "
                + ", ".join(f"{share(v)} of the time {k}" for k, v in dr.items()) + ".", ""]
    return out


def cuda_evidence(results: dict[str, Any]) -> list[str]:
    """Which results files show a CUDA device (a plan on cuda, a GPU in the machine)."""
    hits: list[str] = []

    def walk(x: Any, name: str) -> None:
        if name in hits:
            return
        if isinstance(x, dict):
            for k, v in x.items():
                if k in ("device", "devices") and (
                        (isinstance(v, str) and v.startswith("cuda"))
                        or (isinstance(v, list) and any(isinstance(d, str)
                                                        and d.startswith("cuda") for d in v))):
                    hits.append(name)
                    return
                if k == "gpus" and isinstance(v, list) and v:
                    hits.append(name)
                    return
                if k == "cuda_available" and v is True:
                    hits.append(name)
                    return
                walk(v, name)
        elif isinstance(x, list):
            for v in x:
                walk(v, name)

    for name, doc in results.items():
        walk(doc, name)
    return hits


def section_gpu(ctx: Context) -> list[str]:
    hits = cuda_evidence(ctx.results)
    out = ["## GPU", "",
           "This section fills in when the benchmarks run on a machine with a CUDA GPU: the "
           "same command (`" + PY + " benchmarks/run_all`, or `--quick`) in an environment "
           "with a CUDA build of torch. What changes there: the hardware stage also "
           "considers the GPU, mixed precision (bf16/fp16, TF32), `torch.compile`, "
           "channels_last, `cudnn.benchmark` and pinned memory; the batch stage's memory "
           "budget is the GPU's memory; the profilers' CUDA probes (synchronizations, GPU "
           "memory) report; `run_all.json` records the GPU model, memory and driver. "
           "`pmap`, the demo's CPU-only parts and the statistics calibration do not depend "
           "on a GPU.", ""]
    if not hits:
        out += ["No GPU result is recorded yet: none of `benchmarks/results/*.json` shows a "
                "CUDA device; every figure on this page is from a CPU-only machine.", ""]
        return out
    out += ["Results that show a CUDA device: "
            + ", ".join(f"`{h}.json`" for h in hits) + ".", ""]
    gpu = ((ctx.record.get("machine") or {}).get("gpu") or {})
    devs = (gpu.get("torch") or {}).get("devices") or []
    for d in devs:
        out.append(f"- {d.get('name')}, {num((d.get('memory_bytes') or 0) / 2**30)} GiB")
    if gpu.get("nvidia_smi"):
        out.append(f"- nvidia-smi: {cell(gpu['nvidia_smi'])}")
    return out + [""]


KNOWN = {"profilers", "profile_overhead", "batch_size", "tuned", "pmap", "hardware",
         "hardware_loader_only", "demo", "measure_calibration", "run_all"}


def section_others(ctx: Context) -> list[str]:
    """Results files no section above knows: a generic table of their rows."""
    out: list[str] = []
    for name, doc in ctx.results.items():
        if name in KNOWN:
            continue
        script = f"{name}.py"
        out += header(ctx, f"Other results: `{name}.json`", name, script, doc)
        if not isinstance(doc, dict) or "_error" in doc:
            continue
        rows = records(doc, ("results", "rows", "workloads", "examples"), "name")
        if rows:
            out += [generic_table(rows, [("workload", ("workload", "name"), "")],
                                  skip={"runs", "samples_s", "times_s"}), ""]
        out += [*scalars(doc, ("benchmark",)), ""]
    return out


# ---------------------------------------------------------------- intro


def intro(ctx: Context) -> list[str]:
    ra = ctx.run_all
    rec = ctx.record
    out = ["# Benchmarks", "",
           "<!-- Generated by benchmarks/report.py from benchmarks/results/*.json; edit the "
           "generator, not this file. -->", "",
           "Every figure on this page is read from `benchmarks/results/*.json` by "
           "`benchmarks/report.py`; each section names the machine and load it ran under and "
           "the command that reruns it. Spreads are 95% intervals (bootstrap intervals of a "
           "median, or of a median of paired ratios, unless a section says otherwise).", "",
           "## How to rerun", "",
           "One command runs every benchmark, writes `benchmarks/results/*.json` and "
           "regenerates this page:", "",
           "```",
           f"{PY} benchmarks/run_all                    # every benchmark at full size",
           f"{PY} benchmarks/run_all --quick            # smaller sizes",
           f"{PY} benchmarks/run_all --only pmap,demo   # a subset (also --skip)",
           f"{PY} benchmarks/run_all --list --quick     # print the plan, run nothing",
           f"{PY} benchmarks/report.py                  # only regenerate this page",
           "```", ""]
    peers = ra.requirement_names() if ra is not None else []
    out += ["`run_all` first runs `pip install -r benchmarks/requirements.txt` into the "
            "environment of the Python running it (`--no-install` skips it): the peers "
            "compared against" + (f" ({', '.join(peers)})" if peers else "")
            + " are installed only into this benchmark environment and are never "
            "dependencies of perfpilot. A benchmark that fails is reported with its exit "
            "code and the end of its stderr, the others still run, and `run_all` exits "
            "non-zero.", ""]
    deadline = getattr(ra, "QUICK_DEADLINE_MIN", None)
    complete = rec.get("complete_runs") or {}
    for mode in ("quick", "full"):
        r = complete.get(mode)
        if not r:
            continue
        out.append(f"- The last complete {'`--quick`' if mode == 'quick' else 'full'} run "
                   f"took {num((r.get('total_s') or 0) / 60)} min "
                   f"(finished {r.get('finished_at')}, {r.get('cpu_model')}, "
                   f"{r.get('usable_cores')} usable cores, load average "
                   f"{load_str(r.get('loadavg_before'), r.get('loadavg_after'))}"
                   + (f"; failed: {', '.join(r['failed'])}" if r.get("failed") else "")
                   + ").")
    if "quick" not in complete:
        est = sum(s.quick_estimate_s or 0 for s in ra.STEPS) if ra is not None else None
        out.append("- No complete `--quick` run is recorded yet in "
                   "`benchmarks/results/run_all.json`"
                   + (f"; its plan expects about {est / 60:.1f} min on 2 busy cores"
                      if est else "") + ".")
    if deadline:
        out.append(f"- `--quick` stops at a {deadline:g}-minute deadline (`--deadline`): "
                   "a benchmark still running then is stopped and reported as failed, the "
                   "ones after it are skipped. Its results files replace the full-size ones; "
                   "each section below says whether its file came from a quick or a full "
                   "run.")
    last = rec.get("last_run")
    if isinstance(last, dict) and not last.get("complete"):
        sel = (f"only {', '.join(last.get('only') or [])}" if last.get("only")
               else f"skipping {', '.join(last.get('skip') or [])}")
        out.append(f"- The last run ({last.get('mode')}, {sel}) took "
                   f"{secs(last.get('total_s'))}, finished {last.get('finished_at')}.")
    out.append("")
    vers = rec.get("versions") or {}
    if vers:
        out += ["Versions at the last run: " + ", ".join(
            f"{k} {v}" for k, v in vers.items() if k != "python_executable" and v) + ".", ""]
    out += machines(ctx)
    return out


def machines(ctx: Context) -> list[str]:
    rows = []
    for name, doc in ctx.results.items():
        if name == "run_all" or not isinstance(doc, dict) or "_error" in doc:
            continue
        st = ctx.step(name)
        model = (cpu_model(doc) or (st.get("machine") or {}).get("cpu_model")
                 or "not recorded")
        cores = find_key(doc, CORES, 2) or (st.get("machine") or {}).get("usable_cores")
        before = find_key(doc, LOAD_BEFORE) or st.get("loadavg_before")
        after = find_key(doc, LOAD_AFTER) or st.get("loadavg_after")
        rows.append([f"`{name}.json`", model, cell(cores),
                     load_str(before, after), st.get("mode", "not via run_all"),
                     secs(st.get("wall_s"))])
    if not rows:
        return []
    return ["Where each result was measured (load average: 1-minute, at start → end):", "",
            table(["results", "CPU", "cores", "load", "run", "wall"], rows), ""]


def render(results: dict[str, Any], run_all: Any = None,
           hashes: dict[str, str] | None = None) -> str:
    ctx = Context(results, run_all, hashes)
    parts = [intro(ctx), section_profilers(ctx), section_batch_size(ctx), section_tuned(ctx),
             section_pmap(ctx), section_hardware(ctx), section_demo(ctx),
             section_calibration(ctx), section_others(ctx), section_gpu(ctx)]
    text = "\n".join(line for part in parts for line in part)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of results JSONs")
    ap.add_argument("--out", type=Path, default=DOC, help="markdown file to write")
    args = ap.parse_args(argv)
    text = render(load_results(args.results), load_run_all(), file_hashes(args.results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
