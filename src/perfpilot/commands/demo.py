"""``perfpilot demo``: tune the built-in ``digits`` workload with a small budget and write
its plan and report (by default under ``./perfpilot-demo``).

The demo is the tuner end to end (:func:`perfpilot.tune.pipeline.tune`): baseline,
hardware, loader and batch stages, final check, report. Each run starts a fresh study in
its directory (a previous demo's is replaced). On 2 CPU cores it finishes in under 3
minutes (``benchmarks/demo.py`` times it).
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

DEMO_BUDGET = "100s"
# Smaller batch-stage searches than the defaults, so the whole demo fits in its budget.
DEMO_OPTIONS = {"batch": {"refine_runs": 2, "repeats": 2, "finalists": 1,
                          "throughput_repeats": 3, "candidates": 2}}


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)


def demo_command(
    out: Path = typer.Option(
        Path("perfpilot-demo"), "--out", metavar="DIR",
        help="Directory for plan.json, record.json, report.html and the study (created if "
             "missing; a previous demo's study there is replaced)."),
    budget: str = typer.Option(
        DEMO_BUDGET, "--budget", metavar="TIME", help="Tuning time, e.g. 100s or 3m."),
) -> None:
    """Tune the built-in digits workload (a small CNN, offline data) and write its report."""
    entered = time.monotonic()  # the budget is the command's wall time
    from rich.console import Console
    from rich.markup import escape

    from perfpilot.commands.tune import (
        REPORT_RESERVE_S,
        command_origin,
        parse_duration,
        reported,
        write_tune_report,
    )
    from perfpilot.render.progress import command_progress
    from perfpilot.render.tune_console import print_summary
    from perfpilot.tune.pipeline import tune
    from perfpilot.tune.preflight import check_budget
    from perfpilot.workload import load_workload

    budget_s = parse_duration(budget, "--budget")
    check_budget(budget_s)  # before load_workload imports torch
    w = load_workload("digits")
    console = Console()
    console.print(f"Tuning the built-in [bold]{w.name}[/] workload ({w.description}) for "
                  f"{budget_s:.0f} s: baseline, hardware, loader, batch/LR, final check.",
                  highlight=False)
    with reported(out):
        rec = tune(w, budget_s=budget_s, out_dir=out, spec="digits", restart=True,
                   progress=command_progress(), options=DEMO_OPTIONS,
                   origin=command_origin(entered), reserve_s=REPORT_RESERVE_S)
    print_summary(write_tune_report(rec, out), out, console, wrote_plan=True)
    console.print(f"Open the report: [bold]{escape(str((out / 'report.html').resolve()))}[/]",
                  highlight=False)
