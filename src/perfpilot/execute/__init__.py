"""Executors: run calls (a trial's function, or any call) inline, in warm worker processes,
or on Ray. They run what they are given and import nothing from the tuner; the tuner's
trial runner (:class:`perfpilot.tune.study.Study`) hands them its portable trials.

See :mod:`perfpilot.execute.base` for the contract and :mod:`perfpilot.execute.choose`
for the timing rule. Names are imported lazily (PEP 562): a worker process imports only
:mod:`perfpilot.execute._worker`, which keeps its start-up short; Ray is imported only
when a :class:`RayExecutor` is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_LAZY: dict[str, str] = {
    **{name: "perfpilot.execute.base" for name in (
        "Executor", "ExecutorClosed", "ExecutorError", "InlineExecutor", "RemoteError",
        "RemoteTraceback", "TrialTimeout", "WorkerDied", "WorkerOOM", "usable_cores")},
    **{name: "perfpilot.execute.choose" for name in (
        "ExecutorKind", "choose_executor", "visible_gpus")},
    "ProcessExecutor": "perfpilot.execute.process",
    "RayExecutor": "perfpilot.execute.ray_executor",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from perfpilot.execute.base import (  # noqa: F401
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
    from perfpilot.execute.choose import (  # noqa: F401
        ExecutorKind,
        choose_executor,
        visible_gpus,
    )
    from perfpilot.execute.process import ProcessExecutor  # noqa: F401
    from perfpilot.execute.ray_executor import RayExecutor  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'perfpilot.execute' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
