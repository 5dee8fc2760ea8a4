"""Terminal rendering of a :class:`~perfpilot.lint.LintReport`.

One block per finding: ``file:line``, rule id, measured shares when a profile was given
and the estimated whole-run gain, the title, and the rewrite as a short diff. Findings
demoted for running under 1% of the run are listed after the others, one line each.
The console is injected so tests can capture the output.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from perfpilot.record import Finding, LintDetail

if TYPE_CHECKING:
    from perfpilot.lint import LintReport

MAX_DIFF_LINES = 6


def render_lint(report: LintReport, console: Console, *, cwd: Path | None = None,
                verbose: bool = False) -> None:
    """Print ``report`` (a LintReport). ``verbose`` adds each finding's evidence and fix."""
    cwd = cwd or Path.cwd()
    main = [f for f in report.findings if not f.demoted]
    cold = [f for f in report.findings if f.demoted]
    console.print(_header(report, len(main), len(cold)), highlight=False, soft_wrap=True)
    for n, f in enumerate(main, 1):
        _finding(console, n, f, cwd, report.profile_basis is not None, verbose)
    if cold:
        console.print(f"\n[dim]under 1% of the run (demoted): {len(cold)}[/]",
                      highlight=False, soft_wrap=True)
        for f in cold:
            console.print(f"[dim]  {escape(_where(f, cwd))}  {f.id}  {escape(f.title)}[/]",
                          highlight=False, soft_wrap=True)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)


def _header(report: LintReport, n_main: int, n_cold: int) -> str:
    files = len(report.files)
    total = n_main + n_cold
    head = (f"[bold]perfpilot lint[/]: {total} finding{'s' * (total != 1)} in {files} "
            f"file{'s' * (files != 1)}")
    if report.profile_basis:
        return head + f", ranked by measured time ({escape(report.profile_basis)})"
    return head + ", static order (add --profile to rank by measured time)"


def _finding(console: Console, n: int, f: Finding, cwd: Path, profiled: bool,
             verbose: bool) -> None:
    console.print()
    line = f"[bold]{n:>2}. {escape(_where(f, cwd))}[/]  [cyan]{escape(f.id)}[/]"
    if profiled:
        line += "  " + _shares(f)
    detail = f.lint or LintDetail()
    if detail.also:
        line += f"  [dim](also {escape(', '.join(detail.also))})[/]"
    console.print(line, highlight=False, soft_wrap=True)
    console.print(f"    {escape(f.title)}", highlight=False, soft_wrap=True)
    diff = detail.diff
    for d in diff[:MAX_DIFF_LINES]:
        style = "red" if d.startswith("-") else "green"
        console.print(f"    [{style}]{escape(d)}[/]", highlight=False, soft_wrap=True)
    if verbose or not diff:
        console.print(f"    [dim]fix:[/] {escape(f.fix)}", highlight=False, soft_wrap=True)
    if verbose:
        console.print(f"    [dim]why:[/] {escape(f.evidence)}", highlight=False, soft_wrap=True)


def _shares(f: Finding) -> str:
    """``time`` is the share the fix acts on; ``loop`` the enclosing loop's (inclusive)."""
    parts = [] if f.time_share is None else [f"time {f.time_share:.1%}"]
    loop_share = f.lint.loop_share if f.lint else None
    if loop_share is not None:
        parts.append(f"loop {loop_share:.1%}")
    parts.append(f"[bold green]est. {f.estimated_speedup:.2f}x[/]")
    return "  ".join(parts)


def _where(f: Finding, cwd: Path) -> str:
    loc = f.location or {}
    file = str(loc.get("file", "?"))
    try:
        rel = os.path.relpath(file, cwd)
        file = rel if not rel.startswith("..") else file
    except ValueError:  # another drive on Windows
        pass
    return f"{file}:{loc.get('line', '?')}"
