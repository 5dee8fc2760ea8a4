"""Interleaved A/B timing of two plans with two live Trainers, and the decision rule.

Both Trainers stay alive for the whole comparison and run alternating chunks of ``k``
steps (A B B A A B ...), so machine drift hits both plans alike while DataLoader workers,
compile caches and allocator pools stay warm. One sample per chunk is its seconds per
training sample (wall time / samples), and the two sample lists go, paired, through
:func:`perfpilot.measure.compare_samples`.

Two live loaders interfere at chunk boundaries: while A runs, B's idle workers refill
their prefetch queue (stealing CPU from A), and B then starts its chunk with a full queue
(looking faster than it is). The first ``settle`` steps of every chunk are therefore run
but not timed; by default ``settle`` is one more than the larger prefetch queue
(workers x prefetch_factor) of the two plans.

Both Trainers share one process: the engine's Trainer re-applies its plan's process-wide
settings (intra-op threads, TF32 and cuDNN flags) at every ``train_steps`` call.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from perfpilot.plan import Plan
    from perfpilot.workload import Workload

PROBE_MIN_STEPS = 6
MIN_PAIRS = 5  # measure.MIN_ROUNDS: fewer rounds cannot give a ~95% median interval
DEFAULT_PREFETCH = 2
STARTUP_FLOOR_S = 0.25
# Default A/B size: many short chunks beat few long ones on a shared machine (bursts of
# contention hit single chunks; the paired median over many rounds shrugs them off).
CHUNK_S = 0.25
PAIRS = 7       # the fewest rounds whose median interval reaches 97.5% (two looks)
MAX_PAIRS = 14
MIN_EFFECT = 0.03
STARTUP_NOISE_STEPS = 3  # PyTorch's prefetch_factor when workers > 0 and it is left unset


class StepRunner(Protocol):
    """What ab_test needs of a Trainer: ``train_steps(n)`` returning StepTiming-likes."""

    def train_steps(self, n: int) -> list[Any]: ...

    def close(self) -> None: ...


TrainerFactory = Callable[["Workload", "Plan"], StepRunner]
LossCheck = Callable[[Sequence[float]], None]


@dataclass(frozen=True)
class ABSettings:
    """How long to measure: ``pairs`` pairs of chunks of ``chunk_steps`` timed steps, and,
    while undecided, more pairs up to ``max_pairs`` (looks at pairs, 2*pairs, ... with a
    Bonferroni-corrected level, as :func:`perfpilot.measure.compare` does)."""

    chunk_steps: int = 5
    pairs: int = PAIRS
    max_pairs: int = MAX_PAIRS
    warmup_steps: int = 2
    settle_steps: int | None = None
    min_effect: float = MIN_EFFECT
    confidence: float = 0.95
    # Floors the final check sets (tune/split_ab.py): a chunk never shrinks below
    # ``min_chunk_steps`` timed steps to fit a deadline, and at least ``min_settle_steps``
    # untimed steps follow every switch of plans (a thread pool takes steps to resize).
    min_chunk_steps: int = 1
    min_settle_steps: int = 0


@dataclass(frozen=True)
class Arm:
    """What was measured for one plan of an A/B."""

    s_per_sample: tuple[float, ...]
    startup_s: float        # construction + warm-up, beyond the steady cost of those steps
    step_s: float           # median seconds per timed step
    data_share: float       # data wait / step time over the timed steps
    data_s_per_step: float
    losses: tuple[float, ...] = field(default=(), repr=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Arm:
        return cls(**{**d, "s_per_sample": tuple(d["s_per_sample"]),
                      "losses": tuple(d.get("losses", ()))})


@dataclass(frozen=True)
class ABResult:
    """The comparison of B (candidate) against A (incumbent); ``ratio`` > 1: B is faster."""

    verdict: str
    ratio: float
    ci_low: float
    ci_high: float
    n: int
    confidence: float
    a: Arm
    b: Arm
    chunk_steps: int
    settle_steps: int

    def to_measurements(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_measurements(cls, d: dict[str, Any]) -> ABResult:
        names = {"verdict", "ratio", "ci_low", "ci_high", "n", "confidence", "chunk_steps",
                 "settle_steps"}
        return cls(**{k: d[k] for k in names}, a=Arm.from_dict(d["a"]), b=Arm.from_dict(d["b"]))

    def describe(self) -> str:
        return f"{self.ratio:.3f}x [{self.ci_low:.3f}, {self.ci_high:.3f}]"


def settle_steps_for(a: Plan, b: Plan) -> int:
    """One more step than the larger prefetch queue of the two plans."""
    def queue(p: Plan) -> int:
        return p.num_workers * (p.prefetch_factor or DEFAULT_PREFETCH)

    return 1 + max(queue(a), queue(b))


def ab_test(workload: Workload, plan_a: Plan, plan_b: Plan,
            settings: ABSettings = ABSettings(), *, check_a: LossCheck | None = None,
            check_b: LossCheck | None = None, deadline: float | None = None,
            clock: Callable[[], float] = time.perf_counter,
            trainer_factory: TrainerFactory | None = None) -> ABResult:
    """Time B against A, interleaved; ``check_*`` see each plan's losses after every chunk
    (and may raise, e.g. :class:`~perfpilot.tune.parity.ParityFailure`). When the next pair
    would end past ``deadline`` (a ``clock()`` value) it stops adding pairs once
    :data:`MIN_PAIRS` ran and compares what it has (a wider interval: fewer verdicts)."""
    factory = trainer_factory or engine_trainer
    settle = settle_for(settings, plan_a, plan_b)
    with ExitStack() as stack:
        a = _Live(plan_a, check_a, clock)
        b = _Live(plan_b, check_b, clock)
        for arm in (a, b):
            arm.start(workload, factory, settings.warmup_steps, stack)
        return interleave(a, b, settings, settle, deadline=deadline, clock=clock)


class LiveArm(Protocol):
    """One arm of an interleaved A/B, started: ``samples`` (seconds per sample, one per
    timed chunk), ``warm_step_s``, ``chunk(settle, k)`` and ``result(warmup)``. In this
    process (:class:`_Live`) or in a worker process of its own
    (:class:`perfpilot.tune.split_ab.RemoteArm`)."""

    samples: list[float]
    warm_step_s: float

    def chunk(self, settle: int, k: int) -> None: ...

    def result(self, warmup: int) -> Arm: ...


def interleave(a: LiveArm, b: LiveArm, settings: ABSettings, settle: int, *,
               deadline: float | None = None,
               clock: Callable[[], float] = time.perf_counter) -> ABResult:
    """Time two started arms in pairs of chunks (A B | B A | ...) until the comparison is
    decided at a look, ``max_pairs`` ran, or the deadline (see :func:`ab_test`)."""
    from perfpilot.measure import look_schedule

    looks, level = look_schedule(max(settings.pairs, MIN_PAIRS), settings.max_pairs,
                                 settings.confidence)
    floor = max(1, settings.min_chunk_steps)
    steps = max(settings.chunk_steps, floor)
    if deadline is not None:  # the warm-up's step times are the first estimate
        steps = _fitting_steps(steps, (steps + settle) * (a.warm_step_s + b.warm_step_s),
                               deadline - clock(), MIN_PAIRS, floor)
    for look in looks:
        late = False
        while len(a.samples) < look and not late:
            first = (a, b) if len(a.samples) % 2 == 0 else (b, a)
            t0 = clock()
            for arm in first:
                arm.chunk(settle, steps)
            pair_s = clock() - t0
            # Stop before a pair that would end past the deadline (the last one is
            # the best guess of the next one's length), not after it.
            late = (deadline is not None and clock() + pair_s >= deadline
                    and len(a.samples) >= MIN_PAIRS)
            if deadline is not None and not late:
                steps = _fitting_steps(steps, pair_s, deadline - clock(),
                                       MIN_PAIRS - len(a.samples), floor)
        cmp = _compare(a, b, level, settings.min_effect)
        if cmp.decided or late:
            break
    return ABResult(verdict=cmp.verdict, ratio=cmp.ratio, ci_low=cmp.ci_low,
                    ci_high=cmp.ci_high, n=cmp.n, confidence=level,
                    a=a.result(settings.warmup_steps), b=b.result(settings.warmup_steps),
                    chunk_steps=steps, settle_steps=settle)


def _fitting_steps(steps: int, pair_s: float, left_s: float, pairs_needed: int,
                   floor: int = 1) -> int:
    """Timed steps per chunk from now on, so the pairs still needed for a comparison fit
    in the time left: a pair that took far longer than sized (a loaded machine, an arm
    slowed by contention) shortens the chunks rather than overrun the deadline. Both arms
    of a pair always time the same steps, so rounds stay paired; costs are per sample."""
    if pairs_needed <= 0 or steps <= floor or pair_s <= 0:
        return steps
    fit = left_s / pairs_needed
    if pair_s <= fit:
        return steps
    return max(floor, int(steps * max(fit, 0.0) / pair_s))


def _compare(a: LiveArm, b: LiveArm, level: float, min_effect: float) -> Any:
    from perfpilot.measure import compare_samples

    return compare_samples(a.samples, b.samples, paired=True, lower_is_better=True,
                           confidence=level, min_effect=min_effect)


def settle_for(settings: ABSettings, a: Plan, b: Plan) -> int:
    """Untimed steps at the start of each chunk (see the module docstring)."""
    if settings.settle_steps is not None:
        return max(settings.settle_steps, settings.min_settle_steps)
    return max(min(settle_steps_for(a, b), 4 * settings.chunk_steps), settings.min_settle_steps)


class _Live:
    """One live Trainer and what it measured so far."""

    def __init__(self, plan: Plan, check: LossCheck | None, clock: Callable[[], float]) -> None:
        self.plan, self.check, self.clock = plan, check, clock
        self.samples: list[float] = []
        self.step_times: list[float] = []
        self.losses: list[float] = []
        self.data_s = self.total_s = 0.0
        self.timed_steps = 0
        self.warm_s = 0.0
        self.warm_step_s = 0.0  # seconds a warm-up step took (0: no warm-up)
        self.trainer: StepRunner | None = None

    def start(self, workload: Workload, factory: TrainerFactory, warmup: int,
              stack: ExitStack) -> None:
        t0 = self.clock()
        self.trainer = factory(workload, self.plan)
        stack.callback(self.trainer.close)
        if warmup:
            t1 = self.clock()
            self._steps(warmup)
            self.warm_step_s = (self.clock() - t1) / warmup
        self.warm_s = self.clock() - t0

    def _steps(self, n: int) -> list[Any]:
        assert self.trainer is not None
        timings = self.trainer.train_steps(n)
        self.losses.extend(float(t.loss) for t in timings)
        if self.check is not None:
            self.check(self.losses)
        return timings

    def chunk(self, settle: int, k: int) -> None:
        if settle:
            self._steps(settle)
        t0 = self.clock()
        timings = self._steps(k)
        wall = self.clock() - t0
        samples = sum(t.samples for t in timings)
        self.samples.append(wall / max(samples, 1))
        self.step_times.append(wall / max(len(timings), 1))
        self.timed_steps += len(timings)
        self.data_s += sum(t.data for t in timings)
        self.total_s += sum(t.total for t in timings)

    def result(self, warmup: int) -> Arm:
        step_s = statistics.median(self.step_times)
        return Arm(
            s_per_sample=tuple(self.samples),
            startup_s=max(0.0, self.warm_s - warmup * step_s),
            step_s=step_s,
            data_share=self.data_s / self.total_s if self.total_s > 0 else 0.0,
            data_s_per_step=self.data_s / max(self.timed_steps, 1),
            losses=tuple(self.losses),
        )


# ------------------------------------------------------------------ the real trainer


def engine_trainer(workload: Workload, plan: Plan) -> StepRunner:
    """A :class:`perfpilot.engine.Trainer` seeded by the workload. It re-applies its plan's
    process-wide settings (threads, TF32, cuDNN) at each ``train_steps`` and synchronizes
    CUDA at the end of the call, so wall time around a call is the chunk's cost."""
    from perfpilot.engine import Trainer

    return Trainer(workload, plan)


