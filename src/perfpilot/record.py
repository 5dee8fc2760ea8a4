"""Serializable values at the boundary between measuring and everything else.

A :class:`RunRecord` is what one measured run produced (like pyinstrument's ``Session``):
it round-trips through JSON so reports can be re-rendered offline. Probes fill its typed
sections (:mod:`perfpilot.record_sections`: ``stack_samples``, ``hot_lines``,
``timeline``, ``memory``...; :mod:`perfpilot.record_probe_sections`: ``loaders``,
``hot_ops``, ``cuda``, ``calibration``...), analysis reads them and returns
:class:`Finding` values (stored in ``findings``, highest ``estimated_speedup`` first); it
never measures. ``RunRecord.extra`` holds only data a user attached; perfpilot writes
nothing there, and a finding has no free-form part.

JSON: schema ``perfpilot.runrecord/3`` has each section under its own top-level key and
the user's data under ``extra``. Older files still load: schema 1 (sections and findings
as untyped top-level keys, verification results in ``finding.extra["verified"]``), and
schema-2 files whose findings kept evidence in ``finding.extra`` (its known keys are
read into the typed fields, see :meth:`Finding.from_dict`; the rest is dropped).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from perfpilot.errors import UserError
from perfpilot.record_probe_sections import (
    Calibration,
    CpuUse,
    CudaInfo,
    GradInEval,
    HotOps,
    Injection,
    IoCall,
    LoaderInfo,
    OptimizerInfo,
    RootModule,
    SetThreadsCall,
    site_of,
)
from perfpilot.record_sections import (
    EngineStats,
    Frame,
    HotLine,
    Memory,
    ProfileInfo,
    StackSamples,
    StepPhases,
    Support,
    Threads,
    Timeline,
    Verification,
)

RECORD_SCHEMA = "perfpilot.runrecord/3"
RECORD_SCHEMA_2 = "perfpilot.runrecord/2"  # findings kept evidence in extra: still loads
RECORD_SCHEMA_1 = "perfpilot.runrecord/1"
PHASES: tuple[str, ...] = ("data", "h2d", "forward", "backward", "optimizer", "other")
Confidence = Literal["high", "medium", "low"]


@dataclass(frozen=True)
class StatSummary:
    """A spread of samples: mean, median and a confidence interval of the median."""

    mean: float
    median: float
    ci_low: float
    ci_high: float
    n: int = 0

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StatSummary:
        return cls(**{k: d[k] for k in ("mean", "median", "ci_low", "ci_high")}, n=d.get("n", 0))


@dataclass(frozen=True)
class LoopSpan:
    """The loop enclosing a lint finding's line, as lines ``[line, end_line]``."""

    line: int
    end_line: int

    def to_dict(self) -> dict[str, int]:
        return {"line": self.line, "end_line": self.end_line}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoopSpan:
        return cls(int(d["line"]), int(d["end_line"]))


@dataclass(frozen=True)
class LintDetail:
    """What a lint finding adds: where its rule matched and how its share was measured.

    ``source``: the tool whose rule matched (``perfpilot`` or ``ruff``); ``column``: 0-based
    column of the match; ``loop``: the enclosing loop, if any; ``measure``: what the fix
    acts on (``line`` or ``loop``), with the rule's gain model stated in ``assumption``
    (its factor is the finding's ``factor``); ``line_share`` / ``attributed_share``: the
    line's measured share of the run, and with its loop's own samples (``None``
    unprofiled); ``loop_share``: measured share of the enclosing loop (``None``
    unprofiled or no loop); ``also``: other tools' rule ids that flag the same line;
    ``diff``: suggested-fix lines; ``loop_depth``: how many loops enclose the line;
    ``severity``: the rule's weight (static order).
    """

    also: tuple[str, ...] = ()
    diff: tuple[str, ...] = ()
    loop_share: float | None = None
    loop_depth: int = 0
    severity: int = 1
    source: str = "perfpilot"
    column: int = 0
    loop: LoopSpan | None = None
    measure: str = "line"
    assumption: str = ""
    line_share: float | None = None
    attributed_share: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(also=list(self.also), diff=list(self.diff),
                 loop=None if self.loop is None else self.loop.to_dict())
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LintDetail:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw.update(also=tuple(d.get("also") or ()), diff=tuple(d.get("diff") or ()),
                  loop_depth=int(d.get("loop_depth", 0)), severity=int(d.get("severity", 1)),
                  column=int(d.get("column") or 0),
                  loop=None if d.get("loop") is None else LoopSpan.from_dict(d["loop"]))
        return cls(**kw)


