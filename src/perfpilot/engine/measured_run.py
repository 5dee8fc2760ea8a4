"""``run()``: train a workload under a plan until a limit and return a RunRecord.

Statistics exclude warmup steps; the step time is summarized with
:func:`perfpilot.measure.summarize` (median and bootstrap CI), or a private bootstrap
while that module is not installed (the record says which in ``engine.stats``).
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from perfpilot.engine.timers import Clock
from perfpilot.engine.trainer import NonFiniteError, StepTiming, Trainer
from perfpilot.errors import UserError
from perfpilot.plan import Plan
from perfpilot.progress import NullProgress, Progress
from perfpilot.record import PHASES, RunRecord, StatSummary
from perfpilot.record_sections import EngineStats
from perfpilot.workload import Workload

OnStep = Callable[[Trainer, StepTiming], "bool | None"]

TARGET_EVAL_EVERY_S = 1.0  # default evaluation interval for until_target runs...
TARGET_EVAL_SHARE = 0.25  # ...stretched so evaluation costs at most this share of training
TARGET_CAP_S = 600.0  # until_target without steps/time_s stops after this much training
CHUNK_S = 0.25  # steps run between progress updates (and CUDA syncs), in seconds
MAX_HISTORY = 2000  # loss-history points kept in a record (evenly thinned beyond)



@dataclass
class _RunState:
    """What run() accumulates: timings, histories, stop reason."""

    warmup: int
    eval_every: float | None  # seconds of training between evaluations; None: at the end
    adaptive: bool  # stretch eval_every to keep evaluation under TARGET_EVAL_SHARE
    timings: list[StepTiming] = field(default_factory=list)
    losses: list[list[float]] = field(default_factory=list)
    metric_history: list[list[float]] = field(default_factory=list)
    time_to_target: float | None = None
    stop: str = ""
    train_t: float = 0.0  # sum of the totals in ``timings``

    def __post_init__(self) -> None:
        self.next_eval_t = self.eval_every or math.inf

    def recent_step_s(self) -> float | None:
        recent = [t.total for t in self.timings[-8:]]
        return sum(recent) / len(recent) if recent else None

    def schedule_eval(self, now: float, eval_cost: float) -> None:
        interval = self.eval_every or math.inf
        if self.adaptive:
            interval = max(interval, eval_cost * (1 - TARGET_EVAL_SHARE) / TARGET_EVAL_SHARE)
        self.next_eval_t = now + interval


def _check_run_args(workload: Workload, steps: int | None, time_s: float | None,
                    until_target: bool, eval_every_s: float | None) -> None:
    if steps is None and time_s is None and not until_target:
        raise UserError("say how long to train: steps, time_s or until_target")
    if steps is not None and (isinstance(steps, bool) or steps < 1):
        raise UserError(f"steps must be a positive integer, got {steps!r}")
    if time_s is not None and not time_s > 0:
        raise UserError(f"time_s must be > 0 seconds, got {time_s!r}")
    if eval_every_s is not None and not eval_every_s > 0:
        raise UserError(f"eval_every_s must be > 0 seconds, got {eval_every_s!r}")
    if until_target and workload.target is None:
        raise UserError(f"workload {workload.name!r} has no target; until_target needs one")


def run(workload: Workload, plan: Plan, *, steps: int | None = None,
        time_s: float | None = None, until_target: bool = False,
        eval_every_s: float | None = None, warmup_steps: int = 2,
        progress: Progress | bool | None = None,
        on_step: OnStep | None = None, seed: int | None = None,
        clock: Clock | None = None) -> RunRecord:
    """Train ``workload`` under ``plan`` and return the measured :class:`RunRecord`.

    Stops at the first of: ``steps`` optimizer steps, ``time_s`` seconds of training time
    (evaluation excluded), the target being reached (``until_target``; capped at 600 s of
    training when neither ``steps`` nor ``time_s`` is given), or
    ``on_step(trainer, timing)`` returning True (on the CPU checked after every step; on
    CUDA after each chunk of ~0.25 s, whose steps are kept). With ``until_target`` and no
    ``eval_every_s``, evaluation runs every 1 s of training, stretched so that it takes at
    most 25% of the training time.
    The first ``warmup_steps`` steps train but are left out of the step statistics.
    ``progress`` hears of the run's start, its steps (every chunk) and its end; the engine
    never displays anything itself (``perfpilot run`` passes the terminal's display;
    ``None``, ``False`` or ``True`` report to nobody).
    Workloads with a metric are evaluated at the end (and every ``eval_every_s``);
    ``time_to_target_s`` is the training time at the first evaluation meeting the target.
    A NaN/inf loss or metric raises :class:`~perfpilot.engine.trainer.NonFiniteError`
    carrying the record of the steps before it (``e.record``, None if none completed).
    """
    _check_run_args(workload, steps, time_s, until_target, eval_every_s)
    adaptive = until_target and eval_every_s is None
    if until_target:
        eval_every_s = eval_every_s or TARGET_EVAL_EVERY_S
        time_s = TARGET_CAP_S if steps is None and time_s is None else time_s
    clock = clock or time.perf_counter
    wall0, started_at = clock(), time.time()
    with Trainer(workload, plan, seed=seed, clock=clock) as tr:
        setup_s = clock() - wall0
        warm = min(warmup_steps, steps - 1) if steps is not None else warmup_steps
        state = _RunState(max(warm, 0), eval_every_s, adaptive)
        by_steps = steps is not None
        bar = progress if progress is not None and not isinstance(progress, bool) \
            else NullProgress()
        try:
            bar.run_started(workload.name, steps if by_steps else time_s,
                            "steps" if by_steps else "s")
            try:
                _loop(tr, state, steps, time_s, until_target, on_step, bar)
            finally:
                bar.run_finished()
            _final_eval(tr, state)
        except NonFiniteError as e:  # diverged: keep what was measured on the exception
            state.stop = f"non-finite {e.what}"
            for timing in e.timings:
                _add(state, timing)
            if state.timings:
                e.record = _record(tr, state, wall=clock() - wall0, setup_s=setup_s,
                                   started_at=started_at)
                e.record.steps = len(state.timings)  # the finite ones (tr.step counts on)
            raise
        return _record(tr, state, wall=clock() - wall0, setup_s=setup_s,
                       started_at=started_at)


def _loop(tr: Trainer, state: _RunState, steps: int | None, time_s: float | None,
          until_target: bool, on_step: OnStep | None, bar: Progress) -> None:
    # With a callback on the CPU, go one step at a time so it can stop the run exactly;
    # on CUDA a chunk costs one sync, so the callback may be up to a chunk late.
    exact = on_step is not None and tr.timer_name.startswith("host-clock")
    while True:
        if steps is not None and tr.step >= steps:
            state.stop = state.stop or "steps"
        elif time_s is not None and tr.train_time_s >= time_s:
            state.stop = state.stop or "time"
        if state.stop:
            return
        n = 1 if exact else _chunk(tr, state, steps, time_s)
        for timing in tr.train_steps(n):
            _add(state, timing)
            if on_step is not None and on_step(tr, timing):
                state.stop = "callback"
        _show(bar, tr, state, by_steps=steps is not None)
        if tr.train_time_s >= state.next_eval_t:
            before = tr.eval_time_s
            _evaluate(tr, state)
            state.schedule_eval(tr.train_time_s, tr.eval_time_s - before)
            if until_target and state.time_to_target is not None:
                state.stop = "target"


def _add(state: _RunState, timing: StepTiming) -> None:
    state.timings.append(timing)
    state.train_t += timing.total
    state.losses.append([len(state.timings), state.train_t, timing.loss])


def _show(bar: Progress, tr: Trainer, state: _RunState, *, by_steps: bool) -> None:
    info = f"step {tr.step}  loss {state.timings[-1].loss:.4g}"
    if state.metric_history:
        info += f"  {tr.workload.metric_name} {state.metric_history[-1][2]:.4g}"
    bar.run_step(tr.step if by_steps else tr.train_time_s, info)


def _chunk(tr: Trainer, state: _RunState, steps: int | None, time_s: float | None) -> int:
    """How many steps to run before looking again: ~CHUNK_S of training, never past a
    step/time limit or the next evaluation (by the recent mean step time)."""
    mean = state.recent_step_s()
    if not mean:
        return 1
    n = max(1, int(CHUNK_S / mean))
    if steps is not None:
        n = min(n, steps - tr.step)
    for limit in (time_s, state.next_eval_t):
        if limit is not None and math.isfinite(limit):
            n = min(n, max(1, math.ceil((limit - tr.train_time_s) / mean)))
    return n


def _evaluate(tr: Trainer, state: _RunState) -> None:
    value = tr.evaluate()
    if value is None:
        return
    state.metric_history.append([tr.step, tr.train_time_s, value])
    if state.time_to_target is None and tr.workload.reached(value):
        state.time_to_target = tr.train_time_s


def _final_eval(tr: Trainer, state: _RunState) -> None:
    done = state.metric_history and state.metric_history[-1][0] == tr.step
    if not done and tr.workload.metric is not None and tr.step > 0:
        _evaluate(tr, state)


# ---------------------------------------------------------------- the record


def _record(tr: Trainer, state: _RunState, *, wall: float, setup_s: float,
            started_at: float) -> RunRecord:
    measured = state.timings[state.warmup:] or state.timings
    totals = [t.total for t in measured]
    summary, stats_by = _summarize(totals)
    time_sum = sum(totals)
    samples = sum(t.samples for t in measured)
    engine = {
        "device": str(tr.device), "timer": tr.timer_name, "seed": tr.seed,
        "warmup_steps": len(state.timings) - len(measured), "measured_steps": len(measured),
        "samples": tr.samples, "train_time_s": tr.train_time_s, "eval_time_s": tr.eval_time_s,
        "setup_s": setup_s, "stop_reason": state.stop, "epochs": tr.epoch,
        "eval_every_s": state.eval_every, "eval_adaptive": state.adaptive,
        "data_host_s": sum(t.data_host for t in measured) / len(measured),
        "memory": tr.memory_info(), "stats": stats_by,
    }
    return RunRecord(
        workload=tr.workload.name, plan=tr.plan.to_dict(), steps=tr.step,
        samples_per_s=samples / time_sum if time_sum > 0 else 0.0, step_time_s=summary,
        phases_s={p: sum(getattr(t, p) for t in measured) / len(measured) for p in PHASES},
        peak_memory_bytes=tr.peak_memory_bytes(), wall_time_s=wall,
        metric=_metric_dict(tr.workload, state), time_to_target_s=state.time_to_target,
        loss_history=_thin(state.losses, MAX_HISTORY), machine=_machine(),
        started_at=started_at, engine=EngineStats(**engine),
    )


def _metric_dict(w: Workload, state: _RunState) -> dict[str, Any] | None:
    if not state.metric_history:
        return None
    return {"name": w.metric_name, "value": state.metric_history[-1][2],
            "direction": w.direction, "target": w.target, "history": state.metric_history}


def _thin(rows: list[list[float]], limit: int) -> list[list[float]]:
    """At most about ``limit`` evenly spaced rows, always keeping the last one."""
    if len(rows) <= limit:
        return rows
    out = rows[:: math.ceil(len(rows) / limit)]
    return out if out[-1] is rows[-1] else [*out, rows[-1]]


def _summarize(samples: list[float]) -> tuple[StatSummary, str]:
    """Median and CI of step times via perfpilot.measure, or a private bootstrap while
    that module is not installed. Returns the summary and which one produced it."""
    if len(samples) < 2:  # nothing to resample
        v = samples[0]
        return StatSummary(mean=v, median=v, ci_low=v, ci_high=v, n=len(samples)), "single"
    try:
        from perfpilot.measure import summarize
    except ModuleNotFoundError as e:
        if e.name != "perfpilot.measure":
            raise
        return _bootstrap(samples), "engine-bootstrap"
    return summarize(samples), "perfpilot.measure"


def _bootstrap(samples: list[float], confidence: float = 0.95, n_boot: int = 2000,
               seed: int = 0) -> StatSummary:
    """Percentile-bootstrap CI of the median (fallback for perfpilot.measure.summarize)."""
    import numpy as np

    x = np.asarray(samples, dtype=float)
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(x, size=(n_boot, x.size), replace=True), axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(medians, [alpha, 1 - alpha])
    return StatSummary(mean=float(x.mean()), median=float(np.median(x)), ci_low=float(lo),
                       ci_high=float(hi), n=int(x.size))


def _machine() -> dict[str, Any]:
    """perfpilot.devices's description of the machine, or basic platform facts."""
    try:
        from perfpilot.devices import discover
    except ModuleNotFoundError as e:
        if e.name != "perfpilot.devices":
            raise
        import os

        import torch

        cuda = torch.cuda.is_available()
        return {"source": "engine-basic", "platform": platform.platform(),
                "python": platform.python_version(), "torch": torch.__version__,
                "cpu_count": os.cpu_count(), "cuda": cuda,
                "gpu": torch.cuda.get_device_name() if cuda else None}
    return discover().to_dict()
