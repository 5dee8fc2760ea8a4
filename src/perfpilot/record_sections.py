"""The typed sections of a :class:`~perfpilot.record.RunRecord` that perfpilot writes.

Each section is a frozen dataclass with ``to_dict``/``from_dict``; ``from_dict`` accepts
the JSON form (lists where the value holds tuples) and ignores keys it does not know, so
a record written by a newer perfpilot still loads. Who writes what:

* :mod:`perfpilot.probes.assemble` (``perfpilot profile``): :class:`ProfileInfo`,
  :class:`Timeline`, :class:`StepPhases`, :class:`StackSamples`, :class:`HotLine`,
  :class:`Memory`, :class:`Threads`;
* :mod:`perfpilot.engine` (workload runs): :class:`EngineStats`;
* :mod:`perfpilot.probes.verify` (``--verify``): :class:`Verification`, on a finding.

Times are seconds, shares are fractions (0..1), files are absolute paths.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
Frame = tuple[str, int, str]  # (file, line, function)
# Phase tags of samples outside the steady window (see StackSamples.main_stacks).
STEADY_EXCLUDED_TAGS = frozenset({"startup", "warmup", "profiling"})


def build(cls: type[T], d: Any, **convert: Any) -> T:
    """``cls`` from its JSON dict (unknown keys ignored); ``convert`` maps a field name to
    a function applied to its value when present and not None."""
    if isinstance(d, cls):
        return d
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kw = {k: v for k, v in (d or {}).items() if k in names}
    for name, fn in convert.items():
        if kw.get(name) is not None:
            kw[name] = fn(kw[name])
    return cls(**kw)


S = TypeVar("S", bound="Section")


class Section:
    """``to_dict``/``from_dict`` for the section dataclasses (tuples become lists in JSON;
    ``from_dict`` ignores unknown keys). A section with nested sections or tuples
    overrides ``from_dict`` with :func:`build` and its converters."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[S], d: dict[str, Any]) -> S:
        return build(cls, d)


# ---------------------------------------------------------------- stacks and lines


@dataclass(frozen=True)
class Stack(Section):
    """One distinct stack and the samples that saw it; frames outermost first.

    ``seconds`` is the wall time the samples covered (None from a count-only sampler);
    ``python_s``/``handoff_s``/``cpu_s`` are the main thread's (see the sampler).
    """

    frames: tuple[Frame, ...]
    count: int = 0
    seconds: float | None = None
    python_s: float = 0.0
    handoff_s: float = 0.0
    cpu_s: float = 0.0
    thread: str = "MainThread"
    tag: str = ""

    @property
    def weight(self) -> float:
        """Seconds when time-weighted, else the sample count."""
        return float(self.seconds if self.seconds is not None else self.count)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Stack:
        return build(cls, d, frames=lambda fs: tuple((str(f[0]), int(f[1]), str(f[2]))
                                                     for f in fs))


@dataclass(frozen=True)
class StackSamples(Section):
    """Sampled stacks of every thread: ``total`` ticks covering ``seconds`` of wall time."""

    interval_s: float = 0.0
    total: int = 0
    seconds: float | None = None
    busy_s: float | None = None
    stacks: tuple[Stack, ...] = ()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StackSamples:
        return build(cls, d, stacks=lambda ss: tuple(Stack.from_dict(s) for s in ss))

    def main_stacks(self, steady_only: bool = True) -> tuple[Stack, ...]:
        """Main-thread stacks of the steady window (falling back to all after startup,
        then to everything, when a short run has none)."""
        main = tuple(s for s in self.stacks if s.thread == "MainThread")
        if not steady_only:
            return main
        for excluded in (STEADY_EXCLUDED_TAGS, {"startup"}):
            chosen = tuple(s for s in main if s.tag not in excluded)
            if sum(s.weight for s in chosen) > 0:
                return chosen
        return main

    def steady_view(self) -> StackSamples:
        """Only the main thread's steady-window stacks, their ticks and seconds as totals."""
        chosen = self.main_stacks()
        return dataclasses.replace(self, stacks=chosen,
                                   seconds=sum(s.seconds or 0.0 for s in chosen),
                                   total=sum(s.count for s in chosen))


@dataclass(frozen=True)
class HotLine(Section):
    """A user line of the main thread in the steady window (see
    :func:`perfpilot.probes.assemble.hot_lines`). ``tags``: self seconds per phase tag."""

    file: str
    line: int
    function: str
    self_share: float = 0.0
    total_share: float = 0.0
    python_share: float = 0.0
    own_python_share: float = 0.0
    seconds: float = 0.0
    tags: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------- time


@dataclass(frozen=True)
class Timeline(Section):
    """Where the wall time went, from process start to exit (seconds since start)."""

    total_s: float = 0.0
    interpreter_s: float = 0.0
    imports_s: float = 0.0
    startup_s: float = 0.0
    warmup_s: float = 0.0
    steady_s: float = 0.0
    train_s: float = 0.0
    eval_s: float = 0.0
    eval_passes: int = 0
    io_s: float = 0.0
    tail_s: float = 0.0
    profiler_s: float = 0.0
    skipped_s: float = 0.0
    steady_from: float = 0.0


