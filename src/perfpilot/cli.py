"""The ``perfpilot`` command line.

Each command lives in its own module under :mod:`perfpilot.commands` exposing
``register(app)``; this module only assembles them and turns :class:`UserError` into one
line on stderr and exit code 2 (no traceback for the user's mistakes).
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console

from perfpilot.errors import UserError

# Order is the order of `perfpilot --help`.
COMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "run",
    "profile",
    "lint",
    "tune",
    "report",
    "devices",
)

app = typer.Typer(
    name="perfpilot",
    help="Make PyTorch training fast, automatically and with evidence.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback(invoke_without_command=True)
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    """Make PyTorch training fast, automatically and with evidence."""
    if version:
        from perfpilot import __version__

        typer.echo(__version__)
        raise typer.Exit()


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"perfpilot.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"perfpilot.commands.{name}":
                continue  # command not built yet
            raise
        module.register(app)


_register_all()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code.

    Usage errors are handled by typer (exit 2); a :class:`UserError` raised by a command
    becomes one red line on stderr and exit code 2.
    """
    try:
        app(args=argv, prog_name="perfpilot")
    except UserError as e:
        from rich.markup import escape

        # The message is plain text (paths, `pip install 'perfpilot[ray]'`), never markup.
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(e))}", highlight=False,
                                   soft_wrap=True)
        return 2
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


def run_cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run_cli()