@dataclass(frozen=True)
class Measure:
    """A number a finding's evidence rests on: ``value`` in ``unit`` (``fraction``: of what
    ``name`` says, 0..1; ``%``; ``count``; ``s``), and the code it was measured at when
    that is not the finding's ``location`` (``site``: file, line, function)."""

    name: str
    value: float
    unit: str = ""
    site: Frame | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "unit": self.unit,
                "site": None if self.site is None else list(self.site)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Measure:
        return cls(name=str(d["name"]), value=d["value"], unit=str(d.get("unit") or ""),
                   site=site_of(d.get("site")))


# Keys older records kept in ``finding.extra``, and where they go now.
_LINT_KEYS = ("also", "diff", "loop_share", "loop_depth", "severity", "source", "column",
              "loop", "measure", "assumption", "line_share", "attributed_share")
_OLD_MEASURES = {"fixed_fraction": "fraction", "utilization": "%", "calls": "count"}


@dataclass(frozen=True)
class Finding:
    """One diagnosed problem, with measured evidence, a fix and its whole-run gain.

    ``estimated_speedup`` is a whole-run factor (1.25 means the run would take 1/1.25 of
    its time): ``amdahl(time_share, factor)``, where ``time_share`` is the measured
    fraction of the run the fix acts on and ``factor`` how much faster that part gets
    (``None`` for both when not known); ``location`` is ``{"file": str, "line": int}`` or
    ``None``; ``measured`` are the rule's other measured numbers (:class:`Measure`);
    ``verified`` is the measured gain of the fix (``--verify``); ``plan_change`` is the
    setting change that ``--verify`` applies (``None`` when the fix is a code change);
    ``demoted`` marks a lint finding measured under the reporting threshold; ``tag`` is
    the phase a finding is about (a Python hot spot's phase tag, the host phase an idle
    GPU waits on); ``lines`` are a Python hot spot's hot lines; ``lint`` is what lint
    adds (:class:`LintDetail`). Evidence that a record section already holds (the
    loader's settings, the thread calibration...) is read from the record, not copied.
    """

    id: str
    title: str
    evidence: str
    fix: str
    estimated_speedup: float
    location: dict[str, Any] | None = None
    confidence: Confidence = "medium"
    time_share: float | None = None
    factor: float | None = None
    verified: Verification | None = None
    plan_change: dict[str, Any] | None = None
    demoted: bool = False
    tag: str | None = None
    lines: tuple[int, ...] = ()
    measured: tuple[Measure, ...] = ()
    lint: LintDetail | None = None
    support: Support | None = None

    @property
    def thin(self) -> bool:
        """The finding rests on less measurement than its rule needs ("not enough
        evidence"): shown apart, never ranked first, never verified."""
        return self.support is not None and not self.support.enough

    def measured_value(self, name: str) -> float | None:
        """The value of the measured number ``name``, or None."""
        return next((m.value for m in self.measured if m.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(verified=None if self.verified is None else self.verified.to_dict(),
                 lines=list(self.lines), measured=[m.to_dict() for m in self.measured],
                 lint=None if self.lint is None else self.lint.to_dict(),
                 support=None if self.support is None else self.support.to_dict())
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        """Read a finding; older records kept the typed fields' data inside ``extra``:
        known keys go to their fields (``share``/``factor``, ``host_phase`` to ``tag``,
        lint's keys to ``lint``, rule numbers to ``measured``), the rest is dropped."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        extra = dict(d.get("extra") or {})
        verified = kw.get("verified") or extra.get("verified")  # schema 1: in extra
        for key in ("plan_change", "demoted", "tag", "lines"):
            if key in extra:
                kw.setdefault(key, extra[key])
        for key, old in (("time_share", "share"), ("factor", "factor"), ("tag", "host_phase")):
            if kw.get(key) is None and extra.get(old) is not None:
                kw[key] = extra[old]
        old_lint = {k: extra[k] for k in _LINT_KEYS if k in extra}
        lint = {**old_lint, **(kw.get("lint") or {})} if old_lint or kw.get("lint") else None
        measured = [Measure.from_dict(m) for m in kw.get("measured") or ()]
        if not measured:
            measured = _old_measures(extra)
        kw.update(verified=None if verified is None else Verification.from_dict(verified),
                  lint=None if lint is None else LintDetail.from_dict(lint),
                  support=(None if kw.get("support") is None
                           else Support.from_dict(kw["support"])),
                  demoted=bool(kw.get("demoted", False)),
                  lines=tuple(int(ln) for ln in kw.get("lines") or ()),
                  measured=tuple(measured))
        return cls(**kw)


def _old_measures(extra: dict[str, Any]) -> list[Measure]:
    """The rule numbers an older finding kept in ``extra``, as :class:`Measure` values."""
    out = [Measure(k, extra[k], unit) for k, unit in _OLD_MEASURES.items()
           if isinstance(extra.get(k), (int, float))]
    hot = extra.get("hot_line")
    if isinstance(hot, dict):
        site = site_of(hot.get("site"))
        out += [Measure(name, hot[key], "fraction", site)
                for name, key in (("hot_line_share", "share"),
                                  ("hot_line_of_loading", "of_loading")) if key in hot]
    return out


def _json_lists(value: Any) -> Any:
    """``value`` with tuples (the frozen sections' sequences) as lists, as JSON reads back:
    ``to_dict()`` of a loaded record equals the JSON it was loaded from."""
    if isinstance(value, dict):
        return {k: _json_lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_lists(v) for v in value]
    return value


def amdahl(share: float, factor: float = float("inf")) -> float:
    """Whole-run speedup when a part taking ``share`` of the time gets ``factor`` faster."""
    if factor <= 0:
        raise ValueError(f"speed-up factor must be > 0, got {factor}")
    share = min(max(share, 0.0), 1.0)
    remaining = share / factor if factor != float("inf") else 0.0
    return 1.0 / max(1.0 - share + remaining, 1e-9)


def sort_findings(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: f.estimated_speedup, reverse=True)


# Section fields: name -> how to read its JSON value (None stays None).
_SECTIONS: dict[str, Any] = {
    "engine": EngineStats.from_dict,
    "profile": ProfileInfo.from_dict,
    "timeline": Timeline.from_dict,
    "step_phases": StepPhases.from_dict,
    "stack_samples": StackSamples.from_dict,
    "hot_lines": lambda v: tuple(HotLine.from_dict(h) for h in v),
    "memory": Memory.from_dict,
    "threads": Threads.from_dict,
    "calibration": Calibration.from_dict,
    "cpu": CpuUse.from_dict,
    "hot_ops": HotOps.from_dict,
    "cuda": CudaInfo.from_dict,
    "grad_in_eval": GradInEval.from_dict,
    "injection": Injection.from_dict,
    "loaders": lambda v: tuple(LoaderInfo.from_dict(x) for x in v),
    "io": lambda v: tuple(IoCall.from_dict(x) for x in v),
    "roots": lambda v: tuple(RootModule.from_dict(x) for x in v),
    "optimizers": lambda v: tuple(OptimizerInfo.from_dict(x) for x in v),
    "set_num_threads": lambda v: tuple(SetThreadsCall.from_dict(x) for x in v),
    "findings": lambda v: tuple(Finding.from_dict(f) for f in v),
}


@dataclass
class RunRecord:
    """Everything one measured run produced.

    Core fields describe the measured (steady) steps. Sections, each None/empty when
    nothing wrote it: ``engine`` (perfpilot's training loop), ``profile``, ``timeline``,
    ``step_phases``, ``stack_samples``, ``hot_lines``, ``memory``, ``threads`` (see
    :mod:`perfpilot.record_sections`); ``calibration``, ``hot_ops``, ``cuda``,
    ``grad_in_eval``, ``cpu``, ``loaders``, ``io``, ``roots``, ``optimizers``,
    ``set_num_threads``, ``injection`` (see :mod:`perfpilot.record_probe_sections`;
    ``optimizers`` None: not probed; empty: none stepped). ``status`` is ``"failed"``
    (with ``error``) for a run that stopped on an error. ``extra`` is the user's, never perfpilot's.
    """

    workload: str
    plan: dict[str, Any]
    steps: int
    samples_per_s: float
    step_time_s: StatSummary
    phases_s: dict[str, float]
    peak_memory_bytes: int
    wall_time_s: float = 0.0
    metric: dict[str, Any] | None = None
    time_to_target_s: float | None = None
    loss_history: list[list[float]] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    findings: tuple[Finding, ...] = ()
    status: str | None = None
    error: str | None = None
    engine: EngineStats | None = None
    profile: ProfileInfo = field(default_factory=ProfileInfo)
    timeline: Timeline = field(default_factory=Timeline)
    step_phases: StepPhases = field(default_factory=StepPhases)
    stack_samples: StackSamples = field(default_factory=StackSamples)
    hot_lines: tuple[HotLine, ...] = ()
    memory: Memory = field(default_factory=Memory)
    threads: Threads = field(default_factory=Threads)
    calibration: Calibration = field(default_factory=Calibration)
    cpu: CpuUse = field(default_factory=CpuUse)
    hot_ops: HotOps = field(default_factory=HotOps)
    cuda: CudaInfo = field(default_factory=CudaInfo)
    grad_in_eval: GradInEval = field(default_factory=GradInEval)
    loaders: tuple[LoaderInfo, ...] = ()
    io: tuple[IoCall, ...] = ()
    roots: tuple[RootModule, ...] = ()
    optimizers: tuple[OptimizerInfo, ...] | None = None
    set_num_threads: tuple[SetThreadsCall, ...] = ()
    injection: Injection = field(default_factory=Injection)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"schema": RECORD_SCHEMA}
        d.update((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))
        d["step_time_s"] = self.step_time_s.to_dict()
        for name in _SECTIONS:
            value = d[name]
            if dataclasses.is_dataclass(value):
                d[name] = value.to_dict()  # type: ignore[union-attr]
            elif isinstance(value, tuple):
                d[name] = [v.to_dict() if dataclasses.is_dataclass(v) else v for v in value]
        return _json_lists(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        if not isinstance(d, dict):
            raise UserError(f"not a perfpilot run record (a JSON {type(d).__name__}, "
                            "expected an object)")
        schema = d.get("schema")
        if schema == RECORD_SCHEMA_1:
            d = _from_schema_1(d)
        elif schema not in (RECORD_SCHEMA, RECORD_SCHEMA_2):
            raise UserError(f"not a perfpilot run record (schema {schema!r}, "
                            f"expected {RECORD_SCHEMA!r})")
        names = {f.name for f in dataclasses.fields(cls)}
        core = {k: v for k, v in d.items() if k in names}
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING]
        missing = [k for k in required if k not in core]
        if missing:
            raise UserError(f"run record is missing key {missing[0]!r}")
        try:
            core["step_time_s"] = StatSummary.from_dict(core["step_time_s"])
        except (KeyError, TypeError, AttributeError):
            raise UserError("run record key 'step_time_s' is not {mean, median, ci_low, "
                            "ci_high}") from None
        for name, read in _SECTIONS.items():
            if core.get(name) is not None:
                try:
                    core[name] = read(core[name])
                except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
                    raise UserError(f"run record section {name!r} is malformed "
                                    f"({type(e).__name__}: {e})") from None
        for name in (*_SECTIONS, "extra"):  # null in JSON: the field's default
            if core.get(name) is None:
                core.pop(name, None)
        return cls(**core)

    def save(self, path: str | Path) -> None:
        """Write atomically (temp file + rename) so a crash never leaves half a record."""
        from perfpilot.jsonio import write_json_atomic

        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> RunRecord:
        from perfpilot.jsonio import load_json

        data = load_json(path, "record file")
        try:
            return cls.from_dict(data)
        except UserError as e:
            raise UserError(f"{Path(path)}: {e}") from None


def _from_schema_1(d: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 record's dict in schema-2 form: top-level keys that are not fields
    were the untyped ``extra`` (perfpilot's sections have the same names as the fields)."""
    names = {f.name for f in dataclasses.fields(RunRecord)} | {"schema"}
    out = {k: v for k, v in d.items() if k in names and k != "extra"}
    out["extra"] = {k: v for k, v in d.items() if k not in names}
    return out


