"""``python -m perfpilot``: the same as the ``perfpilot`` command."""

from __future__ import annotations

from perfpilot.cli import run_cli

if __name__ == "__main__":
    run_cli()
