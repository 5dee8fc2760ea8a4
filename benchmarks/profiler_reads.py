"""What each profiler's output says, and whether it points at the planted bottleneck.

The pure half of ``benchmarks/profilers.py`` (no tool is run here): ``PLANTED`` says
where each example's bottleneck is and :func:`planted_region` resolves it to line
numbers; ``parse_*`` read py-spy's raw stacks, pyinstrument's JSON, scalene's JSON and
torch.profiler's table; :func:`top_items` ranks frames; :func:`perfpilot_items` reads
perfpilot's typed findings; :func:`judge` says, over the rounds, whether a tool's top
item (and its top item in the example's own code) lies in the planted region.
"""

from __future__ import annotations

import ast
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from perfpilot.record import Finding

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
    return perfpilot_items(list(record.findings), [h.to_dict() for h in record.hot_lines])


def perfpilot_items(findings: list[Finding],
                    hot_lines: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"top": the first-ranked finding, "own": the hottest line}`` (either None)."""
    top = own = None
    if findings:
        f = findings[0]
        loc = f.location or {}
        top = {"kind": "finding", "id": f.id, "estimated_speedup": f.estimated_speedup,
               "file": loc.get("file"), "line": loc.get("line"), "fix": f.fix or "",
               "share": f.time_share}
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
