"""``perfpilot run``: train a workload under a plan and show where each step's time goes.

Prints the phase table (ms/step and share), throughput, step time with its CI, peak
memory, the metric and time-to-target; ``--json`` writes the RunRecord atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from perfpilot.errors import UserError

DEFAULT_STEPS = 100  # when neither --steps, --time nor --until-target is given


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)


def run_command(
    workload: str = typer.Argument(
        ..., metavar="WORKLOAD",
        help="Workload: path/to/file.py:factory, package.module:factory or a built-in name "
             "(digits, charlm, augmented)."),
    plan: Path | None = typer.Option(
        None, "--plan", metavar="FILE",
        help="Plan JSON file; may be partial (missing keys come from the workload's "
             "baseline). Default: the baseline."),
    steps: int | None = typer.Option(
        None, "--steps", metavar="N", min=1,
        help=f"Train this many optimizer steps (default {DEFAULT_STEPS} when no "
             "--time/--until-target)."),
    time_s: float | None = typer.Option(
        None, "--time", metavar="S",
        help="Train for this many seconds of training time (evaluation excluded)."),
    json_out: Path | None = typer.Option(
        None, "--json", metavar="FILE", help="Write the RunRecord JSON here (atomically)."),
    eval_every: float | None = typer.Option(
        None, "--eval-every", metavar="S",
        help="Evaluate the metric every S seconds of training (default: at the end; with "
             "--until-target every 1 s, stretched to keep evaluation under 25%)."),
    until_target: bool = typer.Option(
        False, "--until-target",
        help="Stop when the workload's target metric is reached (capped by --steps/--time, "
             "else 600 s)."),
    warmup: int = typer.Option(
        2, "--warmup", metavar="N", min=0,
        help="Steps trained first but left out of the statistics."),
    seed: int | None = typer.Option(
        None, "--seed", metavar="N", help="Random seed (default: the workload's)."),
) -> None:
    """Train WORKLOAD and report the step phase breakdown, throughput and memory."""
    from perfpilot.plan import check_plan_file
    from perfpilot.workload import check_spec

    # Every input is checked before torch is imported: a mistake costs no start-up.
    if steps is not None and time_s is not None:
        raise UserError("--steps and --time cannot be used together; give one of them")
    if time_s is not None and not time_s > 0:
        raise UserError(f"--time must be > 0 seconds, got {time_s}")
    if steps is None and time_s is None and not until_target:
        steps = DEFAULT_STEPS
    if json_out is not None:
        check_writable(json_out)
    if plan is not None:
        check_plan_file(plan)
    check_spec(workload)

    from perfpilot.engine import NonFiniteError, run
    from perfpilot.errors import PlanError
    from perfpilot.plan import load_plan
    from perfpilot.render.console import print_run
    from perfpilot.render.progress import command_progress
    from perfpilot.workload import check_workload, load_workload

    w = load_workload(workload)
    check_workload(w)
    p = load_plan(plan, base=w.baseline) if plan is not None else w.baseline
    try:
        record = run(w, p, steps=steps, time_s=time_s, until_target=until_target,
                     eval_every_s=eval_every, warmup_steps=warmup, seed=seed,
                     progress=command_progress())
    except PlanError as e:  # e.g. device cuda on a CPU-only machine: name the plan file
        if plan is None or str(e).startswith(f"{plan}:"):
            raise
        raise PlanError(f"{plan}: {e}") from None
    except NonFiniteError as e:  # a diverging model is the user's to fix, not a crash
        msg = diverged(w, p, e)
        if json_out is not None:
            msg += save_partial(e.record, msg, json_out)
        raise UserError(msg) from None
    if json_out is not None:
        save_record(record, json_out)
    print_run(record, json_path=str(json_out) if json_out is not None else None)


def diverged(w: Any, p: Any, e: Any) -> str:
    """The one-line message for a NaN/inf loss or metric (a NonFiniteError ``e``)."""
    if e.what == "loss":
        what = f"the loss is {e.value} at step {e.step}"
    else:
        what = f"the metric {w.metric_name} is {e.value} after step {e.step}"
    return (f"workload {w.name!r} diverged: {what} (precision={p.precision}, lr={p.lr:g}); "
            "lower the lr or check the model and data")


def save_partial(record: Any, error: str, json_out: Path) -> str:
    """Write the steps measured before a failure (``record``, None if none completed) to
    ``json_out`` marked failed; the clause saying so, appended to the error line."""
    if record is None:
        return f" (no step completed: {json_out} was not written)"
    record.status, record.error = "failed", error
    save_record(record, json_out)
    return f" (what was measured before is in {json_out}, marked failed)"


def check_writable(path: Path) -> None:
    """Fail before training, with one line naming the path, if the record can't be written."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UserError(f"cannot write the record to {path}: it is a directory")
    if not parent.is_dir():
        raise UserError(f"cannot write the record to {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"cannot write the record to {path}: permission denied")


def save_record(record: object, path: Path) -> None:
    """``record.save(path)`` (temp file + rename) with OS errors as one-line UserErrors."""
    try:
        record.save(path)  # type: ignore[attr-defined]
    except OSError as e:
        raise UserError(f"cannot write the record to {path}: {e.strerror or e}") from None
