"""``perfpilot demo``: train the built-in ``digits`` workload to its target and show the
measured breakdown. (A later version runs the tuner here.)"""

from __future__ import annotations

from pathlib import Path

import typer

from perfpilot.errors import UserError

DEMO_CAP_S = 120.0  # seconds of training before the demo gives up on the target


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)


def demo_command(
    out: Path = typer.Option(
        Path("perfpilot-demo"), "--out", metavar="DIR", help="Directory for the demo's files "
                                              "(record.json); created if missing."),
) -> None:
    """Train the built-in digits workload to its target and show where the time goes."""
    from rich.console import Console

    from perfpilot.commands.run import save_record
    from perfpilot.engine import run
    from perfpilot.render.console import print_run
    from perfpilot.workload import check_workload, load_workload

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the demo directory {out}: {e.strerror or e}") from None
    w = load_workload("digits")
    check_workload(w)
    sign = ">=" if w.direction == "max" else "<="
    Console().print(f"Training [bold]{w.name}[/] with its baseline plan until {w.metric_name} "
                    f"{sign} {w.target} (at most {DEMO_CAP_S:.0f} s of training)...",
                    highlight=False)
    record = run(w, w.baseline, until_target=True, time_s=DEMO_CAP_S)
    path = out / "record.json"
    save_record(record, path)
    print_run(record, json_path=str(path))
