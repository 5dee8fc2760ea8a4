"""The TuneRecord: everything one ``perfpilot tune`` measured and decided, typed.

It is to tuning what a :class:`~perfpilot.record.RunRecord` is to one run: the boundary
between measuring and rendering. :func:`perfpilot.tune.pipeline.tune` returns one and
rewrites ``DIR/record.json`` (atomically) after the baseline and after each stage, so a
run that dies keeps what it measured (``status`` says how far it got); the command and
``perfpilot report DIR`` render it. Renderers read attributes, never JSON keys.

Every part is a frozen dataclass with ``to_dict``/``from_dict``. The JSON keeps the
schema-1 layout (``perfpilot.tunerecord/1`` files load unchanged); schema 2 only states
that the record is built and read through these types. Stage ``evidence`` is the one
free-form mapping: each stage owns its payload (see the stage modules).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perfpilot.errors import UserError
from perfpilot.jsonio import dumps, load_json, write_text_atomic
from perfpilot.plan import Plan
from perfpilot.record import RunRecord, StatSummary
from perfpilot.trial import Trial

TUNE_SCHEMA = "perfpilot.tunerecord/2"
V1_SCHEMA = "perfpilot.tunerecord/1"  # same layout, untyped writer: still loads
RECORD_FILE = "record.json"
PLAN_FILE = "plan.json"
REPORT_FILE = "report.html"
STATUSES = ("running", "complete", "stopped", "failed", "interrupted")


def sanitize(value: Any) -> Any:
    """A copy where non-finite floats become strings ("inf", "nan"): strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): sanitize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [sanitize(v) for v in value]
    return value


