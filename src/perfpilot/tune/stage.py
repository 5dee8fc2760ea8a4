"""The stage interface of the tuner: how hardware, loader and batch stages plug in.

A stage receives a frozen :class:`StageContext` (the incumbent plan, a budget, a place to
run trials) and returns a :class:`StageResult` (the new incumbent, every trial with its
fate, and the stage's evidence for the report). Stages never print: they report progress
through ``ctx.progress`` and put everything else in the result.

Trials go through ``ctx.trials`` (a :class:`TrialRunner`). Each trial has a *key* that
identifies what is measured (the stage, the candidate, what it is compared against).
A durable runner (the tune command's Optuna-backed study) returns the stored result for
a key it has already completed instead of measuring again, so a killed tuning run that is
resumed repeats no finished trial and, since stages decide only from trial results, makes
the same decisions. Stages must therefore be deterministic given their trial results.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from perfpilot import interrupt
from perfpilot.record import Trial, TrialState

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
class Outcome:
    """What a trial function returns: its state, why, and its measurements (JSON-able)."""

    state: TrialState
    measurements: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


class TrialRunner(Protocol):
    """Runs (or recalls) one trial. Implementations: :class:`MemoryTrials`, the study."""

    def run(self, stage: str, key: dict[str, Any], fn: Callable[[], Outcome]) -> Trial: ...

    def trials(self) -> list[Trial]: ...


def outcome_of_exception(exc: BaseException) -> Outcome:
    """Classify an exception raised by a trial: OOM, NaN or plain failure, with the reason."""
    text = f"{type(exc).__name__}: {exc}"
    lowered = text.lower()
    if isinstance(exc, MemoryError) or "out of memory" in lowered:
        return Outcome("oom", reason=text)
    if "nan" in lowered.split() or "non-finite" in lowered:
        return Outcome("nan", reason=text)
    if isinstance(exc, TimeoutError):
        return Outcome("timeout", reason=text)
    tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return Outcome("failed", reason=tb)


def execute_trial(number: int, stage: str, key: dict[str, Any], fn: Callable[[], Outcome],
                  clock: Callable[[], float] = time.time) -> Trial:
    """Run ``fn`` and wrap its outcome (or exception) in a Trial with timestamps.

    After a stop was requested (Ctrl-C, SIGTERM: :mod:`perfpilot.interrupt`) no trial
    starts, and whatever the running one returned or raised is not its result: the
    interrupt may have been swallowed or turned into another error inside it (e.g. a
    DataLoader "worker exited unexpectedly"), so :class:`~perfpilot.interrupt.Interrupted`
    is raised instead."""
    interrupt.check()
    started = clock()
    try:
        out = fn()
    except KeyboardInterrupt:
        raise
    except Exception as e:  # a failing candidate is data, not a crash of the tuner
        interrupt.check()
        out = outcome_of_exception(e)
    interrupt.check()
    _check_finite(out)
    return Trial(number=number, stage=stage, plan=dict(key), state=out.state, reason=out.reason,
                 measurements=out.measurements, started_at=started, finished_at=clock())


def _check_finite(out: Outcome) -> None:
    for k, v in out.measurements.items():
        if isinstance(v, float) and not math.isfinite(v) and out.state == "complete":
            raise ValueError(f"trial measurement {k!r} is {v}; return state 'nan' instead")


class MemoryTrials:
    """An in-memory TrialRunner: runs every trial inline, recalls repeated keys."""

    def __init__(self) -> None:
        self._done: dict[str, Trial] = {}
        self._order: list[Trial] = []

    def run(self, stage: str, key: dict[str, Any], fn: Callable[[], Outcome]) -> Trial:
        ident = trial_identity(stage, key)
        if ident in self._done:
            return self._done[ident]
        trial = execute_trial(len(self._order), stage, key, fn)
        self._done[ident] = trial
        self._order.append(trial)
        return trial

    def trials(self) -> list[Trial]:
        return list(self._order)


def trial_identity(stage: str, key: dict[str, Any]) -> str:
    """A canonical string for (stage, key): equal keys give equal identities."""
    import json

    return stage + ":" + json.dumps(key, sort_keys=True, default=str)


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
