"""``perfpilot report DIR``: re-render a tuning's HTML report from its record, offline.

``DIR`` is a ``perfpilot tune --out`` directory (or its ``record.json``). The report is
rebuilt from the record alone (nothing is measured); trials the study holds beyond the
record (a run killed between two saves) are included. ``--json FILE`` writes the record,
with every trial, its state and reason (``-`` for stdout). A script tuning's record
(``perfpilot tune -- python train.py``: :func:`perfpilot.script_tune_record.is_script_record`)
is rendered with the script renderers; it has no study.
"""

from __future__ import annotations

from pathlib import Path

import typer

from perfpilot.errors import UserError


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)


def report_command(
    directory: Path = typer.Argument(
        ..., metavar="DIR", help="A `perfpilot tune` output directory (or its record.json)."),
    json_out: str | None = typer.Option(
        None, "--json", metavar="FILE",
        help="Also write the record (every trial, its state and reason) here; - for stdout."),
    html_out: Path | None = typer.Option(
        None, "--html", metavar="FILE", help="Write the HTML here instead of DIR/report.html."),
) -> None:
    """Re-render DIR/report.html from DIR/record.json (and write the record with --json)."""
    from rich.console import Console
    from rich.markup import escape

    from perfpilot.jsonio import write_text_atomic
    from perfpilot.render.tune_console import print_summary
    from perfpilot.render.tune_html import write_report
    from perfpilot.tune.report_source import record_for_report
    from perfpilot.tune_record import REPORT_FILE

    if directory.is_file():
        directory = directory.parent
    if not directory.is_dir():
        raise UserError(f"{directory}: no such directory (expected a `perfpilot tune --out` "
                        "directory)")
    if _report_script(directory, json_out, html_out):
        return
    rec = record_for_report(directory)
    html_path = html_out or directory / REPORT_FILE
    write_report(rec, html_path)
    if json_out == "-":
        typer.echo(rec.dumps(), nl=False)
        return
    if json_out is not None:
        write_text_atomic(Path(json_out), rec.dumps())
    console = Console()
    if rec.status != "complete":
        console.print(f"[yellow]this tuning is {escape(rec.status)}[/]"
                      + (f": {escape(rec.error)}" if rec.error else ""), highlight=False)
    print_summary(rec, directory, console, report=html_path)
    if json_out is not None:
        console.print(f"wrote the record to {escape(json_out)}", highlight=False)


def _report_script(directory: Path, json_out: str | None, html_out: Path | None) -> bool:
    """Render DIR's script tuning record, if that is what DIR holds (else False)."""
    import json

    from rich.console import Console

    from perfpilot.jsonio import load_json, write_text_atomic
    from perfpilot.render.script_tune_console import REPORT_FILE, print_script_summary
    from perfpilot.render.script_tune_html import write_script_report
    from perfpilot.script_tune_record import ScriptTuneRecord, is_script_record
    from perfpilot.tune_record import RECORD_FILE

    path = directory / RECORD_FILE
    if not path.is_file():
        return False
    data = load_json(path, "tuning record")
    if not is_script_record(data):
        return False
    rec = ScriptTuneRecord.from_dict(data)
    html_path = html_out or directory / REPORT_FILE
    write_script_report(rec, html_path)
    text = json.dumps(rec.to_dict(), indent=1) + "\n"
    if json_out == "-":
        typer.echo(text, nl=False)
        return True
    if json_out is not None:
        write_text_atomic(Path(json_out), text)
    console = Console()
    print_script_summary(rec, directory, console, report=html_path)
    if json_out is not None:
        console.print(f"wrote the record to {json_out}", highlight=False, markup=False)
    return True
