"""Errors that are the user's to fix.

Anything raised as a :class:`UserError` is printed by the CLI as one line (no traceback)
and exits with code 2. Everything else is a bug in perfpilot and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input: a bad workload spec, plan file, option or path."""


class WorkloadError(UserError):
    """The workload spec cannot be loaded or does not honour the Workload contract."""


class PlanError(UserError):
    """A plan has an unknown key, a bad value, or asks for something the device cannot do."""
