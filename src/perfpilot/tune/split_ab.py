"""The final check's throughput A/B with each plan in a worker process of its own.

Why: :func:`~perfpilot.tune.abtest.ab_test` keeps both Trainers in one process, and the
Trainer re-applies its plan's process-wide settings at every chunk. Some of those do not
take effect at once: after ``torch.set_num_threads`` the OpenMP pool resizes and its
threads wake over the next steps; DataLoader workers and pinned-memory threads are
process-wide too. With short chunks the baseline arm then runs in the tuned plan's state
(issue 20: a GRU baseline measured at 1,227 samples/s in the check, 21-31 alone). So:

* **Windows** (:func:`windowed`): every chunk starts with at least
  :data:`MIN_SETTLE_STEPS` untimed steps after the switch and times at least
  :data:`MIN_CHUNK_STEPS` steps, also when a deadline shortens chunks.
* **Separate processes** (:func:`split_reason`, :func:`split_ab_test`): when the plans
  differ in a process-wide setting (:data:`PROCESS_KNOBS`), each arm lives in its own
  warm worker (:class:`perfpilot.execute.process.ProcessExecutor`, one worker each), and
  the arms still alternate by rounds (A B | B A | ...) so load drift hits both alike: only
  one arm runs at a time. The rounds and the comparison are
  :func:`perfpilot.tune.abtest.interleave`'s, the same as in one process.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, Protocol

from perfpilot.trial import Outcome
from perfpilot.tune.load_label import CONTENTION_KNOBS

if TYPE_CHECKING:
    from perfpilot.plan import Plan
    from perfpilot.tune.abtest import ABResult, ABSettings, Arm, TrainerFactory
    from perfpilot.tune.units import WorkloadRef

MIN_CHUNK_STEPS = 5  # timed steps per chunk: one slow or fast step does not make a sample
MIN_SETTLE_STEPS = 3  # untimed steps after every switch: a thread pool resizes in a few
# Settings torch or the DataLoader hold per process: set_num_threads is process-global,
# inter-op threads can be set once, workers and pinned-memory threads outlive a chunk.
PROCESS_KNOBS = CONTENTION_KNOBS  # the knobs that compete for the CPU are these too
CALL_TIMEOUT_S = 600.0  # one worker call (a build or a chunk) that takes longer is hung


def windowed(settings: ABSettings) -> ABSettings:
    """``settings`` with the final check's floors: chunks of at least
    :data:`MIN_CHUNK_STEPS` timed steps after at least :data:`MIN_SETTLE_STEPS` untimed."""
    return dataclasses.replace(
        settings, chunk_steps=max(settings.chunk_steps, MIN_CHUNK_STEPS),
        min_chunk_steps=max(settings.min_chunk_steps, MIN_CHUNK_STEPS),
        min_settle_steps=max(settings.min_settle_steps, MIN_SETTLE_STEPS))


def split_reason(a: Plan, b: Plan) -> str:
    """Why the two plans need a process each ("" when one process is fair to both)."""
    differ = [k for k in PROCESS_KNOBS if getattr(a, k) != getattr(b, k)]
    if not differ:
        return ""
    return (f"the plans differ in process-wide settings ({', '.join(differ)}), so each "
            "plan ran in a worker process of its own")


# ---------------------------------------------------------------- the worker side

_ARMS: dict[str, Any] = {}  # arm name -> (abtest._Live, ExitStack), in the worker process


def arm_open(name: str, ref: WorkloadRef, plan: dict[str, Any], warmup: int,
             factory: TrainerFactory | None = None,
             clock: Callable[[], float] | None = None) -> dict[str, Any]:
    """In the arm's worker: build the plan's Trainer and run its warm-up steps."""
    from perfpilot.plan import Plan
    from perfpilot.tune import abtest as ab
    from perfpilot.tune import parity as par

    arm_close(name)
    live = ab._Live(Plan.from_dict(plan), par.finite_checker(), clock or time.perf_counter)
    stack = ExitStack()
    _ARMS[name] = (live, stack)
    try:  # the warm-up steps are checked too: a NaN there is the trial's "nan", as inline
        live.start(ref.load(), factory or ab.engine_trainer, warmup, stack)
    except par.ParityFailure as e:
        return {"parity": e.verdict.to_dict()}
    return {"warm_step_s": live.warm_step_s, "pid": os.getpid()}


def arm_chunk(name: str, settle: int, steps: int) -> dict[str, Any]:
    """In the arm's worker: ``settle`` untimed steps, then ``steps`` timed ones."""
    from perfpilot.tune import parity as par

    live = _ARMS[name][0]
    try:
        live.chunk(settle, steps)
    except par.ParityFailure as e:
        return {"parity": e.verdict.to_dict()}
    return {"sample": live.samples[-1]}


def arm_result(name: str, warmup: int) -> dict[str, Any]:
    """In the arm's worker: what was measured (an :class:`~abtest.Arm` as a dict)."""
    return dataclasses.asdict(_ARMS[name][0].result(warmup))


def arm_close(name: str) -> None:
    """In the arm's worker: close the Trainer (its loader workers end with it)."""
    entry = _ARMS.pop(name, None)
    if entry is not None:
        entry[1].close()


# ---------------------------------------------------------------- the tuner side


