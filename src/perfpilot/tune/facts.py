"""Small facts and wordings the tuner's pipeline records: the workload, the machine, the
versions, and the sentences it writes about the baseline and the plan so far."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from perfpilot import tune_record as tr

if TYPE_CHECKING:
    from perfpilot.plan import Plan
    from perfpilot.workload import Workload


def sign(w: Workload) -> str:
    return ">=" if w.direction == "max" else "<="


def fmt(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, (int, float)) else "none"


def suggest(seconds: float) -> str:
    minutes = max(1, int(-(-seconds * 1.5 // 60)))
    return f"{minutes}m"


def baseline_failure(w: Workload, trial: Any) -> str:
    if trial.state == "nan":
        return (f"the baseline plan of workload {w.name!r} produces a non-finite loss "
                f"({trial.reason}); perfpilot tunes a workload that trains under its own "
                "baseline: lower its lr or fix the model")
    if trial.state == "timeout":
        return f"the baseline run of workload {w.name!r} timed out: {trial.reason}"
    return f"the baseline run of workload {w.name!r} crashed: {trial.reason}"


def changes_text(base: Plan, plan: Plan) -> str:
    changes = base.diff(plan)
    if not changes:
        return "baseline (no gain yet)"
    return ", ".join(f"{k}={b}" for k, (_, b) in changes.items())


def workload_info(w: Workload, spec: str | None) -> tr.WorkloadInfo:
    return tr.WorkloadInfo(name=w.name, spec=spec, description=w.description,
                           metric=w.metric_name if w.metric is not None else None,
                           direction=w.direction, target=w.target)


def machine() -> dict[str, Any]:
    from perfpilot.devices import discover

    return tr.sanitize(discover().to_dict())


def versions() -> tr.Versions:
    import platform

    import optuna
    import torch

    from perfpilot import __version__

    return tr.Versions(perfpilot=__version__, torch=torch.__version__,
                       optuna=optuna.__version__, python=platform.python_version(),
                       platform=platform.platform())