def _num(x: Any) -> float | None:
    """A finite number as float, else None (sanitized records hold "inf" strings)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def _known(cls: type, d: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in d.items() if k in names}


def _plan(d: Any) -> Plan | None:
    return None if d is None else Plan.from_dict(d)


def _plan_dict(p: Plan | None) -> dict[str, Any] | None:
    return None if p is None else p.to_dict()


def _run(d: Any) -> RunRecord | None:
    return None if d is None else RunRecord.from_dict(d)


# ---------------------------------------------------------------- small parts


@dataclass(frozen=True)
class WorkloadInfo:
    """What was tuned: its name, spec, metric and target (``direction`` max or min)."""

    name: str | None = None
    spec: str | None = None
    description: str | None = None
    metric: str | None = None
    direction: str = "min"
    target: float | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WorkloadInfo:
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class TuneSettings:
    """How the tuning was asked for: stages, executor, options, ``--horizon``."""

    stages: tuple[str, ...] = ()
    executor: str = "inline"
    options: Mapping[str, Any] = field(default_factory=dict)
    horizon_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"stages": list(self.stages), "executor": self.executor,
                "options": dict(self.options), "horizon_s": self.horizon_s}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TuneSettings:
        kw = _known(cls, d)
        kw["stages"] = tuple(kw.get("stages") or ())
        kw["options"] = dict(kw.get("options") or {})
        return cls(**kw)


@dataclass(frozen=True)
class Horizon:
    """The expected run length the stages judged start-up costs against, and its source."""

    horizon_s: float | None = None
    source: str = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Horizon:
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class Decision:
    """Which plan ``plan.json`` holds (``tuned`` or ``baseline``) and why."""

    plan: str
    why: str

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Decision:
        return cls(plan=str(d["plan"]), why=str(d.get("why", "")))


@dataclass(frozen=True)
class Versions:
    perfpilot: str | None = None
    torch: str | None = None
    optuna: str | None = None
    python: str | None = None
    platform: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Versions:
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class MachineInfo:
    """The machine the tuning ran on; ``raw`` is :meth:`perfpilot.devices.Machine.to_dict`
    as written (stages read it), the attributes are what the report shows."""

    cpu_model: str | None = None
    usable_cores: int | None = None
    logical_cores: int | None = None
    gpus: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    os: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.raw)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MachineInfo:
        cpu = d.get("cpu") or {}
        gpus = tuple(str(g.get("name", g)) if isinstance(g, Mapping) else str(g)
                     for g in d.get("gpus") or ())
        return cls(cpu_model=cpu.get("model"), usable_cores=cpu.get("usable_cores"),
                   logical_cores=cpu.get("logical_cores"), gpus=gpus,
                   devices=tuple(d.get("devices") or ()), os=str(d.get("os") or ""),
                   raw=dict(d))


# ---------------------------------------------------------------- stages


@dataclass(frozen=True)
class StageRecord:
    """One stage: its summary, budget, time, resulting plan, trial numbers and evidence.

    ``evidence`` is the stage's own JSON payload (candidates, curves, the choice); ``error``
    is set when the stage stopped (its incumbent kept), ``traceback`` when that was a bug.
    """

    name: str
    summary: str = ""
    budget_s: float = 0.0
    elapsed_s: float = 0.0
    plan: Plan | None = None
    trials: tuple[int, ...] = ()
    error: str | None = None
    traceback: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "summary": self.summary, "budget_s": self.budget_s,
             "elapsed_s": self.elapsed_s, "plan": _plan_dict(self.plan),
             "trials": list(self.trials), "error": self.error,
             "evidence": sanitize(self.evidence)}
        if self.traceback:
            d["traceback"] = self.traceback
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StageRecord:
        kw = _known(cls, d)
        kw["plan"] = _plan(kw.get("plan"))
        kw["trials"] = tuple(kw.get("trials") or ())
        kw["evidence"] = dict(kw.get("evidence") or {})
        kw["budget_s"] = float(kw.get("budget_s") or 0.0)
        kw["elapsed_s"] = float(kw.get("elapsed_s") or 0.0)
        return cls(**kw)


# ---------------------------------------------------------------- the final check


@dataclass(frozen=True)
class Round:
    """One interleaved pair of runs to the target (seconds of training each)."""

    round: int
    baseline_s: float
    tuned_s: float
    baseline_reached: bool = True
    tuned_reached: bool = True
    trials: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "trials": list(self.trials)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Round:
        kw = _known(cls, d)
        kw["trials"] = tuple(kw.get("trials") or ())
        return cls(**kw)


_COMPARISON_SCALARS = ("verdict", "ratio", "ci_low", "ci_high", "n", "confidence", "trial",
                       "state", "arm", "reason", "skipped", "baseline_samples_per_s",
                       "tuned_samples_per_s", "tuned_missed", "baseline_missed")


@dataclass(frozen=True)
class Comparison:
    """One comparison of the final check: throughput or time to target.

    Measured: ``ratio`` (tuned over baseline speed, >1 is faster) with its interval,
    ``n`` rounds and a ``verdict``. Not measured: ``skipped`` (why it was not run) or
    ``state`` and ``reason`` (a run failed). Throughput carries each arm's samples/s
    (median of interleaved timed chunks); time to target each arm's :class:`StatSummary`
    of seconds and the ``rounds``. ``detail``: the raw samples and step times.
    """

    verdict: str | None = None
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0
    confidence: float | None = None
    trial: int | None = None
    state: str | None = None
    arm: str | None = None
    reason: str = ""
    skipped: str = ""
    baseline_samples_per_s: float | None = None
    tuned_samples_per_s: float | None = None
    baseline: StatSummary | None = None
    tuned: StatSummary | None = None
    rounds: tuple[Round, ...] = ()
    tuned_missed: int = 0
    baseline_missed: int = 0
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def measured(self) -> bool:
        return self.ratio is not None

    @property
    def why_not(self) -> str:
        """Why there is no ratio, in words."""
        return self.skipped or self.reason or "not measured"

    def to_dict(self) -> dict[str, Any]:
        counts = {"n"} if self.baseline is None else {"n", "tuned_missed", "baseline_missed"}
        d: dict[str, Any] = {k: getattr(self, k) for k in _COMPARISON_SCALARS
                             if getattr(self, k) not in (None, "", 0)
                             or (k in counts and self.measured)}
        for k in ("baseline", "tuned"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k).to_dict()
        if self.rounds:
            d["rounds"] = [r.to_dict() for r in self.rounds]
        return {**d, **sanitize(self.detail)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Comparison:
        kw: dict[str, Any] = {k: d[k] for k in _COMPARISON_SCALARS if k in d}
        for k in ("ratio", "ci_low", "ci_high", "confidence", "baseline_samples_per_s",
                  "tuned_samples_per_s"):
            if k in kw:
                kw[k] = _num(kw[k])
        for k in ("baseline", "tuned"):
            if isinstance(d.get(k), Mapping):
                kw[k] = StatSummary.from_dict(dict(d[k]))
        kw["rounds"] = tuple(Round.from_dict(r) for r in d.get("rounds") or ())
        known = {*_COMPARISON_SCALARS, "baseline", "tuned", "rounds"}
        kw["detail"] = {k: v for k, v in d.items() if k not in known}
        return cls(**kw)


@dataclass(frozen=True)
class FinalResult:
    """The final check: tuned vs baseline, interleaved. ``verdict`` is ``unchanged``
    when no stage changed the plan (nothing compared); ``primary`` names the comparison
    the ``claim`` is about; ``settings`` is what the check was sized to (free-form);
    ``cross_check``: the throughput against the stages' gains (free-form, with ``words``
    and ``agree``; :mod:`perfpilot.tune.final_cross`), empty in older records."""

    verdict: str | None = None
    primary: str | None = None
    claim: str = ""
    throughput: Comparison | None = None
    time_to_target: Comparison | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    cross_check: Mapping[str, Any] = field(default_factory=dict)  # tune.final_cross's

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"verdict": self.verdict, "primary": self.primary,
                             "claim": self.claim}
        if self.settings:
            d["settings"] = sanitize(self.settings)
        if self.cross_check:
            d["cross_check"] = sanitize(self.cross_check)
        for k in ("throughput", "time_to_target"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k).to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FinalResult:
        parts = {k: Comparison.from_dict(d[k]) for k in ("throughput", "time_to_target")
                 if isinstance(d.get(k), Mapping)}
        return cls(verdict=d.get("verdict"), primary=d.get("primary"),
                   claim=str(d.get("claim") or ""), settings=dict(d.get("settings") or {}),
                   cross_check=dict(d.get("cross_check") or {}), **parts)


# ---------------------------------------------------------------- the record


@dataclass(frozen=True)
class TuneRecord:
    """One tuning. ``status``: one of :data:`STATUSES`. ``baseline``/``tuned``: the
    baseline run before the stages and the tuned plan's first run in the final check;
    ``baseline_check``: the baseline's first run in the final check (interleaved with the
    tuned one). ``tuned_plan`` is what the stages chose, ``plan`` what ``plan.json``
    holds (see ``decision``; ``load_label``: the load it won at and whether it holds now,
    :mod:`perfpilot.tune.load_label`). ``trials``: every trial of the study;
    ``placement``: where this session's trials ran (executor name -> count)."""

    status: str = "running"
    error: str | None = None
    workload: WorkloadInfo = WorkloadInfo()
    budget_s: float | None = None
    elapsed_s: float = 0.0
    settings: TuneSettings = TuneSettings()
    horizon: Horizon = Horizon()
    proxy: Mapping[str, Any] | None = None  # tune.proxy.ProxyTarget, when the target was missed
    baseline_plan: Plan | None = None
    tuned_plan: Plan | None = None
    plan: Plan | None = None
    decision: Decision | None = None
    load_label: Mapping[str, Any] | None = None  # tune.load_label: the load the plan won at
    baseline: RunRecord | None = None
    tuned: RunRecord | None = None
    baseline_check: RunRecord | None = None
    stages: tuple[StageRecord, ...] = ()
    final: FinalResult | None = None
    trials: tuple[Trial, ...] = ()
    placement: Mapping[str, int] = field(default_factory=dict)
    machine: MachineInfo = MachineInfo()
    versions: Versions = Versions()
    notes: tuple[str, ...] = ()
    started_at: float | None = None
    finished_at: float | None = None
    resumed: bool = False
    report_traceback: str | None = None

    def replace(self, **changes: Any) -> TuneRecord:
        return dataclasses.replace(self, **changes)

    def with_note(self, note: str) -> TuneRecord:
        return dataclasses.replace(self, notes=(*self.notes, note))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"schema": TUNE_SCHEMA}
        for f in dataclasses.fields(self):
            d[f.name] = _TO_JSON.get(f.name, _same)(getattr(self, f.name))
        if d["report_traceback"] is None:
            del d["report_traceback"]
        return d

    @classmethod
    def from_dict(cls, data: Any, where: str = "tune record") -> TuneRecord:
        """The record in ``data`` (schema 2 or 1); a UserError naming ``where`` and the
        key otherwise."""
        if not isinstance(data, Mapping):
            raise UserError(f"{where}: not a perfpilot tune record (a JSON "
                            f"{type(data).__name__}, expected an object)")
        if data.get("schema") not in (TUNE_SCHEMA, V1_SCHEMA):
            raise UserError(f"{where}: not a perfpilot tune record (schema "
                            f"{data.get('schema')!r}, expected {TUNE_SCHEMA!r} or "
                            f"{V1_SCHEMA!r})")
        if data.get("status") not in STATUSES:
            raise UserError(f"{where}: tune record key 'status' is {data.get('status')!r}")
        kw: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            value = data.get(f.name)
            if value is None or f.name not in _FROM_JSON:
                if value is not None:
                    kw[f.name] = value
                continue
            try:
                kw[f.name] = _FROM_JSON[f.name](value)
            except UserError as e:
                raise UserError(f"{where}: tune record key {f.name!r}: {e}") from None
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise UserError(f"{where}: tune record key {f.name!r} is malformed "
                                f"({type(e).__name__}: {e})") from None
        return cls(**kw)

    def dumps(self) -> str:
        return dumps(self.to_dict(), allow_nan=False)

    def save(self, path: str | Path) -> None:
        """Write atomically (a crash never leaves half a record)."""
        write_text_atomic(path, self.dumps())

    @classmethod
    def load(cls, path: str | Path) -> TuneRecord:
        """Read a tune record; every error is one line naming the file."""
        return cls.from_dict(load_json(path, "tune record"), str(path))


