"""Trials: what the tuner measures, one candidate at a time, and how a runner reports them.

A *trial function* returns an :class:`Outcome` (its state, why, and its measurements);
:func:`execute_trial` runs one and wraps the outcome, or the exception it raised, in a
:class:`Trial` with timestamps. A trial is named by its *key* (what is measured: the
stage, the candidate, what it is compared against); :func:`trial_identity` makes equal
keys equal strings, which is how a durable runner recalls a finished trial instead of
measuring it again.

A :class:`TrialRunner` runs (or recalls) trials; the tuner has exactly one
implementation, :class:`perfpilot.tune.study.Study`. Whoever wants to know about trials
as they happen (a progress display, a stage collecting its own trials) is a
:class:`TrialObserver` given to the runner, not a wrapper around it.

Contracts only: this module imports nothing of perfpilot, so executors, the tuner and
renderers can all share it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from perfpilot import interrupt

TrialState = Literal["running", "complete", "failed", "oom", "timeout", "nan", "pruned"]


@dataclass(frozen=True)
class Trial:
    """One candidate plan tried by the tuner: why it ended is data, not a log line.

    ``load``: the machine's load while it ran (other processes' CPU use, the load
    average; :mod:`perfpilot.tune.trial_load`), ``{}`` when not measured (older journals).
    """

    number: int
    stage: str
    plan: dict[str, Any]
    state: TrialState
    reason: str = ""
    measurements: dict[str, Any] = field(default_factory=dict)
    started_at: float = 0.0
    finished_at: float = 0.0
    load: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not d["load"]:  # not measured: the JSON shape older records have
            del d["load"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trial:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class Outcome:
    """What a trial function returns: its state, why, and its measurements (JSON-able)."""

    state: TrialState
    measurements: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


TrialFn = Callable[[], Outcome]


class TrialObserver(Protocol):
    """Told about every trial a runner is asked for. ``trial_started`` comes before a trial
    is measured (not for a recalled one); ``trial_finished`` after it ended or was
    recalled from storage (``recalled``). Observers must not raise."""

    def trial_started(self, stage: str, key: dict[str, Any]) -> None: ...

    def trial_finished(self, trial: Trial, recalled: bool) -> None: ...


class TrialRunner(Protocol):
    """Runs (or recalls) one trial; :meth:`trials` lists every finished one in storage;
    :meth:`observe` tells ``observer`` about the trials asked for inside the block."""

    def run(self, stage: str, key: dict[str, Any], fn: TrialFn) -> Trial: ...

    def trials(self) -> list[Trial]: ...

    def observe(self, observer: TrialObserver) -> AbstractContextManager[Any]: ...


class TrialLog:
    """An observer that keeps the trials asked for while it observes, measured or
    recalled, once each, in the order they ended (a stage's own trials)."""

    def __init__(self) -> None:
        self._seen: dict[int, Trial] = {}

    def trial_started(self, stage: str, key: dict[str, Any]) -> None:
        pass

    def trial_finished(self, trial: Trial, recalled: bool) -> None:
        self._seen.setdefault(trial.number, trial)

    def trials(self) -> tuple[Trial, ...]:
        return tuple(self._seen.values())


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


def execute_trial(number: int, stage: str, key: dict[str, Any], fn: TrialFn,
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


def trial_identity(stage: str, key: dict[str, Any]) -> str:
    """A canonical string for (stage, key): equal keys give equal identities."""
    return stage + ":" + json.dumps(key, sort_keys=True, default=str)
