"""Executors: run trials (or any call) inline, in warm worker processes, or on Ray.

See :mod:`perfpilot.execute.base` for the contract and :mod:`perfpilot.execute.choose`
for the timing rule. Ray is imported only when a :class:`RayExecutor` is built.
"""

from __future__ import annotations

from perfpilot.execute.base import (
    Executor,
    ExecutorClosed,
    ExecutorError,
    InlineExecutor,
    RemoteError,
    RemoteTraceback,
    TrialTimeout,
    WorkerDied,
    WorkerOOM,
    usable_cores,
)
from perfpilot.execute.choose import (
    ExecutorKind,
    ExecutorTrials,
    choose_executor,
    submit_trial,
    visible_gpus,
)
from perfpilot.execute.process import ProcessExecutor
from perfpilot.execute.ray_executor import RayExecutor

__all__ = [
    "Executor", "ExecutorClosed", "ExecutorError", "ExecutorKind", "ExecutorTrials",
    "InlineExecutor", "ProcessExecutor", "RayExecutor", "RemoteError", "RemoteTraceback",
    "TrialTimeout", "WorkerDied", "WorkerOOM", "choose_executor", "submit_trial",
    "usable_cores", "visible_gpus",
]
