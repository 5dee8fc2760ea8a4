"""Run ruff's speed rules and turn its diagnostics into :class:`~perfpilot.lint.base.Hit`.

perfpilot does not re-implement what ruff already checks: when a ``ruff`` executable is
found (the ``ruff`` wheel's :func:`ruff.__main__.find_ruff_bin`, else ``PATH``), it runs
``ruff check --isolated`` with :data:`RUFF_SELECT` on exactly the files perfpilot lints
(``--isolated``: the user's own ruff config may disable these rules; ``# noqa`` comments
still apply) and its diagnostics join the same ranked list as ``ruff:<CODE>``.
Ruff's findings where a perfpilot rule covers the same concern (:data:`MERGED_INTO`) are
folded into perfpilot's finding on that line rather than reported twice.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from perfpilot.lint.base import Hit, Span
from perfpilot.lint.context import FileContext

# Rules about speed: PERF (perflint), comprehension calls that defeat short-circuiting or
# sort twice (C419, C414), allocating a list for its first item (RUF015), sorting for an
# extreme (FURB192), readlines() in a for loop (FURB129), `in d.keys()` (SIM118), and
# redundant index lookups in loops (PLR1733, PLR1736).
RUFF_SELECT: tuple[str, ...] = ("PERF", "C414", "C419", "RUF015", "FURB129", "FURB192",
                                "SIM118", "PLR1733", "PLR1736")
MERGED_INTO: dict[str, str] = {"FURB192": "sort-for-min-max"}
# Gain model for ruff findings: (fraction of the line's time kept after the fix).
RUFF_FACTOR: dict[str, float] = {"FURB192": 1.5}
DEFAULT_FACTOR = 1.1
RUFF_ASSUMPTION = ("ruff's rewrites remove interpreter overhead, not complexity: assumed "
                   "to save a tenth of the line's time")
_BATCH = 400  # files per ruff call, to stay far below the OS argument-length limit


@dataclass(frozen=True)
class RuffRun:
    """Ruff's diagnostics by file, the ruff used (None: not found), and a note."""

    diagnostics: dict[Path, list[dict]]
    ruff: str | None
    note: str | None = None


def find_ruff() -> str | None:
    """Path of a ruff executable: the installed wheel's binary, else one on ``PATH``."""
    try:
        from ruff.__main__ import find_ruff_bin

        return str(find_ruff_bin())
    except (ImportError, FileNotFoundError):
        return shutil.which("ruff")


def run_ruff(files: Sequence[Path], *, executable: str | None = None,
             timeout_s: float = 120.0) -> RuffRun:
    """Ruff's speed diagnostics on ``files`` (absolute paths); never raises for ruff's sake."""
    exe = executable if executable is not None else find_ruff()
    if exe is None or not Path(exe).exists() and shutil.which(exe) is None:
        return RuffRun({}, None, "ruff not found: only perfpilot's own rules ran "
                                 "(`pip install ruff` adds its PERF rules)")
    by_file: dict[Path, list[dict]] = {}
    for start in range(0, len(files), _BATCH):
        out, error = _call(exe, files[start:start + _BATCH], timeout_s)
        if error is not None:
            return RuffRun({}, exe, error)
        for d in out:
            if d.get("filename"):
                by_file.setdefault(Path(d["filename"]).resolve(), []).append(d)
    return RuffRun(by_file, exe)


def to_hits(diagnostics: list[dict], ctx: FileContext) -> list[Hit]:
    """Hits for one file's diagnostics, placed in their enclosing loops via ``ctx``."""
    hits = [_to_hit(d, ctx) for d in diagnostics]
    return [h for h in hits if h is not None]


def _call(exe: str, files: Sequence[Path], timeout_s: float) -> tuple[list[dict], str | None]:
    select = list(RUFF_SELECT)
    for _ in range(2):  # an older ruff may not know every code: retry with PERF alone
        cmd = [exe, "check", "--isolated", "--no-cache", "--exit-zero", "--no-fix",
               "--output-format", "json", "--select", ",".join(select), "--",
               *map(str, files)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            return [], f"ruff could not run ({type(e).__name__}): its rules were skipped"
        if proc.returncode == 0:
            try:
                return json.loads(proc.stdout or "[]"), None
            except json.JSONDecodeError:
                return [], "ruff printed no JSON: its rules were skipped"
        select = ["PERF"]
    first = (proc.stderr.strip().splitlines() or ["no message"])[0]
    return [], f"ruff failed ({first}): its rules were skipped"


def _to_hit(d: dict, ctx: FileContext) -> Hit | None:
    code, loc = d.get("code"), d.get("location") or {}
    if not code or "row" not in loc:
        return None  # syntax errors come without a code
    line, col = int(loc["row"]), int(loc.get("column", 1))
    loops = ctx.loops_of(_node_at(ctx, line, col))
    name = d.get("name") or (d.get("url") or "").rsplit("/", 1)[-1]
    fix = (d.get("fix") or {}).get("message")
    return Hit(
        rule=f"ruff:{code}", file=ctx.path, line=line, column=max(col - 1, 0),
        title=d.get("message", code),
        evidence=f"ruff {code} ({name}): {d.get('message', '')}",
        fix=f"{fix} (ruff {code}; see {d.get('url')})" if fix else f"See {d.get('url')}.",
        loop=Span.of(loops[-1]) if loops else None, depth=len(loops),
        diff=_edit_diff(ctx, d.get("fix")), confidence="medium", source="ruff",
        gain=("line", RUFF_FACTOR.get(code, DEFAULT_FACTOR), RUFF_ASSUMPTION),
    )


def _node_at(ctx: FileContext, line: int, col: int) -> object:
    """The deepest node starting at ruff's 1-based (line, column); the module if none."""
    best: object = ctx.tree
    for node in ctx.walk(ast.stmt, ast.expr):
        if node.lineno == line and node.col_offset <= col - 1:  # type: ignore[attr-defined]
            best = node
    return best


def _edit_diff(ctx: FileContext, fix: dict | None, limit: int = 4) -> tuple[str, ...]:
    """``- old`` / ``+ new`` lines from ruff's suggested edits, when it has any."""
    edits = (fix or {}).get("edits") or []
    if not edits:
        return ()
    first = min(e["location"]["row"] for e in edits)
    last = max(e["end_location"]["row"] for e in edits)
    old = ctx.lines[first - 1:last]
    text = "\n".join(old)
    for e in sorted(edits, key=lambda e: (e["location"]["row"], e["location"]["column"]),
                    reverse=True):
        a = _offset(old, e["location"], first)
        b = _offset(old, e["end_location"], first)
        text = text[:a] + e.get("content", "") + text[b:]
    minus = [f"- {x.strip()}" for x in old][:limit]
    plus = [f"+ {x.strip()}" for x in text.splitlines() if x.strip()][:limit]
    return (*minus, *plus)


def _offset(lines: list[str], loc: dict, first_row: int) -> int:
    row, col = loc["row"] - first_row, loc["column"] - 1
    return sum(len(x) + 1 for x in lines[:row]) + col

