"""``perfpilot tune``: from a workload to a measured, applied plan, within a time budget.

Runs baseline -> hardware -> loader -> batch/LR -> final check through
:func:`perfpilot.tune.pipeline.tune` with a live progress display (stage, trials, best so
far, time left; on stderr when it is a terminal); the tuner writes ``DIR/plan.json``,
``DIR/record.json`` and the study (``DIR/study.journal``) and returns the record, which
this command renders to ``DIR/report.html`` (also when the tuning stopped or failed: from
the record it left). A killed run continues with ``--resume`` and repeats no finished
trial. See docs/tune.md.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from perfpilot.errors import UserError

if TYPE_CHECKING:
    from perfpilot.tune_record import TuneRecord

DEFAULT_OUT = "perfpilot-out"
DEFAULT_BUDGET = "10m"
# Kept at the end of --budget for writing report.html and the summary (0.7 s measured on
# digits at load 0.6; 2 s leaves room for a slower machine, not measured). Capped by the
# tuner at 10% of the budget.
REPORT_RESERVE_S = 2.0
EXECUTORS = ("inline", "process", "ray")
_NUM = r"(\d+(?:\.\d+)?)"
_DURATION = re.compile(rf"(?:{_NUM}h)?(?:{_NUM}m)?(?:{_NUM}s)?")


def register(app: typer.Typer) -> None:
    app.command("tune")(tune_command)


def tune_command(
    what: list[str] = typer.Argument(
        None, metavar="WORKLOAD | -- python script.py ARGS...",
        help="Workload: path/to/file.py:factory, package.module:factory or a built-in name "
             "(digits, charlm, augmented); or, after --, the command that runs your own "
             "unmodified script (see docs/tune-scripts.md)."),
    only: str | None = typer.Option(
        None, "--only", metavar="STAGES",
        help="Comma-separated stages to run, e.g. hardware,loader (default: all, in order: "
             "hardware, loader, batch)."),
    budget: str = typer.Option(
        DEFAULT_BUDGET, "--budget", metavar="TIME",
        help="Total tuning time, e.g. 90s, 5m, 1h: baseline, stages and final check."),
    out: Path = typer.Option(
        Path(DEFAULT_OUT), "--out", metavar="DIR",
        help="Directory for plan.json, record.json, report.html and the study (created if "
             "missing)."),
    resume: bool = typer.Option(
        False, "--resume",
        help="Continue the study in DIR (after a crash, Ctrl-C or kill): finished trials are "
             "recalled, not repeated. Same WORKLOAD, --only, --budget and --target."),
    executor: str = typer.Option(
        "inline", "--executor", metavar="KIND",
        help="Where portable trials run: inline (this process), process (a warm worker "
             "process) or ray. Timing trials run one at a time per CPU or GPU."),
    target: float | None = typer.Option(
        None, "--target", metavar="VALUE",
        help="Target value of the workload's metric for time to target (default: the "
             "workload's own target)."),
    horizon: str | None = typer.Option(
        None, "--horizon", metavar="TIME",
        help="Expected length of your real training run, e.g. 2h: a compile or warm-up cost "
             "must pay for itself within it. Default: the baseline's measured time to the "
             "target, else each stage's default (stated in the report)."),
) -> None:
    """Tune WORKLOAD (or a script) by measurement; write DIR/plan.json with the evidence."""
    entered = time.monotonic()  # the budget is the command's wall time
    words = list(what or [])
    if _is_script(words):
        from perfpilot.commands.tune_script import tune_script_command

        tune_script_command(words, only=only, budget=budget, out=out, resume=resume,
                            executor=executor, target=target, horizon=horizon,
                            entered=entered)
        return
    if len(words) != 1:
        raise UserError("give one WORKLOAD, or your script after --: "
                        "perfpilot tune -- python train.py ARGS")
    workload = words[0]
    from rich.console import Console

    from perfpilot.render.progress import command_progress
    from perfpilot.render.tune_console import print_summary
    from perfpilot.tune.pipeline import tune
    from perfpilot.tune.preflight import check_budget
    from perfpilot.workload import load_workload

    # Options are parsed here, before torch is imported (none of the modules above imports
    # it), and the rest checked by tune() before it creates --out: a mistake leaves nothing
    # behind.
    stages = parse_stages(only)
    budget_s = parse_duration(budget, "--budget")
    check_budget(budget_s)
    horizon_s = parse_duration(horizon, "--horizon") if horizon is not None else None
    kind = parse_executor(executor)
    again = resume_command(workload, only=only, budget=budget, out=out, executor=executor,
                           target=target, horizon=horizon)
    with stop_on_signals(out, again):
        w = load_workload(workload)
        with reported(out):
            rec = tune(w, stages=stages, budget_s=budget_s, out_dir=out, resume=resume,
                       executor=kind, target=target, horizon_s=horizon_s, spec=workload,
                       progress=command_progress(), origin=command_origin(entered),
                       reserve_s=REPORT_RESERVE_S)
        rec = write_tune_report(rec, out)
    print_summary(rec, out, Console(), wrote_plan=True)


def _is_script(words: list[str]) -> bool:
    """A script command line (``python train.py``, ``train.py``), not a workload spec."""
    if not words:
        return False
    first = Path(words[0]).name
    return (first.startswith("python") and not first.endswith(".py")) or \
        (words[0].endswith(".py") and ":" not in words[0])


# ---------------------------------------------------------------- the budget


def command_origin(entered: float) -> float:
    """The ``time.monotonic()`` reading the budget counts from: the process's start when
    the process is this command (``perfpilot ...`` or ``python -m perfpilot ...``), so
    interpreter start-up and imports count; else ``entered``, when the command was called
    (in-process, e.g. by tests or a notebook, the process's age is not the command's)."""
    import psutil

    argv0 = sys.argv[0] if sys.argv else ""
    own = Path(argv0).name in ("perfpilot", "perfpilot.exe") or \
        argv0.endswith(("perfpilot/__main__.py", "perfpilot\\__main__.py"))
    if not own:
        return entered
    try:
        age = max(0.0, time.time() - psutil.Process().create_time())
    except (psutil.Error, OSError):  # no process table (some sandboxes): from the call
        return entered
    return min(entered, time.monotonic() - age)


# ---------------------------------------------------------------- the report


def write_tune_report(rec: TuneRecord, out: Path) -> TuneRecord:
    """Render ``out/report.html`` from ``rec``. A rendering bug must not cost the tuning:
    it becomes a note in the record (saved again), and ``perfpilot report DIR`` renders
    it once fixed. Returns the record as saved."""
    import traceback

    from perfpilot.render.tune_html import write_report
    from perfpilot.tune_record import RECORD_FILE, REPORT_FILE

    try:
        write_report(rec, out / REPORT_FILE)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - said in the record and on the terminal
        rec = rec.with_note(f"report.html could not be rendered ({e!r}, a perfpilot bug); "
                            "`perfpilot report DIR` renders it again").replace(
            report_traceback=traceback.format_exc())
        rec.save(out / RECORD_FILE)
    return rec


class reported:
    """Around :func:`tune`: when it raises (a stop, Ctrl-C, a bug), the report is
    rendered from the record it left in ``out`` before the exception goes on (nothing is
    rendered when it stopped before writing a record)."""

    def __init__(self, out: Path, render: Callable[[Path], Any] | None = None) -> None:
        """``render(path)`` loads the record at ``path`` and writes its report (default:
        a workload tuning's)."""
        self.out = out
        self.render = render or (lambda path: write_tune_report(_load_tune(path), out))

    def __enter__(self) -> None:
        self.started = time.time()

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        from perfpilot.tune_record import RECORD_FILE

        path = self.out / RECORD_FILE
        if exc_type is None or not path.is_file() or path.stat().st_mtime < self.started - 1:
            return
        try:
            self.render(path)
        except Exception:  # noqa: BLE001 - the tuning's own error is the one to show
            pass


def _load_tune(path: Path) -> TuneRecord:
    from perfpilot.tune_record import TuneRecord

    return TuneRecord.load(path)


# ---------------------------------------------------------------- Ctrl-C and SIGTERM


@contextlib.contextmanager
def stop_on_signals(out: Path, again: str) -> Iterator[None]:
    """Ctrl-C or SIGTERM stop the tuning cleanly (see :mod:`perfpilot.interrupt`): the
    record says "interrupted", stderr says how to resume (a terminal or not), and the exit
    code is 128 + the signal (130 for SIGINT, 143 for SIGTERM)."""
    from perfpilot import interrupt

    try:
        with interrupt.handling():
            yield
    except KeyboardInterrupt as e:
        signum = interrupt.signum_of(e)
        if (out / "study.journal").exists():
            hint = (f"the finished trials are kept in {out}; continue with:\n  {again}")
        else:
            hint = "nothing was measured yet"
        print(f"perfpilot tune: interrupted ({interrupt.signal_name(signum)}); {hint}",
              file=sys.stderr, flush=True)
        interrupt.stopped(interrupt.exit_code(signum))
        raise typer.Exit(interrupt.exit_code(signum)) from None


def resume_command(workload: str, *, only: str | None, budget: str, out: Path,
                   executor: str, target: float | None, horizon: str | None) -> str:
    """The command line that continues this tuning (the same options, plus --resume)."""
    args = ["perfpilot", "tune", workload]
    if only is not None:
        args += ["--only", only]
    args += ["--budget", budget]
    if executor != "inline":
        args += ["--executor", executor]
    if target is not None:
        args += ["--target", str(target)]
    if horizon is not None:
        args += ["--horizon", horizon]
    return shlex.join([*args, "--resume", "--out", str(out)])


# ---------------------------------------------------------------- parsing


def parse_duration(text: str, option: str) -> float:
    """Seconds in ``90``, ``90s``, ``5m``, ``1.5h`` or ``1h30m``; a UserError otherwise."""
    raw = text.lower().replace(" ", "")
    if re.fullmatch(_NUM, raw):
        seconds = float(raw)
    else:
        m = _DURATION.fullmatch(raw)
        if not raw or m is None:
            raise UserError(f"{option}: {text!r} is not a duration (e.g. 90s, 5m, 1h)")
        h, mi, s = (float(g) if g else 0.0 for g in m.groups())
        seconds = 3600 * h + 60 * mi + s
    if seconds <= 0:
        raise UserError(f"{option}: {text!r} must be longer than 0 seconds")
    return seconds


def parse_executor(text: str) -> str:
    kind = text.strip().lower()
    if kind not in EXECUTORS:
        raise UserError(f"--executor: {text!r} is not one of {', '.join(EXECUTORS)}")
    if kind == "ray" and not _ray_installed():
        raise UserError("--executor ray needs Ray: pip install 'perfpilot[ray]'")
    return kind


def _ray_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def parse_stages(only: str | None) -> list[str]:
    """The stages to run, in :data:`STAGE_ORDER`; unknown or unavailable names are errors.

    Without ``--only``: every stage whose module is installed."""
    from perfpilot.tune.stage import STAGE_ORDER

    if only is None:
        return [s for s in STAGE_ORDER if _available(s)]
    names = [n.strip() for n in only.split(",") if n.strip()]
    if not names:
        raise UserError(f"--only: no stage named (stages: {', '.join(STAGE_ORDER)})")
    for n in names:
        if n not in STAGE_ORDER:
            raise UserError(f"--only: unknown stage {n!r} (stages: {', '.join(STAGE_ORDER)})")
        if not _available(n):
            raise UserError(f"--only: stage {n!r} is not available in this perfpilot build")
    return [s for s in STAGE_ORDER if s in names]


def _available(stage: str) -> bool:
    import importlib.util

    from perfpilot.tune.stage import STAGES

    return importlib.util.find_spec(STAGES[stage].split(":")[0]) is not None
