"""Serializable values at the boundary between measuring and everything else.

A :class:`RunRecord` is what one measured run produced (like pyinstrument's ``Session``):
it round-trips through JSON so reports can be re-rendered offline. Probes fill its typed
sections (:mod:`perfpilot.record_sections`: ``stack_samples``, ``hot_lines``,
``timeline``, ``memory``...), analysis reads them and returns :class:`Finding` values
(stored in ``findings``, highest ``estimated_speedup`` first); it never measures.
``extra`` holds only data a user attached; perfpilot writes nothing there.

JSON: schema ``perfpilot.runrecord/2`` has each section under its own top-level key and
the user's data under ``extra``. Schema-1 files (sections and findings as untyped
top-level keys, verification results in ``finding.extra["verified"]``) still load.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from perfpilot.errors import UserError
from perfpilot.record_sections import (
    EngineStats,
    HotLine,
    Memory,
    ProfileInfo,
    StackSamples,
    StepPhases,
    Threads,
    Timeline,
    Verification,
)

RECORD_SCHEMA = "perfpilot.runrecord/2"
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
class LintDetail:
    """What the ``perfpilot lint`` ranking and console read about a lint finding.

    ``also``: other tools' rule ids that flag the same line; ``diff``: suggested-fix lines;
    ``loop_share``: measured share of the enclosing loop (``None`` unprofiled or no loop);
    ``loop_depth``: how many loops enclose the line; ``severity``: the rule's weight.
    """

    also: tuple[str, ...] = ()
    diff: tuple[str, ...] = ()
    loop_share: float | None = None
    loop_depth: int = 0
    severity: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"also": list(self.also), "diff": list(self.diff), "loop_share": self.loop_share,
                "loop_depth": self.loop_depth, "severity": self.severity}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LintDetail:
        return cls(also=tuple(d.get("also") or ()), diff=tuple(d.get("diff") or ()),
                   loop_share=d.get("loop_share"), loop_depth=int(d.get("loop_depth", 0)),
                   severity=int(d.get("severity", 1)))


_LINT_KEYS = ("also", "diff", "loop_share", "loop_depth", "severity")


@dataclass(frozen=True)
class Finding:
    """One diagnosed problem, with measured evidence, a fix and its whole-run gain.

    ``estimated_speedup`` is a whole-run factor (1.25 means the run would take 1/1.25 of
    its time), computed with Amdahl's law from measured shares; ``location`` is
    ``{"file": str, "line": int}`` or ``None``; ``time_share`` is the measured fraction
    of the run spent where the finding points, when known; ``verified`` is the measured
    gain of the fix (``--verify``); ``plan_change`` is the setting change that ``--verify``
    applies (``None`` when the fix is a code change); ``demoted`` marks a lint finding
    measured under the reporting threshold; ``tag`` and ``lines`` describe a Python hot
    spot (its phase tag, its hot lines); ``lint`` is what lint ranking reads. ``extra``
    holds rule-specific evidence for the JSON output (the Amdahl inputs ``share`` and
    ``factor``, measured ratios...); perfpilot never reads it back.
    """

    id: str
    title: str
    evidence: str
    fix: str
    estimated_speedup: float
    location: dict[str, Any] | None = None
    confidence: Confidence = "medium"
    time_share: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    verified: Verification | None = None
    plan_change: dict[str, Any] | None = None
    demoted: bool = False
    tag: str | None = None
    lines: tuple[int, ...] = ()
    lint: LintDetail | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["lines"] = list(self.lines)
        d["lint"] = None if self.lint is None else self.lint.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        """Read a finding; older records kept the typed fields' data inside ``extra``."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        extra = dict(kw.get("extra") or {})
        verified = kw.get("verified") or extra.pop("verified", None)  # schema 1: in extra
        for key in ("plan_change", "demoted", "tag", "lines"):
            if key in extra:
                old = extra.pop(key)
                kw.setdefault(key, old)
        lint = kw.get("lint")
        old_lint = {k: extra.pop(k) for k in _LINT_KEYS if k in extra}
        if lint is None and old_lint:
            lint = old_lint
        kw.update(extra=extra, verified=None if verified is None
                  else Verification.from_dict(verified),
                  lint=None if lint is None else LintDetail.from_dict(lint),
                  demoted=bool(kw.get("demoted", False)),
                  lines=tuple(int(ln) for ln in kw.get("lines") or ()))
        return cls(**kw)


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
    "findings": lambda v: tuple(Finding.from_dict(f) for f in v),
    "loaders": tuple, "io": tuple, "roots": tuple, "optimizers": tuple,
    "set_num_threads": tuple,
}


@dataclass
class RunRecord:
    """Everything one measured run produced.

    Core fields describe the measured (steady) steps. Sections, each None/empty when
    nothing wrote it: ``engine`` (perfpilot's training loop), ``profile``, ``timeline``,
    ``step_phases``, ``stack_samples``, ``hot_lines``, ``memory``, ``threads`` (typed, see
    :mod:`perfpilot.record_sections`); ``calibration``, ``hot_ops``, ``cuda``,
    ``grad_in_eval`` (dicts) and ``loaders``, ``io``, ``roots``, ``optimizers``,
    ``set_num_threads`` (tuples of dicts) as their probes in :mod:`perfpilot.probes`
    document them (``optimizers`` None: not probed; empty: none stepped). ``status`` is
    ``"failed"`` (with ``error``) for a run that stopped on an error.
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
    calibration: dict[str, Any] = field(default_factory=dict)
    hot_ops: dict[str, Any] = field(default_factory=dict)
    cuda: dict[str, Any] = field(default_factory=dict)
    grad_in_eval: dict[str, Any] = field(default_factory=dict)
    loaders: tuple[dict[str, Any], ...] = ()
    io: tuple[dict[str, Any], ...] = ()
    roots: tuple[dict[str, Any], ...] = ()
    optimizers: tuple[dict[str, Any], ...] | None = None
    set_num_threads: tuple[dict[str, Any], ...] = ()
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
        elif schema != RECORD_SCHEMA:
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
        for name in ("calibration", "hot_ops", "cuda", "grad_in_eval", "extra"):
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


