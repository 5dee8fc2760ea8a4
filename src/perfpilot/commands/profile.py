"""``perfpilot profile``: name the bottleneck of a training run, with evidence, a fix and
its estimated gain.

Two forms::

    perfpilot profile WORKLOAD [--plan p.json]
    perfpilot profile [OPTIONS] -- python script.py ARGS...

The target runs in a child process with perfpilot's probes installed (no code changes);
its output and exit code pass through. Then the raw profile becomes a RunRecord
(:mod:`perfpilot.probes.assemble`), the rules name findings (:mod:`perfpilot.diagnose`),
``--verify`` measures the top fixes that are settings (:mod:`perfpilot.probes.verify`),
and the summary is printed (after the script's own output), with ``--json``/``--html``
files on request.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from perfpilot.probes.target import WORKLOAD_DEFAULT_S

if TYPE_CHECKING:
    from perfpilot.probes.launch import Target
    from perfpilot.record import RunRecord

DEFAULT_RATE_HZ = 100


def register(app: typer.Typer) -> None:
    app.command("profile")(profile_command)


def profile_command(
    target: list[str] = typer.Argument(
        None, metavar="WORKLOAD | -- python script.py ARGS...",
        help="A workload (file.py:factory, package.module:factory or a built-in name), or, "
             "after --, the command that runs your script. Without --steps/--duration a "
             f"WORKLOAD trains for {WORKLOAD_DEFAULT_S:g} s and a script runs to its end."),
    plan: Path | None = typer.Option(
        None, "--plan", metavar="FILE", help="Plan JSON for a WORKLOAD (partial is fine)."),
    json_out: Path | None = typer.Option(
        None, "--json", metavar="FILE", help="Write the RunRecord (with findings) here."),
    html_out: Path | None = typer.Option(
        None, "--html", metavar="FILE", help="Write a self-contained HTML report here."),
    duration: str | None = typer.Option(
        None, "--duration", metavar="TIME",
        help="Profile TIME (e.g. 20, 20s, 2m) from the first training step, then write the "
             "profile and "
             "end the script (exit code 0; nothing is raised into it) "
             f"(default: a WORKLOAD trains {WORKLOAD_DEFAULT_S:g} s, a script runs to its "
             "end)."),
    steps: int | None = typer.Option(
        None, "--steps", metavar="N", min=1,
        help="Profile N steady steps (after 2 warm-up steps), then write the profile and "
             "end the script."),
    keep_running: bool = typer.Option(
        False, "--keep-running",
        help="With --steps/--duration: when the window is over, stop measuring but let "
             "the script run on, unwatched, to its own end (its exit code passes through)."),
    verify: bool = typer.Option(
        False, "--verify",
        help="Re-run with the top fixes that are settings (workers, batch size, threads...) "
             "applied and report the measured speedup with its 95% interval."),
    rate: float = typer.Option(
        DEFAULT_RATE_HZ, "--rate", metavar="HZ", min=1, max=2000,
        help="Stack sampling rate."),
    ops: bool = typer.Option(
        True, "--ops/--no-ops", help="Record a short torch.profiler window (hot ops)."),
    quiet: bool = typer.Option(False, "--quiet", help="Print no summary."),
) -> None:
    """Profile a training run and name its bottleneck: evidence, fix, estimated gain."""
    from perfpilot.plan import check_plan_file
    from perfpilot.probes.launch import parse_target, run_profiled
    from perfpilot.workload import check_spec

    words = list(target or [])
    duration_s = None if duration is None else _window_seconds(duration)
    if plan is not None:
        check_plan_file(plan)
    tgt = parse_target(words, str(plan) if plan else None)
    if tgt.workload is not None:  # here, not in the child: one line, no profile of a failure
        check_spec(tgt.workload)
    config = {"interval_s": 1.0 / rate, "steps": steps, "duration_s": duration_s,
              "window": ops, "keep_running": keep_running}
    result = run_profiled(tgt, config)
    code = exit_status(result.exit_code)
    if result.raw is None:
        from rich.console import Console
        from rich.markup import escape

        Console(stderr=True).print(
            f"[bold red]perfpilot:[/] {escape(tgt.display)} left no profile: it "
            f"{_ended(result.exit_code)} before the profiler's first save.", highlight=False)
        raise typer.Exit(code or 1)
    if result.raw.get("user_error"):  # a bad WORKLOAD/plan: the child printed its one line
        raise typer.Exit(2)
    record, notes = analyze(result.raw)
    if result.exit_code < 0:
        record.profile = dataclasses.replace(record.profile, signal=-result.exit_code)
        notes.append(f"the script {_ended(result.exit_code)}; the profile is what was saved "
                     "before (it is saved every 10 s)")
    if verify:
        _verify(tgt, record, steps)
    _write_outputs(record, json_out, html_out)
    if not quiet:
        from rich.console import Console
        from rich.markup import escape

        from perfpilot.render.profile_console import print_profile

        console = Console()
        console.print()
        print_profile(record, console)
        for note in notes:
            console.print(f"[dim]note: {escape(note)}[/]")
        for path in (json_out, html_out):
            if path is not None:
                console.print(f"[dim]wrote {escape(str(path))}[/]")
    if code:
        raise typer.Exit(code)


def _window_seconds(text: str) -> float:
    """``--duration``: seconds as for ``--budget`` (``20``, ``20s``, ``2m``), at least 0.1."""
    from perfpilot.commands.tune import parse_duration
    from perfpilot.errors import UserError

    seconds = parse_duration(text, "--duration")
    if seconds < 0.1:
        raise UserError(f"--duration: {text!r} is shorter than 0.1 s")
    return seconds


def exit_status(returncode: int) -> int:
    """A child's return code as a shell would report it (killed by signal N: 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


def _ended(returncode: int) -> str:
    if returncode < 0:
        import signal

        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with code {returncode}"


def analyze(raw: dict[str, Any]) -> tuple[RunRecord, list[str]]:
    """RunRecord with its ranked ``findings``, and notes on what was
    unavailable (e.g. lint)."""
    from perfpilot.diagnose import diagnose
    from perfpilot.probes.assemble import build_record

    record = build_record(raw)
    notes: list[str] = []
    findings = diagnose(record, notes=notes)
    record.findings = tuple(findings)
    return record, notes


def _verify(tgt: Target, record: RunRecord, steps: int | None) -> None:
    """Set ``verified`` on the findings whose fix is a setting."""
    from rich.progress import Progress

    from perfpilot.probes.verify import ROUNDS, verifiable, verify_finding

    chosen = verifiable(list(record.findings))
    if not chosen:
        return
    measured = {}
    with Progress(transient=True) as bar:
        for f in chosen:
            task = bar.add_task(f"verifying {f.id} ({ROUNDS} rounds)", total=ROUNDS)
            measured[id(f)] = verify_finding(
                tgt, record, f, steps=steps, on_round=lambda *_, t=task: bar.advance(t))
    record.findings = tuple(dataclasses.replace(f, verified=measured[id(f)])
                            if id(f) in measured else f for f in record.findings)


def _write_outputs(record: RunRecord, json_out: Path | None, html_out: Path | None) -> None:
    if json_out is not None:
        record.save(json_out)
    if html_out is not None:
        from perfpilot.render.profile_html import profile_page

        tmp = html_out.with_name(html_out.name + ".tmp")
        tmp.write_text(profile_page(record))
        tmp.replace(html_out)
