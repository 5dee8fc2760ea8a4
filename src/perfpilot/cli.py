"""The ``perfpilot`` command line.

Each command lives in its own module under :mod:`perfpilot.commands` exposing
``register(app)``; this module only assembles them and turns :class:`UserError` into one
line on stderr and exit code 2 (no traceback for the user's mistakes).
"""

from __future__ import annotations

import importlib
import re
import sys
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup, TyperOption

from perfpilot.errors import UserError

# Command names, in the order of `perfpilot --help`; each is the module
# perfpilot.commands.<name with - as _>.
COMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "run",
    "profile",
    "lint",
    "tune",
    "run-script",
    "report",
    "devices",
)

_BRACED = re.compile(r"^\{(?P<name>.*)\}(?P<more>\.\.\.)?$")


class _PlainHelp:
    """``--help`` without typer's decorations: no ``<bool>`` after a flag (it takes no
    value) and no braces around a required argument in the usage line (``WORKLOAD``, not
    ``{WORKLOAD}``)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:  # typer shows an option's metavar in place of its type
            if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
                param.metavar = ""
        return params

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [_plain(piece) for piece in super().collect_usage_pieces(ctx)]  # type: ignore[misc]


def _plain(piece: str) -> str:
    """``{NAME}`` -> ``NAME``, ``{NAME}...`` -> ``NAME...``; ``[A...]...`` -> ``[A...]``."""
    m = _BRACED.match(piece)
    if m:
        piece = m["name"] + (m["more"] or "")
    if piece.endswith("......") or piece.endswith("...]..."):
        piece = piece[:-3]
    return piece


class PlainHelpCommand(_PlainHelp, TyperCommand):
    """Every perfpilot command (set in :func:`_register_all`)."""


class PlainHelpGroup(_PlainHelp, TyperGroup):
    """The ``perfpilot`` group itself."""


app = typer.Typer(
    name="perfpilot",
    cls=PlainHelpGroup,
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
        path = f"perfpilot.commands.{name.replace('-', '_')}"
        try:
            module = importlib.import_module(path)
        except ModuleNotFoundError as e:
            if e.name == path:
                continue  # command not built yet
            raise
        module.register(app)
    for info in app.registered_commands:
        if info.cls in (None, TyperCommand):  # typer's default: no class of the command's own
            info.cls = PlainHelpCommand


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
    """The process's entry: exit with :func:`main`'s code. After a Ctrl-C or SIGTERM stop
    (130, 143) the exit is bounded (:func:`perfpilot.interrupt.exit_within`), from the
    moment the command reports the stop: the user asked the process to end, and a
    half-shut-down DataLoader can otherwise hang it."""
    from perfpilot import interrupt

    interrupt.exit_after_command()
    code = main()
    if code in interrupt.STOP_CODES:
        interrupt.exit_within(code)  # (already armed if the command reported a stop)
        # Free what the interrupted trial left in reference cycles (a DataLoader iterator
        # held by a traceback) now, while the bound's thread can still run: in the
        # interpreter's last collection, daemon threads can no longer take the GIL.
        import gc

        gc.collect()
    sys.exit(code)


if __name__ == "__main__":
    run_cli()
