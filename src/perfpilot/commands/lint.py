"""``perfpilot lint PATH...``: slow algorithms and data structures, ranked by measured time.

Advice, not a gate: the exit code is 0 whatever is found, unless ``--fail-on`` names rules
(or ``any``); then it is 1 when such a finding is in code at or above 1% of the run (with
a profile) or anywhere (without one).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from perfpilot.errors import UserError

if TYPE_CHECKING:
    from perfpilot.lint import LintReport
    from perfpilot.record import Finding

JSON_SCHEMA = "perfpilot.lint/3"  # 3: no extra; factor on the finding, the rest in lint


def register(app: typer.Typer) -> None:
    @app.command()
    def lint(
        paths: list[Path] = typer.Argument(
            ..., metavar="PATH...", help="Python files or directories to lint."),
        profile: Path | None = typer.Option(
            None, "--profile", metavar="FILE",
            help="A run record (JSON) with stack samples: rank findings by the measured time "
                 "of their line and loop."),
        json_out: str | None = typer.Option(
            None, "--json", metavar="FILE",
            help="Also write the findings as JSON to this file ('-': print JSON to stdout "
                 "instead of the terminal report)."),
        fail_on: str | None = typer.Option(
            None, "--fail-on", metavar="RULES",
            help="Comma-separated rule ids or prefixes, or 'any': exit 1 if such a finding is "
                 "reported (demoted ones excepted)."),
        select: str | None = typer.Option(
            None, "--select", metavar="RULES",
            help="Only these rule ids or prefixes (comma-separated), e.g. "
                 "'inefficient-membership,ruff:PERF'."),
        ignore: str | None = typer.Option(
            None, "--ignore", metavar="RULES",
            help="Skip these rule ids or prefixes (comma-separated)."),
        no_ruff: bool = typer.Option(False, "--no-ruff", help="Do not run ruff's rules."),
        verbose: bool = typer.Option(
            False, "--verbose", "-v", help="Show each finding's evidence and fix."),
    ) -> None:
        """Find slow algorithms and data structures; rank them by measured time."""
        from perfpilot.lint import run_lint
        from perfpilot.record import RunRecord
        from perfpilot.render.lint_console import render_lint

        chosen, skipped = _ids(select, "--select"), _ids(ignore, "--ignore")
        gate = _ids(fail_on, "--fail-on")
        record = RunRecord.load(profile) if profile is not None else None
        with _progress() as tick:
            report = run_lint(paths, record=record, use_ruff=not no_ruff, select=chosen,
                              ignore=skipped, on_file=tick)
        if json_out is not None:
            _write_json(report, json_out, profile)
        if json_out != "-":
            render_lint(report, Console(), verbose=verbose)
        if gate and _failing(report.findings, gate):
            raise typer.Exit(1)


@contextmanager
def _progress() -> Iterator[Callable[[int, int], None]]:
    """A transient bar on stderr (only when it is a terminal): files linted so far."""
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True,
                  disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("linting", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _ids(text: str | None, option: str) -> tuple[str, ...]:
    """Comma-separated rule ids/prefixes; each must name a known rule or ruff code."""
    from perfpilot.lint import RULES_BY_ID

    if text is None:
        return ()
    ids = tuple(s.strip() for s in text.split(",") if s.strip())
    if not ids:
        raise UserError(f"{option}: expected rule ids, got {text!r}")
    for i in ids:
        known = i == "any" or i.startswith("ruff") or any(r.startswith(i) for r in RULES_BY_ID)
        if not known:
            raise UserError(f"{option}: unknown rule {i!r} (known: "
                            f"{', '.join(RULES_BY_ID)}, ruff:<CODE>, any)")
    return ids


def _failing(findings: list[Finding], patterns: tuple[str, ...]) -> bool:
    live = [f for f in findings if not f.demoted]
    if "any" in patterns:
        return bool(live)
    return any(f.id.startswith(patterns) for f in live)


def _write_json(report: LintReport, dest: str, profile: Path | None) -> None:
    doc = {
        "schema": JSON_SCHEMA,
        "profile": str(profile) if profile is not None else None,
        "profile_basis": report.profile_basis,
        "ruff": report.ruff,
        "files": list(report.files),
        "notes": list(report.notes),
        "findings": [f.to_dict() for f in report.findings],
    }
    text = json.dumps(doc, indent=2) + "\n"
    if dest == "-":
        typer.echo(text, nl=False)
        return
    try:
        Path(dest).write_text(text)
    except OSError as e:
        raise UserError(f"--json {dest}: cannot write ({e.strerror})") from None
