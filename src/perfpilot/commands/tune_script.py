"""``perfpilot tune [OPTIONS] -- python train.py ARGS``: tune an unmodified script.

The options are the workload form's (see :mod:`perfpilot.commands.tune`); ``--only``
takes the same stage names (``loader``: DataLoader knobs; ``hardware``: threads,
precision, compile, memory format, allocator; ``batch``). ``--target`` and
``--executor`` do not apply (every run of a script is already its own process) and are
refused with the reason. Writes ``DIR/plan.json``, ``DIR/train.patch``,
``DIR/record.json`` and ``DIR/report.html``; see docs/tune-scripts.md.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from perfpilot.errors import UserError

if TYPE_CHECKING:
    from perfpilot.script_tune_record import ScriptTuneRecord

SCRIPT_STAGES = ("hardware", "loader", "batch")


def tune_script_command(words: list[str], *, only: str | None, budget: str, out: Path,
                        resume: bool, executor: str, target: float | None,
                        horizon: str | None, entered: float) -> None:
    from perfpilot.commands.tune import (
        command_origin,
        parse_duration,
        reported,
        stop_on_signals,
    )
    from perfpilot.probes.launch import parse_target
    from perfpilot.render.progress import command_progress
    from perfpilot.script_tune_record import ScriptTuneRecord
    from perfpilot.tune.preflight import check_budget

    if target is not None:
        raise UserError("--target applies to a WORKLOAD's metric; a script is tuned for "
                        "speed with its training loss kept (see docs/tune-scripts.md)")
    if executor.strip().lower() != "inline":
        raise UserError(f"--executor {executor}: a script's runs are already separate "
                        "processes, one at a time (leave --executor out)")
    stages = parse_script_stages(only)
    budget_s = parse_duration(budget, "--budget")
    check_budget(budget_s)
    horizon_s = parse_duration(horizon, "--horizon") if horizon is not None else None
    tgt = parse_target(words)
    again = resume_line(words, only=only, budget=budget, out=out, horizon=horizon)
    from perfpilot.tune.script import tune_script

    with stop_on_signals(out, again):
        with reported(out, lambda path: render_report(ScriptTuneRecord.load(path), out)):
            rec = tune_script(tgt, budget_s=budget_s, out_dir=out, resume=resume,
                              stages=stages, horizon_s=horizon_s,
                              progress=command_progress(), origin=command_origin(entered))
        rec = render_report(rec, out)
    _summary(rec, out)


def parse_script_stages(only: str | None) -> list[str] | None:
    if only is None:
        return None
    names = [n.strip() for n in only.split(",") if n.strip()]
    if not names:
        raise UserError(f"--only: no stage named (stages: {', '.join(SCRIPT_STAGES)})")
    for n in names:
        if n not in SCRIPT_STAGES:
            raise UserError(f"--only: unknown stage {n!r} (stages: {', '.join(SCRIPT_STAGES)})")
    return names


def resume_line(words: list[str], *, only: str | None, budget: str, out: Path,
                horizon: str | None) -> str:
    args = ["perfpilot", "tune"]
    if only is not None:
        args += ["--only", only]
    args += ["--budget", budget]
    if horizon is not None:
        args += ["--horizon", horizon]
    return shlex.join([*args, "--resume", "--out", str(out), "--", *words])


def render_report(rec: ScriptTuneRecord, out: Path) -> ScriptTuneRecord:
    """Write ``out/report.html``; a rendering bug becomes a note, never a lost tuning."""
    from perfpilot.tune_record import RECORD_FILE, REPORT_FILE

    try:
        from perfpilot.render.script_tune_html import write_script_report

        write_script_report(rec, out / REPORT_FILE)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - said in the record and on the terminal
        rec = rec.with_note(f"report.html could not be rendered ({e!r}, a perfpilot bug); "
                            "`perfpilot report DIR` renders it again")
        rec.save(out / RECORD_FILE)
    return rec


def _summary(rec: ScriptTuneRecord, out: Path) -> None:
    from rich.console import Console

    try:
        from perfpilot.render.script_tune_console import print_script_summary
    except ImportError:  # pragma: no cover - the renderer ships with perfpilot
        Console().print(rec.result.summary)
        return
    print_script_summary(rec, out, Console())