@dataclass(frozen=True)
class StepPhases(Section):
    """Per-step mean and total seconds per phase over the steady steps.

    ``per_step_s``/``total_s`` have the six record phases plus ``io`` and ``eval``;
    ``per_step_ci_s`` the 95% interval of each phase's per-step mean (phases with time);
    ``per_step_s_core`` the six (``io`` folded into ``other``). ``samples_from`` says how
    ``samples_per_step`` was counted (the training DataLoader's batches, or which
    dimension of the model's input), in words.
    """

    kind: str | None = None
    steps: int = 0
    per_step_s: dict[str, float] = field(default_factory=dict)
    total_s: dict[str, float] = field(default_factory=dict)
    per_step_s_core: dict[str, float] = field(default_factory=dict)
    per_step_ci_s: dict[str, list[float]] = field(default_factory=dict)
    step_s_series: tuple[float, ...] = ()
    samples_per_step: int | None = None
    samples_from: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepPhases:
        return build(cls, d, step_s_series=tuple)


@dataclass(frozen=True)
class ProfileInfo(Section):
    """How a profiled run went: what ran, why it stopped, what a step was."""

    mode: str = "script"
    argv: tuple[str, ...] | None = None
    cwd: str | None = None
    exit_code: int | None = None
    stopped: str | None = None
    error: dict[str, Any] | None = None
    partial: bool = False
    step_kind: str | None = None
    boundaries: Any = None
    steps: int = 0
    steady_steps: int = 0
    excluded_steps: int = 0
    config: dict[str, Any] | None = None
    torch_imported: bool | None = None
    trained_in_eval_mode: int = 0
    hook_errors: tuple[Any, ...] = ()
    sampler: dict[str, Any] = field(default_factory=dict)
    signal: int | None = None  # the signal that killed the script, if one did
    # The steps came from a spawned child (DDP rank): {pid, rank, processes, steps: {pid: n}}
    followed: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProfileInfo:
        return build(cls, d, argv=tuple, hook_errors=tuple)


# ---------------------------------------------------------------- machine


@dataclass(frozen=True)
class Memory(Section):
    """Process RSS: peak, ``series`` of ``[t, bytes]``, and steady-window growth."""

    peak_rss_bytes: int = 0
    series: tuple[tuple[float, int], ...] = ()
    growth_bytes_per_s: float | None = None
    steady_span_s: float = 0.0
    steady_start_bytes: int | None = None
    steady_end_bytes: int | None = None
    growth_bytes_per_step: float | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Memory:
        return build(cls, d, series=lambda s: tuple((float(t), int(b)) for t, b in s))


@dataclass(frozen=True)
class Threads(Section):
    """Cores and threads seen by the run (``env``: the thread-count variables set)."""

    usable_cores: int | None = None
    cpu_count: int | None = None
    os_threads: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    max_loader_workers: int = 0
    torch_threads: int | None = None
    torch_interop_threads: int | None = None


@dataclass(frozen=True)
class EngineStats(Section):
    """What perfpilot's own training loop knows about a workload run."""

    device: str = ""
    timer: str = ""
    seed: int | None = None
    warmup_steps: int = 0
    measured_steps: int = 0
    samples: int = 0
    train_time_s: float = 0.0
    eval_time_s: float = 0.0
    setup_s: float = 0.0
    stop_reason: str = ""
    epochs: int = 0
    eval_every_s: float | None = None
    eval_adaptive: bool = False
    data_host_s: float = 0.0
    memory: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- verification


@dataclass(frozen=True)
class Verification(Section):
    """A finding's fix, measured (``perfpilot profile --verify``).

    ``ratio`` is the speedup of the fixed run over the baseline with its 95% interval
    over ``n`` rounds; ``error`` (instead of a ratio) says why it could not be measured.
    """

    change: dict[str, Any] = field(default_factory=dict)
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    verdict: str | None = None
    n: int = 0
    estimate: float | None = None
    measure: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.ratio is not None


# ---------------------------------------------------------------- evidence behind a finding


@dataclass(frozen=True)
class Support(Section):
    """How much measurement a finding's share rests on (:mod:`perfpilot.diagnose.evidence`).

    ``n`` observations of ``unit`` (``"samples"``: stack samples of the steady window;
    ``"steps"``: steady steps) where the rule needs ``needed``; ``own`` the samples in the
    finding's own code (sample-based findings; ``own_needed`` the minimum);
    ``share_low``/``share_high`` the 95% interval of ``time_share`` (``None`` when the rule's
    share has no per-observation spread to draw one from); ``run_speedup`` the gain over
    *this* whole run (start-up, warm-up and the script's tail included), where the
    finding's ``estimated_speedup`` is the steady state's (a long run);
    ``steady_fraction`` the steady window's share of the run's wall time.
    """

    n: int
    unit: str
    needed: int
    own: int | None = None
    own_needed: int = 0
    share_low: float | None = None
    share_high: float | None = None
    run_speedup: float | None = None
    steady_fraction: float | None = None

    @property
    def enough(self) -> bool:
        """The rule's minimum is met (``own`` too, where it counts)."""
        return self.n >= self.needed and (self.own is None or self.own >= self.own_needed)

    def shortfall(self) -> str:
        """What is missing, in words (empty when enough)."""
        if self.n < self.needed:
            return f"{self.n} {self.unit} in the steady window, {self.needed} needed"
        if self.own is not None and self.own < self.own_needed:
            return f"{self.own} samples in its code, {self.own_needed} needed"
        return ""
