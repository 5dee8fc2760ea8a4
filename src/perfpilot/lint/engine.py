"""Find files, run the rules (and ruff), join measured time, rank.

``run_lint`` is the whole pipeline and returns a :class:`LintReport` (findings plus the
notes a user should see once: files skipped, ruff missing). ``lint_paths`` and
``lint_hot_code`` are the contract other modules use (see ``docs/internals.md``).

A finding can be silenced on its line with ``# perfpilot: ignore`` (all rules) or
``# perfpilot: ignore[rule-id, ...]``; ruff's own ``# noqa`` works for ruff's rules.
"""

from __future__ import annotations

import os
import re
import sys
import sysconfig
import tokenize
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from perfpilot.errors import UserError
from perfpilot.lint import concat, join, membership, queue, sorting, tensor
from perfpilot.lint.base import Hit, Rule
from perfpilot.lint.context import FileContext
from perfpilot.lint.ranking import MIN_SHARE, ProfileIndex, norm_path, rank, to_finding
from perfpilot.lint.ruff_bridge import MERGED_INTO, RuffRun, run_ruff, to_hits
from perfpilot.record import Finding, RunRecord

RULES: tuple[Rule, ...] = (membership.RULE, concat.RULE, queue.RULE, join.RULE,
                           tensor.RULE, sorting.RULE)
RULES_BY_ID: dict[str, Rule] = {r.id: r for r in RULES}
SKIP_DIRS = frozenset({"__pycache__", "site-packages", "dist-packages", "node_modules",
                       "venv", "env", "build", "dist"})
_IGNORE = re.compile(r"#\s*perfpilot:\s*ignore(?:\[([^\]]*)\])?")


@dataclass(frozen=True)
class LintReport:
    """Ranked findings, the files linted, and notes to show once (skips, ruff status)."""

    findings: list[Finding]
    files: tuple[str, ...]
    notes: tuple[str, ...] = ()
    ruff: str | None = None          # the ruff executable used, None if it did not run
    profile_basis: str | None = None  # e.g. "1234 stack samples"; None without a record


def lint_paths(paths: Iterable[str | os.PathLike[str]], *,
               record: RunRecord | None = None) -> list[Finding]:
    """Findings for the Python files under ``paths``, ranked (by measured time with a record)."""
    return run_lint(paths, record=record).findings


def lint_hot_code(record: RunRecord, *, min_share: float = MIN_SHARE) -> list[Finding]:
    """Findings in the user files the record's samples saw, at or above ``min_share``.

    Files under site-packages, the standard library and perfpilot itself (except its
    built-in workloads) are skipped; so is any file holding less than ``min_share`` of
    the samples, and any finding whose line, attributed and loop shares all do.
    """
    index = ProfileIndex.from_record(record)
    if index is None:
        return []
    files = [f for f in index.files() if is_user_file(f) and index.file_share(f) >= min_share]
    if not files:
        return []
    report = run_lint(files, record=record, min_share=min_share)
    return [f for f in report.findings if not f.demoted]


def run_lint(paths: Iterable[str | os.PathLike[str]], *, record: RunRecord | None = None,
             use_ruff: bool = True, select: Sequence[str] = (), ignore: Sequence[str] = (),
             min_share: float = MIN_SHARE, ruff_executable: str | None = None,
             on_file: Callable[[int, int], None] | None = None) -> LintReport:
    """The full pipeline. ``select``/``ignore`` take rule ids or id prefixes ("ruff:PERF");
    ``on_file(done, total)`` is called after each file (for a progress bar)."""
    files = discover(paths)
    index = None
    if record is not None:
        index = ProfileIndex.from_record(record)
        if index is None:
            raise UserError("the profile record holds no stack samples (nor hot_lines): "
                            "record one with `perfpilot profile`")
    ruff = RuffRun({}, None)
    if use_ruff and _wants_ruff(select) and files:
        ruff = run_ruff(files, executable=ruff_executable)
    rules = [r for r in RULES if _selected(r.id, select, ignore)]
    hits: list[Hit] = []
    notes = [ruff.note] if ruff.note else []
    for done, path in enumerate(files, 1):  # one parsed file in memory at a time
        ctx, note = _parse(path)
        if ctx is None:
            notes.append(note or f"{path}: skipped")
        else:
            hits += _file_hits(ctx, rules, ruff.diagnostics.get(path, []), select, ignore)
        if on_file is not None:
            on_file(done, len(files))
    findings = [to_finding(h, RULES_BY_ID.get(h.rule), index, min_share) for h in hits]
    return LintReport(rank(findings, profiled=index is not None),
                      tuple(str(f) for f in files), tuple(notes), ruff.ruff,
                      index.basis if index is not None else None)