# ------------------------------------------------------------------ the decision rule


@dataclass(frozen=True)
class Decision:
    """Whether a measured candidate replaces the incumbent, and why (in numbers)."""

    accept: bool
    reason: str
    net_gain_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def startup_resolution(result: ABResult) -> float:
    """Start-up is warm-up wall time minus the steady cost of those steps, so it carries the
    noise of a few steps: differences below this are not counted against a candidate."""
    return max(STARTUP_FLOOR_S, STARTUP_NOISE_STEPS * max(result.a.step_s, result.b.step_s))


def decide(result: ABResult, horizon_s: float | Callable[[], float]) -> Decision:
    """Accept B only when it is faster per the interval (the verdict already includes the
    minimum effect) *and* its extra start-up (compile, warm-up) pays back within a run of
    ``horizon_s`` seconds, judged at the interval's low end:
    ``horizon * (1 - 1/ci_low) - extra_startup > 0``. Anything else keeps the incumbent.
    ``horizon_s`` may be a function, called only when B's extra start-up is above the
    resolution of a start-up measurement (:func:`startup_resolution`)."""
    if result.verdict != "faster":
        return Decision(False, f"not faster: {result.describe()} ({result.verdict})")
    extra = result.b.startup_s - result.a.startup_s
    if extra <= startup_resolution(result):
        return Decision(True, f"faster: {result.describe()}, no material extra start-up "
                        f"({extra:+.2f} s)")
    horizon = horizon_s() if callable(horizon_s) else horizon_s
    saved = horizon * (1.0 - 1.0 / result.ci_low)
    net = saved - extra
    if net <= 0:
        return Decision(False, f"faster {result.describe()} but its {extra:.1f} s of extra "
                        f"start-up is not paid back in a {horizon:.0f} s run (saves "
                        f"{saved:.1f} s at the interval's low end)", net)
    return Decision(True, f"faster: {result.describe()}; net gain {net:.1f} s over a "
                    f"{horizon:.0f} s run after {extra:.1f} s of extra start-up", net)


