"""``perfpilot run-script --plan plan.json -- python train.py ARGS``: run an unmodified
script with a script plan's changes injected, and nothing else.

The plan is a :class:`~perfpilot.script_plan.ScriptPlan` file (what ``perfpilot tune --
python train.py`` writes). Its ``env`` goes into the script's environment; every other
knob is applied inside the script's process by the runner
(:func:`perfpilot.probes.launch.run_with_plan`, :mod:`perfpilot.probes.inject`). No stack
sampling, op window, calibration or report: the script's output and exit code pass
through unchanged. A knob that could not be applied (``fp16``, ``tf32`` without CUDA,
``channels_last`` without a convolution, no DataLoader built...) changes nothing and is
named on stderr after the script ends (``--quiet``: not named). ``--json FILE`` writes the
run's record (its ``injection`` section says what was applied; ``loss_history`` the loss
per step).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def register(app: typer.Typer) -> None:
    app.command("run-script")(run_script_command)


def run_script_command(
    command: list[str] = typer.Argument(
        None, metavar="-- python script.py ARGS...",
        help="After --, the command that runs your script (default: the plan's command)."),
    plan: Path = typer.Option(
        ..., "--plan", metavar="FILE",
        help="A script plan (JSON with \"format\": \"perfpilot.script-plan/1\")."),
    json_out: Path | None = typer.Option(
        None, "--json", metavar="FILE",
        help="Write the run's record (what was injected, the loss per step) here."),
    quiet: bool = typer.Option(
        False, "--quiet", help="Do not name the changes that could not be applied."),
) -> None:
    """Run a script with a script plan's changes injected (no profiling)."""
    from perfpilot.commands.profile import exit_status
    from perfpilot.errors import UserError
    from perfpilot.probes.launch import parse_target, run_with_plan
    from perfpilot.script_plan import load_script_plan

    sp = load_script_plan(plan)
    words = list(command or sp.command)  # none after --: the command the plan names
    if not words:
        raise UserError(f"{plan}: nothing to run: the plan names no command; give "
                        "`-- python script.py ARGS` after the options")
    target = parse_target(words)
    if target.kind != "script":
        raise UserError(f"run-script runs a Python script: `-- python {' '.join(words)}`")
    result = run_with_plan(target, sp.changes)
    code = exit_status(result.exit_code)
    if result.raw is not None and (json_out is not None or not quiet):
        _after(result.raw, json_out, quiet)
    if code:
        raise typer.Exit(code)


def _after(raw: dict[str, Any], json_out: Path | None, quiet: bool) -> None:
    """Write the record (``--json``) and name what was refused, on stderr: never a
    traceback, never a different exit code."""
    import sys

    from perfpilot.errors import UserError

    if json_out is not None:
        from perfpilot.probes.assemble import build_record

        try:
            build_record(raw).save(json_out)
        except UserError:
            raise
        except Exception as e:  # the script's run stands; only the record is missing
            print(f"perfpilot: no record written: {type(e).__name__}: {e}", file=sys.stderr)
    if not quiet:
        refused = ((raw.get("hooks") or {}).get("injection") or {}).get("refused") or {}
        for knob, why in refused.items():
            print(f"perfpilot: {knob} not applied: {why}", file=sys.stderr)
