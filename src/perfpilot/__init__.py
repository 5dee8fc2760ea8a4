"""perfpilot: make PyTorch training fast, automatically and with evidence.

The public API is small and imported lazily, so ``import perfpilot`` stays cheap (no torch
import until something needs it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> "module:attribute"; resolved on first access (PEP 562).
_LAZY: dict[str, str] = {
    "Plan": "perfpilot.plan:Plan",
    "apply": "perfpilot.apply_plan:apply",
    "load_plan": "perfpilot.plan:load_plan",
    "Workload": "perfpilot.workload:Workload",
    "load_workload": "perfpilot.workload:load_workload",
    "RunRecord": "perfpilot.record:RunRecord",
    "Finding": "perfpilot.record:Finding",
    "UserError": "perfpilot.errors:UserError",
    "run": "perfpilot.engine:run",
    "Trainer": "perfpilot.engine:Trainer",
    "compare": "perfpilot.measure:compare",
    "summarize": "perfpilot.measure:summarize",
    "discover": "perfpilot.devices:discover",
    "pmap": "perfpilot.parallel:pmap",
    "gradient_noise_scale": "perfpilot.tune.stages.batch.noise_scale:gradient_noise_scale",
}

__all__ = sorted(_LAZY) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from perfpilot.plan import Plan, load_plan  # noqa: F401
    from perfpilot.record import Finding, RunRecord  # noqa: F401
    from perfpilot.workload import Workload, load_workload  # noqa: F401


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'perfpilot' has no attribute {name!r}")
    import importlib

    module_name, attr = target.split(":")
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value