def _file_hits(ctx: FileContext, rules: list[Rule], diagnostics: list[dict],
               select: Sequence[str], ignore: Sequence[str]) -> list[Hit]:
    own = _dedupe([h for rule in rules for h in rule.check(ctx) if not _suppressed(ctx, h)])
    theirs = [h for h in to_hits(diagnostics, ctx)
              if _selected(h.rule, select, ignore) and not _suppressed(ctx, h)]
    return _merge(own, theirs)


def discover(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Python files named or under the directories named (hidden and venv dirs skipped)."""
    out: dict[str, Path] = {}
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise UserError(f"{p}: no such file or directory")
        found = [p] if p.is_file() else _walk(p)
        for f in found:
            out.setdefault(norm_path(f), f.resolve())
    return sorted(out.values())


def _walk(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS)
        files += [Path(dirpath) / f for f in sorted(filenames) if f.endswith(".py")]
    return files


def _parse(path: Path) -> tuple[FileContext | None, str | None]:
    try:
        with tokenize.open(path) as fh:
            source = fh.read()
        return FileContext.parse(path, source), None
    except SyntaxError as e:
        return None, f"{path}:{e.lineno}: skipped, not valid Python ({e.msg})"
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return None, f"{path}: skipped, cannot be read ({e})"


def _dedupe(hits: list[Hit]) -> list[Hit]:
    seen: set[tuple] = set()
    out = []
    for h in hits:
        key = (h.rule, h.file, h.line, h.title)
        if key not in seen:
            seen.add(key)
            out.append(h)
    return out


def _merge(own: list[Hit], ruff_hits: list[Hit]) -> list[Hit]:
    """Fold ruff's findings that repeat one of ours (same concern, same line) into ours."""
    own = list(own)
    by_place: dict[tuple[str, Path, int], list[int]] = {}
    for i, h in enumerate(own):
        by_place.setdefault((h.rule, h.file, h.line), []).append(i)
    ruff_only = []
    for rh in ruff_hits:
        target = MERGED_INTO.get(rh.rule.removeprefix("ruff:"), "")
        free = [i for i in by_place.get((target, rh.file, rh.line), ())
                if rh.rule not in own[i].also]
        i = next((i for i in free if own[i].column == rh.column), free[0] if free else None)
        if i is None:
            ruff_only.append(rh)
        else:
            own[i] = replace(own[i], also=(*own[i].also, rh.rule))
    return own + ruff_only


def _selected(rule_id: str, select: Sequence[str], ignore: Sequence[str]) -> bool:
    if any(rule_id.startswith(p) for p in ignore):
        return False
    return not select or any(rule_id.startswith(p) for p in select)


def _wants_ruff(select: Sequence[str]) -> bool:
    return not select or any(p.startswith("ruff") or "ruff:".startswith(p) for p in select)


def _suppressed(ctx: FileContext, h: Hit) -> bool:
    m = _IGNORE.search(ctx.lines[h.line - 1]) if 0 < h.line <= len(ctx.lines) else None
    if m is None:
        return False
    ids = [s.strip() for s in (m.group(1) or "").split(",") if s.strip()]
    return not ids or h.rule in ids


def is_user_file(path: str) -> bool:
    """A Python file of the user's own: not the stdlib, site-packages or perfpilot itself."""
    if path.startswith("<") or not path.endswith(".py") or not os.path.isfile(path):
        return False
    real = norm_path(path)
    parts = Path(real).parts
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    if any(_under(real, root) for root in _library_roots()):
        return False
    own = norm_path(Path(__file__).resolve().parents[1])
    return not _under(real, own) or _under(real, os.path.join(own, "workloads"))


def _library_roots() -> list[str]:
    paths = sysconfig.get_paths()
    roots = {paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.add(os.path.dirname(os.__file__))
    roots.add(os.path.join(sys.base_prefix, "lib"))
    return [norm_path(r) for r in roots if r]


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)
