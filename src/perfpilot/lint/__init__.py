"""perfpilot.lint: slow algorithms and data structures, ranked by measured time.

AST rules (one module per family: :mod:`membership`, :mod:`concat`, :mod:`queue`,
:mod:`join`, :mod:`tensor`, :mod:`sorting`) find patterns such as ``x in list`` inside a
loop; ruff's speed rules join them when ruff is installed (:mod:`ruff_bridge`); with a
profile record each finding gets the measured time of its line and enclosing loop and
the list is ranked by the whole-run gain that time allows (:mod:`ranking`).

Contract (``docs/internals.md``)::

    lint_paths(paths, *, record=None) -> list[Finding]
    lint_hot_code(record, *, min_share=0.01) -> list[Finding]
"""

from __future__ import annotations

from perfpilot.lint.engine import (
    RULES,
    RULES_BY_ID,
    LintReport,
    discover,
    is_user_file,
    lint_hot_code,
    lint_paths,
    run_lint,
)

__all__ = ["RULES", "RULES_BY_ID", "LintReport", "discover", "is_user_file", "lint_hot_code",
           "lint_paths", "run_lint"]
