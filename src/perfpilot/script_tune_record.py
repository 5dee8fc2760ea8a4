"""The ScriptTuneRecord: what one ``perfpilot tune -- python train.py`` measured and decided.

The boundary between the script tuner (:mod:`perfpilot.tune.script`) and the renderers,
as :class:`~perfpilot.tune_record.TuneRecord` is for workloads. It is rewritten
(atomically) to ``DIR/record.json`` after the profiling run and after every measuring
round, so a killed tuning keeps what it measured; renderers read attributes, never JSON
keys.

Vocabulary:

* an **arm** is one setting of the script (the baseline: no change; a candidate: some
  changes); one **run** of an arm is one process of the user's script under the runner
  with those changes injected, measured over ``window_steps`` steady steps (start-up and
  warm-up excluded, their time reported apart);
* a **round** runs the baseline and every candidate still in the race once each, in a
  rotating order, so drift and "who ran after whom" hit every arm alike; a candidate's
  speedup is the median over rounds of baseline seconds/sample over its own, with a 95%
  interval (:func:`perfpilot.measure.compare_samples`);
* a candidate's **fate**: ``kept`` (its interval says faster and its losses match),
  ``slower``/``same`` (measured, not kept), ``rejected`` (it failed: crashed, exited early,
  a knob could not be applied, or its losses differ; ``reason`` says which, with the
  figures), ``skipped`` (not run: cannot work here, or no time left; ``reason``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perfpilot.jsonio import load_json, write_json_atomic
from perfpilot.tune_record import _known, sanitize

SCRIPT_TUNE_FORMAT = "perfpilot.script-tune/1"
FATES = ("kept", "slower", "same", "rejected", "skipped", "pending")


@dataclass(frozen=True)
class Parity:
    """The candidate's training losses against the baseline's, same seed, same steps.

    ``tolerance`` is the allowed difference of the window means (stated in ``rule``);
    ``max_step_diff`` the largest per-step difference (0 when the math is unchanged and
    the script deterministic)."""

    ok: bool
    baseline_loss: float | None = None
    candidate_loss: float | None = None
    tolerance: float | None = None
    steps: int = 0
    max_step_diff: float | None = None
    rule: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Parity:
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class Candidate:
    """One candidate setting: where it came from, its fate and the figures behind it."""

    name: str
    changes: dict[str, Any]
    source: str  # "finding:dataloader-bound", "search:workers×threads", "search:precision"...
    fate: str = "pending"
    reason: str = ""
    ratio: float | None = None  # speedup over the baseline (>1: faster)
    ci_low: float | None = None
    ci_high: float | None = None
    rounds: int = 0
    seconds_per_sample: tuple[float, ...] = ()  # one per run, in round order
    startup_s: float | None = None  # median start-up (process start to first step)
    parity: Parity | None = None
    refused: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Candidate:
        d = _known(cls, d)
        d["seconds_per_sample"] = tuple(d.get("seconds_per_sample") or ())
        if d.get("parity") is not None:
            d["parity"] = Parity.from_dict(d["parity"])
        return cls(**d)


@dataclass(frozen=True)
class Baseline:
    """The script as it is: its runs' figures, and what the profiling run found."""

    seconds_per_sample: tuple[float, ...] = ()
    startup_s: float | None = None
    step_s: float | None = None
    samples_per_step: float | None = None
    phases: dict[str, float] = field(default_factory=dict)  # share of a step per phase
    findings: tuple[dict[str, Any], ...] = ()  # id, title, estimated_speedup, plan_change
    loader_sites: tuple[tuple[str, int], ...] = ()
    threads: int | None = None
    usable_cores: int | None = None
    device: str = "cpu"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Baseline:
        d = _known(cls, d)
        d["seconds_per_sample"] = tuple(d.get("seconds_per_sample") or ())
        d["findings"] = tuple(d.get("findings") or ())
        d["loader_sites"] = tuple(tuple(s) for s in d.get("loader_sites") or ())
        return cls(**d)


@dataclass(frozen=True)
class Result:
    """The chosen changes, re-measured together against the baseline."""

    changes: dict[str, Any] = field(default_factory=dict)
    speedup: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    verdict: str | None = None
    rounds: int = 0
    startup_delta_s: float | None = None  # tuned start-up minus the baseline's
    horizon_s: float | None = None
    run_speedup: float | None = None  # over the horizon, start-up included
    summary: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class PatchInfo:
    """``train.patch``: what it edits, and the knobs only the launcher applies (why)."""

    file: str | None = None
    edits: tuple[str, ...] = ()
    launcher: dict[str, str] = field(default_factory=dict)
    launcher_command: str | None = None
    error: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PatchInfo:
        d = _known(cls, d)
        d["edits"] = tuple(d.get("edits") or ())
        return cls(**d)


@dataclass(frozen=True)
class ScriptTuneRecord:
    """Everything one script tuning measured (see the module docstring)."""

    command: tuple[str, ...]
    status: str = "running"  # running | complete | interrupted | failed
    error: str | None = None
    budget_s: float = 0.0
    elapsed_s: float = 0.0
    window_steps: int = 0
    seed: int = 0
    baseline: Baseline = field(default_factory=Baseline)
    candidates: tuple[Candidate, ...] = ()
    result: Result = field(default_factory=Result)
    losses: dict[str, list[list[float]]] = field(default_factory=dict)  # arm -> [step, loss]
    patch: PatchInfo = field(default_factory=PatchInfo)
    machine: dict[str, Any] = field(default_factory=dict)  # cores, load before/after
    notes: tuple[str, ...] = ()
    versions: dict[str, str] = field(default_factory=dict)
    format: str = SCRIPT_TUNE_FORMAT

    def replace(self, **changes: Any) -> ScriptTuneRecord:
        return dataclasses.replace(self, **changes)

    def with_note(self, note: str) -> ScriptTuneRecord:
        return self.replace(notes=(*self.notes, note))

    def to_dict(self) -> dict[str, Any]:
        return sanitize(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScriptTuneRecord:
        d = _known(cls, d)
        d["command"] = tuple(d.get("command") or ())
        d["baseline"] = Baseline.from_dict(d.get("baseline") or {})
        d["candidates"] = tuple(Candidate.from_dict(c) for c in d.get("candidates") or ())
        d["result"] = Result.from_dict(d.get("result") or {})
        d["patch"] = PatchInfo.from_dict(d.get("patch") or {})
        d["notes"] = tuple(d.get("notes") or ())
        return cls(**d)

    def save(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_dict(), allow_nan=False)

    @classmethod
    def load(cls, path: str | Path) -> ScriptTuneRecord:
        return cls.from_dict(load_json(Path(path), "script tuning record"))


def is_script_record(data: Any) -> bool:
    """Whether a loaded ``record.json`` is a script tuning's (for ``perfpilot report``)."""
    return isinstance(data, dict) and data.get("format") == SCRIPT_TUNE_FORMAT