class ArmRunner(Protocol):
    """Where one arm lives: ``call(fn, *args)`` runs ``fn`` there and returns its value."""

    def call(self, fn: Callable[..., Any], *args: Any) -> Any: ...

    def close(self) -> None: ...


class ProcessRunner:
    """One warm worker process (a one-worker ProcessExecutor) for one arm. The worker
    gets the tuner's own OMP/MKL thread variables when set, so a plan without
    ``cpu_threads`` starts with the thread count it has when run by itself."""

    def __init__(self, timeout_s: float = CALL_TIMEOUT_S) -> None:
        from perfpilot.execute.process import THREAD_VARS, ProcessExecutor

        env = {v: os.environ[v] for v in THREAD_VARS if v in os.environ}
        self.pool = ProcessExecutor(1, worker_env=env)
        self.timeout_s = timeout_s

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.pool.submit(fn, *args, timeout_s=self.timeout_s).result()

    def start(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Submit without waiting (a Future): both workers import torch at once."""
        return self.pool.submit(fn, *args, timeout_s=self.timeout_s)

    def close(self) -> None:
        self.pool.close()


class LocalRunner:
    """An arm in this process (tests with a simulated process, or a workload without a
    spec, which another process cannot load)."""

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    def close(self) -> None:
        pass


def _raised(reply: dict[str, Any]) -> dict[str, Any]:
    """A worker's reply, or the ParityFailure it carried back (a NaN in that arm)."""
    if "parity" in reply:
        from perfpilot.tune import parity as par

        raise par.ParityFailure(par.ParityVerdict(**reply["parity"]))
    return reply


class RemoteArm:
    """The tuner's handle on one arm living in an :class:`ArmRunner`; quacks like
    :class:`~perfpilot.tune.abtest.LiveArm` for :func:`~perfpilot.tune.abtest.interleave`."""

    def __init__(self, name: str, runner: ArmRunner) -> None:
        self.name, self.runner = name, runner
        self.samples: list[float] = []
        self.warm_step_s = 0.0
        self.pid: int | None = None

    def start(self, ref: WorkloadRef, plan: Plan, warmup: int,
              factory: TrainerFactory | None, clock: Callable[[], float] | None) -> None:
        info = _raised(self.runner.call(arm_open, self.name, ref, plan.to_dict(), warmup,
                                        factory, clock))
        self.warm_step_s, self.pid = float(info["warm_step_s"]), info.get("pid")

    def chunk(self, settle: int, k: int) -> None:
        out = _raised(self.runner.call(arm_chunk, self.name, settle, k))
        self.samples.append(float(out["sample"]))

    def result(self, warmup: int) -> Arm:
        from perfpilot.tune.abtest import Arm

        return Arm.from_dict(self.runner.call(arm_result, self.name, warmup))

    def close(self) -> None:
        """Close the Trainer; the runner stays its owner's to close."""
        try:
            self.runner.call(arm_close, self.name)
        except Exception:  # noqa: BLE001 - a dead worker has nothing left to close
            pass


def split_ab_test(ref: WorkloadRef, plan_a: Plan, plan_b: Plan, settings: ABSettings,
                  runners: tuple[ArmRunner, ArmRunner], *, budget_s: float | None = None,
                  clock: Callable[[], float] = time.perf_counter,
                  factory: TrainerFactory | None = None,
                  arm_clock: Callable[[], float] | None = None) -> ABResult:
    """Time B against A with each plan in its own runner, interleaved by rounds. The
    deadline (``budget_s``) counts from when both arms are built and warm: start-up is
    the arms' (recorded in each Arm), not the comparison's. ``factory`` and ``arm_clock``
    are sent to the runners (tests: a simulated Trainer and a fake clock)."""
    from perfpilot.tune.abtest import interleave, settle_for

    settle = settle_for(settings, plan_a, plan_b)
    a, b = RemoteArm("a", runners[0]), RemoteArm("b", runners[1])
    try:
        for arm, plan in ((a, plan_a), (b, plan_b)):
            arm.start(ref, plan, settings.warmup_steps, factory, arm_clock)
        deadline = None if budget_s is None else clock() + budget_s
        return interleave(a, b, settings, settle, deadline=deadline, clock=clock)
    finally:
        for arm in (a, b):
            arm.close()


def split_throughput_unit(ref: WorkloadRef, plan_a: dict[str, Any], plan_b: dict[str, Any],
                          settings: dict[str, Any], budget_s: float) -> Outcome:
    """The portable unit of a split A/B (as :func:`~perfpilot.tune.units.throughput_unit`,
    each arm in a fresh worker process; both workers import torch and load the workload
    at once, before anything is timed)."""
    from perfpilot.plan import Plan
    from perfpilot.tune import parity as par
    from perfpilot.tune.abtest import ABSettings
    from perfpilot.tune.units import ab_measurements, warm_up

    runners = (ProcessRunner(), ProcessRunner())
    try:
        for f in [r.start(warm_up, ref) for r in runners]:
            f.result()
        result = split_ab_test(ref, Plan.from_dict(plan_a), Plan.from_dict(plan_b),
                               ABSettings(**settings), runners, budget_s=budget_s)
    except par.ParityFailure as e:
        return Outcome(e.verdict.state, {"parity": e.verdict.to_dict()}, e.verdict.reason)
    finally:
        for r in runners:
            r.close()
    return Outcome("complete", {**ab_measurements(result), "split": True})