# ------------------------------------------------------------------ candidates as trials


def probe(workload: Workload, plan: Plan, steps: int, *, time_cap_s: float | None = None,
          trainer_factory: TrainerFactory | None = None,
          clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Train ``plan`` for ``steps`` steps from the seed: its losses, build time, steady
    step time and data share (JSON-able; the first two steps count as warm-up). With
    ``time_cap_s``, stops early once that much time has passed and
    :data:`PROBE_MIN_STEPS` steps ran (slow steps on a busy machine must not eat the stage)."""
    factory = trainer_factory or engine_trainer
    t0 = clock()
    trainer = factory(workload, plan)
    try:
        build_s = clock() - t0
        timings: list[Any] = []
        while len(timings) < steps:
            n = steps - len(timings) if time_cap_s is None else 1
            timings.extend(trainer.train_steps(n))
            if (time_cap_s is not None and clock() - t0 >= time_cap_s
                    and len(timings) >= PROBE_MIN_STEPS):
                break
    finally:
        trainer.close()
    steady = timings[2:] if len(timings) > 4 else timings
    total = sum(t.total for t in steady)
    return {
        "losses": [float(t.loss) for t in timings],
        "build_s": build_s,
        "step_s": statistics.median(t.total for t in steady),
        "data_share": sum(t.data for t in steady) / total if total > 0 else 0.0,
        "samples_per_step": statistics.median(t.samples for t in steady),
    }


def size_settings(step_s: float, *, chunk_s: float = CHUNK_S, pairs: int = PAIRS,
                  max_pairs: int = MAX_PAIRS, min_effect: float = MIN_EFFECT) -> ABSettings:
    """Chunks of about ``chunk_s`` seconds (1..200 steps) from a measured step time."""
    chunk = int(min(200, max(1, round(chunk_s / max(step_s, 1e-6)))))
    pairs = max(MIN_PAIRS, pairs)
    return ABSettings(chunk_steps=chunk, pairs=pairs, max_pairs=max(pairs, max_pairs),
                      min_effect=min_effect)


def cost_estimate(settings: ABSettings, a: Plan, b: Plan, step_s: float, build_s: float,
                  pairs: int | None = None) -> float:
    """Seconds an A/B of ``a`` and ``b`` should take at its first look, or with ``pairs``
    pairs (both arms, warm-up and settle steps)."""
    settle = settle_for(settings, a, b)
    n = settings.pairs if pairs is None else pairs
    steps = settings.warmup_steps + n * (settle + settings.chunk_steps)
    return 2 * (build_s + steps * step_s)
