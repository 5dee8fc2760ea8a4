"""Serializable values at the boundary between measuring and everything else.

A :class:`RunRecord` is what one measured run produced (like pyinstrument's ``Session``):
it round-trips through JSON so reports can be re-rendered offline. Probes add sections
to ``extra`` (each under its own top-level key in the JSON), e.g. ``stack_samples``,
``hot_lines``, ``hot_ops``, ``memory``, ``threads``. Analysis reads records and returns
:class:`Finding` values; it never measures.

Section contracts used across modules:

``stack_samples``
    ``{"interval_s": float, "total": int, "stacks": [{"frames": [[file, line, function],
    ...], "count": int}]}`` with frames outermost first and files as absolute paths.
``hot_lines``
    ``[{"file", "line", "function", "self_share", "total_share"}]`` sorted by
    ``total_share``; shares are fractions (0..1) of all samples.
``findings``
    ``[Finding.to_dict(), ...]`` sorted by ``estimated_speedup``, highest first.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from perfpilot.errors import UserError

RECORD_SCHEMA = "perfpilot.runrecord/1"
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
class Finding:
    """One diagnosed problem, with measured evidence, a fix and its whole-run gain.

    ``estimated_speedup`` is a whole-run factor (1.25 means the run would take 1/1.25 of
    its time), computed with Amdahl's law from measured shares; ``location`` is
    ``{"file": str, "line": int}`` or ``None``; ``time_share`` is the measured fraction
    of the run spent where the finding points, when known; ``extra`` holds rule-specific
    data (e.g. a verified speedup, a suggested diff).
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def amdahl(share: float, factor: float = float("inf")) -> float:
    """Whole-run speedup when a part taking ``share`` of the time gets ``factor`` faster."""
    if factor <= 0:
        raise ValueError(f"speed-up factor must be > 0, got {factor}")
    share = min(max(share, 0.0), 1.0)
    remaining = share / factor if factor != float("inf") else 0.0
    return 1.0 / max(1.0 - share + remaining, 1e-9)


def sort_findings(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: f.estimated_speedup, reverse=True)


@dataclass
class RunRecord:
    """Everything one measured run produced. ``extra`` keys are top-level in the JSON."""

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
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {"schema": RECORD_SCHEMA}
        for f in dataclasses.fields(self):
            if f.name != "extra":
                d[f.name] = getattr(self, f.name)
        d["step_time_s"] = self.step_time_s.to_dict()
        clash = set(self.extra) & set(d)
        if clash:
            raise ValueError(f"extra keys clash with record fields: {sorted(clash)}")
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        if not isinstance(d, dict):
            raise UserError(f"not a perfpilot run record (a JSON {type(d).__name__}, "
                            "expected an object)")
        schema = d.get("schema")
        if schema != RECORD_SCHEMA:
            raise UserError(f"not a perfpilot run record (schema {schema!r}, "
                            f"expected {RECORD_SCHEMA!r})")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        core = {k: v for k, v in d.items() if k in names}
        missing_default = dataclasses.MISSING
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is missing_default and f.default_factory is missing_default]
        missing = [k for k in required if k not in core]
        if missing:
            raise UserError(f"run record is missing key {missing[0]!r}")
        try:
            core["step_time_s"] = StatSummary.from_dict(core["step_time_s"])
        except (KeyError, TypeError, AttributeError):
            raise UserError("run record key 'step_time_s' is not {mean, median, ci_low, "
                            "ci_high}") from None
        extra = {k: v for k, v in d.items() if k not in names and k != "schema"}
        return cls(**core, extra=extra)

    @property
    def findings(self) -> list[Finding]:
        return [Finding.from_dict(f) for f in self.extra.get("findings", [])]

    def save(self, path: str | Path) -> None:
        """Write atomically (temp file + rename) so a crash never leaves half a record."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> RunRecord:
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError:
            raise UserError(f"record file not found: {p}") from None
        except OSError as e:
            raise UserError(f"cannot read record file {p}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise UserError(f"{p}: not a text file (records are UTF-8 JSON)") from None
        except json.JSONDecodeError as e:
            raise UserError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from None
        try:
            return cls.from_dict(data)
        except UserError as e:
            raise UserError(f"{p}: {e}") from None


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write JSON via a unique temp file in the same folder and a rename, so readers and
    a crash never see half a file and two writers never share a temp file."""
    import os
    import tempfile

    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=2, default=_json_default) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(o: Any) -> Any:
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    if hasattr(o, "tolist"):  # numpy / torch scalars and arrays
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot serialize {type(o).__name__}")
