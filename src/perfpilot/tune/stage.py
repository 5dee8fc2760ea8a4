"""The stage interface of the tuner: how hardware, loader and batch stages plug in.

A stage receives a frozen :class:`StageContext` (the incumbent plan, a budget, a place to
run trials) and returns a :class:`StageResult` (the new incumbent, every trial with its
fate, and the stage's evidence for the report). Stages never print: they report progress
through ``ctx.progress`` and put everything else in the result.

Trials go through ``ctx.trials`` (a :class:`~perfpilot.trial.TrialRunner`, in the tuner
always :class:`~perfpilot.tune.study.Study`). Each trial has a *key* that
identifies what is measured (the stage, the candidate, what it is compared against).
The durable study (an Optuna journal) returns the stored result for
a key it has already completed instead of measuring again, so a killed tuning run that is
resumed repeats no finished trial and, since stages decide only from trial results, makes
the same decisions. Stages must therefore be deterministic given their trial results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from perfpilot.trial import Trial, TrialRunner

if TYPE_CHECKING:
    from perfpilot.plan import Plan
    from perfpilot.workload import Workload

# stage name -> "module:class"; each class has a no-argument constructor.
STAGES: dict[str, str] = {
    "hardware": "perfpilot.tune.stages.hardware:HardwareStage",
    "loader": "perfpilot.tune.stages.loader:LoaderStage",
    "batch": "perfpilot.tune.stages.batch.stage:BatchStage",
}
STAGE_ORDER: tuple[str, ...] = ("hardware", "loader", "batch")


@dataclass(frozen=True)
class StageContext:
    """What a stage may read. ``budget_s`` is this stage's share of the time budget;
    ``horizon_s`` the expected length of the user's real run (for decisions such as
    whether compile time pays for itself), ``None`` when unknown."""

    workload: Workload
    incumbent: Plan
    trials: TrialRunner
    budget_s: float
    horizon_s: float | None = None
    machine: dict[str, Any] = field(default_factory=dict)
    progress: Callable[[str], None] = lambda message: None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StageResult:
    """The new incumbent, every trial of the stage, and evidence for the report (JSON-able)."""

    name: str
    plan: Plan
    trials: tuple[Trial, ...]
    evidence: dict[str, Any] = field(default_factory=dict)
    summary: str = ""


class Stage(Protocol):
    name: str

    def run(self, ctx: StageContext) -> StageResult: ...


def load_stage(name: str) -> Stage:
    """Instantiate a registered stage by name."""
    import importlib

    from perfpilot.errors import UserError

    if name not in STAGES:
        raise UserError(f"unknown stage {name!r} (stages: {', '.join(STAGE_ORDER)})")
    module, cls = STAGES[name].split(":")
    return getattr(importlib.import_module(module), cls)()
