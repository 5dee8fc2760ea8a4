"""Portable trial units: what the tuner can send to another process (or a Ray cluster).

A stage's trial function is often a closure over live objects (two Trainers kept warm for
an interleaved A/B, a cache of trainers), which cannot leave the tuner's process. A
*portable unit* is the opposite: a module-level function with plain arguments that
rebuilds everything it needs (the workload from its spec, the model, the loader) and
returns an :class:`~perfpilot.trial.Outcome`. :class:`Portable` wraps one; the study
(:class:`~perfpilot.tune.study.Study`) sends portable trials to the chosen executor and
runs every other trial inline, so ``--executor process|ray`` is always safe and never
changes what a closure measures.

The pipeline's own trials are portable: the baseline run, the tuned run, the final
check's runs to the target and its throughput A/B (each rebuilds both arms inside).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfpilot.trial import Outcome

if TYPE_CHECKING:
    from perfpilot.workload import Workload

HISTORY_POINTS = 300  # loss-history rows kept in a record stored inside a trial


@dataclass(frozen=True)
class WorkloadRef:
    """How another process gets the same workload: its spec and the target override.

    ``live`` is the workload object of the tuner's process; it is not sent anywhere (a
    worker loads ``spec`` instead), so a workload built in Python without a spec can only
    run inline.
    """

    spec: str | None
    target: float | None = None
    live: Workload | None = field(default=None, compare=False, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "target": self.target, "live": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)

    @property
    def portable(self) -> bool:
        return self.spec is not None

    def load(self) -> Workload:
        if self.live is not None:
            return self.live
        if self.spec is None:
            raise RuntimeError("a workload without a spec cannot be loaded in another process")
        return _load(self.spec, self.target)


@functools.cache
def _load(spec: str, target: float | None) -> Workload:
    """One load per process: a worker that runs many units imports the workload once."""
    import dataclasses

    from perfpilot.workload import load_workload

    w = load_workload(spec)
    return dataclasses.replace(w, target=target) if target is not None else w


def portable_spec(spec: str | None) -> str | None:
    """The spec with a workload file made absolute, so a worker with another cwd finds it."""
    if spec is None or ":" not in spec:
        return spec
    where, attr = spec.rsplit(":", 1)
    if where.endswith(".py"):
        return f"{Path(where).resolve()}:{attr}"
    return spec


@dataclass(frozen=True)
class Portable:
    """A trial function that may run in another process: ``fn(*args)`` -> Outcome.

    ``fn`` must be a module-level function (pickled by reference) and ``args`` plain
    values or :class:`WorkloadRef`. Calling it runs it here.
    """

    fn: Callable[..., Outcome]
    args: tuple[Any, ...] = ()
    timeout_s: float | None = None

    def __call__(self) -> Outcome:
        return self.fn(*self.args)

    @property
    def can_leave(self) -> bool:
        return all(a.portable for a in self.args if isinstance(a, WorkloadRef))


# ---------------------------------------------------------------- the units


def warm_up(ref: WorkloadRef) -> str:
    """Import torch and load the workload in a worker, so that a worker's start-up is not
    counted inside the first trial that runs there. Returns the worker's pid."""
    import os

    import torch  # noqa: F401

    if ref.portable:
        ref.load()
    return str(os.getpid())


def run_unit(ref: WorkloadRef, plan: dict[str, Any], seed: int, until_target: bool,
             time_s: float, eval_every_s: float | None = None) -> Outcome:
    """Train ``plan`` (to the target when asked, at most ``time_s`` s of training) and
    return its RunRecord (loss history thinned) and the time to target. ``eval_every_s``
    sets the resolution of the time to target (default: the engine's, about 1 s).

    A non-finite loss raises (state ``nan``); a workload error raises (state ``failed``).
    """
    from perfpilot.engine import run
    from perfpilot.plan import Plan
    from perfpilot.record_sections import EngineStats

    w = ref.load()
    p = Plan.from_dict(plan)
    t0 = time.perf_counter()
    record = run(w, p, until_target=until_target and w.target is not None, time_s=time_s,
                 eval_every_s=eval_every_s if until_target else None, progress=False,
                 seed=seed)
    d = record.to_dict()
    d["loss_history"] = thin(d.get("loss_history") or [], HISTORY_POINTS)
    engine = record.engine or EngineStats()
    return Outcome("complete", {
        "record": d,
        "reached": record.time_to_target_s is not None,
        "time_to_target_s": record.time_to_target_s,
        "train_s": float(engine.train_time_s),
        "setup_s": float(engine.setup_s),
        "wall_s": time.perf_counter() - t0,
        "samples_per_s": record.samples_per_s,
        "metric": (record.metric or {}).get("value"),
    })


def throughput_unit(ref: WorkloadRef, plan_a: dict[str, Any], plan_b: dict[str, Any],
                    settings: dict[str, Any], budget_s: float) -> Outcome:
    """An interleaved A/B of two plans (both Trainers built here), per-sample cost paired
    by round: the ratio > 1 means B trains more samples per second."""
    from perfpilot.plan import Plan
    from perfpilot.tune import parity as par
    from perfpilot.tune.abtest import ABSettings, ab_test

    w = ref.load()
    clock = time.perf_counter
    try:
        result = ab_test(w, Plan.from_dict(plan_a), Plan.from_dict(plan_b),
                         ABSettings(**settings), check_a=par.finite_checker(),
                         check_b=par.finite_checker(), deadline=clock() + budget_s, clock=clock)
    except par.ParityFailure as e:
        return Outcome(e.verdict.state, {"parity": e.verdict.to_dict()}, e.verdict.reason)
    return Outcome("complete", ab_measurements(result))


def ab_measurements(result: Any) -> dict[str, Any]:
    """An ABResult as a trial's measurements, each arm's losses cut to the last 20 (the
    report does not need them all)."""
    m = result.to_measurements()
    for arm in ("a", "b"):
        m[arm]["losses"] = list(m[arm]["losses"][-20:])
    return m


def thin(rows: list[Any], limit: int) -> list[Any]:
    """At most about ``limit`` evenly spaced rows, keeping the last one."""
    if len(rows) <= limit:
        return rows
    step = -(-len(rows) // limit)
    out = rows[::step]
    return out if out[-1] is rows[-1] else [*out, rows[-1]]