def _same(x: Any) -> Any:
    return x


def _to_dict(x: Any) -> Any:
    return None if x is None else (x.to_dict() if hasattr(x, "to_dict")
                                   else dataclasses.asdict(x))


_TO_JSON: dict[str, Callable[[Any], Any]] = {
    "workload": _to_dict, "settings": _to_dict, "horizon": _to_dict,
    "baseline_plan": _plan_dict, "tuned_plan": _plan_dict, "plan": _plan_dict,
    "decision": _to_dict, "baseline": _to_dict, "tuned": _to_dict, "baseline_check": _to_dict,
    "stages": lambda xs: [s.to_dict() for s in xs], "final": _to_dict,
    "trials": lambda xs: [sanitize(t.to_dict()) for t in xs],
    "placement": dict, "machine": _to_dict, "versions": _to_dict, "notes": list,
    "proxy": lambda x: None if x is None else sanitize(dict(x)),
    "load_label": lambda x: None if x is None else sanitize(dict(x)),
}

_FROM_JSON: dict[str, Callable[[Any], Any]] = {
    "workload": WorkloadInfo.from_dict, "settings": TuneSettings.from_dict,
    "horizon": Horizon.from_dict, "baseline_plan": _plan, "tuned_plan": _plan, "plan": _plan,
    "decision": Decision.from_dict, "baseline": _run, "tuned": _run, "baseline_check": _run,
    "stages": lambda xs: tuple(StageRecord.from_dict(s) for s in xs),
    "final": FinalResult.from_dict, "trials": lambda xs: tuple(Trial.from_dict(t) for t in xs),
    "placement": dict, "machine": MachineInfo.from_dict, "versions": Versions.from_dict,
    "notes": lambda xs: tuple(str(x) for x in xs),
    "elapsed_s": float, "resumed": bool, "proxy": dict, "load_label": dict,
}
