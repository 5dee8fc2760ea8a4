"""Decisions labelled with the load they were measured at, and whether they hold now.

A knob that competes with other processes for the CPU (:data:`CONTENTION_KNOBS`: torch's
threads, the DataLoader's workers and what they do) wins or loses by how busy the machine
is: issue 20's tester saw ``cpu_threads=1`` win at load average 7-13 on 2 cores and lose
1.9x on the idle machine. Every trial carries the load it ran at
(:mod:`perfpilot.tune.trial_load`); this module turns that into a **label** for the plan:

* ``knobs``: the contention knobs the plan changes from the baseline (``[]``: the plan
  holds at any load, as far as the load goes);
* ``stages`` and ``trials``: which stages chose them and how many of their trials carry a
  load (without stage information, e.g. a script tuning: every trial);
* ``measured_at``: the median over those trials of ``others_cores``, ``loadavg_1m`` and
  ``own_cores``, with ``cores`` and ``machine_cores``; ``contention``: whether that was
  a contended machine (the rule below);
* ``now``: the load when the label was made (:func:`~perfpilot.tune.trial_load.load_now`,
  with its own ``contention``); ``holds``: True, False (re-measure) or None (not known);
  ``verdict``: the same in words; ``summary``: one line for a report.

**The rule** (:func:`contended`). CPUs the machine counters cover beyond the ones this
process may use (``machine_cores - cores``, a container's host) absorb other processes
first, so only what exceeds them competes. The machine is *contended* when other
processes used at least :data:`OTHERS_MIN_CORES` (half a core) more than that. Only when
their use is not known (a trial shorter than a quarter second) does the load average
decide: contended when the load average, less this tuning's own use and the spare CPUs,
exceeds ``cores``. The load average is the fallback, not the rule, because it counts this
tuning's own runnable threads: a trial with 4 loader workers on 2 cores raises it to about
5 on an idle machine.

**Verdict.** The plan *holds at the current load* when the machine is contended now as it
was then, or idle now as it was then; otherwise it should be *re-measured* at the load it
will train at. Pure functions of records and readings; only :func:`labelled` and
:func:`check` read the load now, and only when not given it.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from perfpilot.record_probe_sections import BUSY_OTHER_CORES

if TYPE_CHECKING:
    from perfpilot.script_tune_record import ScriptTuneRecord
    from perfpilot.trial import Trial
    from perfpilot.tune_record import TuneRecord

CONTENTION_KNOBS: tuple[str, ...] = ("cpu_threads", "interop_threads", "num_workers",
                                     "prefetch_factor", "persistent_workers", "pin_memory")
OTHERS_MIN_CORES = BUSY_OTHER_CORES  # what a profile calls a busy machine, too
HOLDS = "holds at the current load"
REMEASURE = "re-measure"
RULE = (f"contended when other processes use >= {OTHERS_MIN_CORES:g} core beyond the CPUs "
        "this process may not use (else, when that is not measured, when the load average "
        "less this process's own use exceeds its cores)")


def contention_knobs(baseline: Mapping[str, Any], chosen: Mapping[str, Any]) -> list[str]:
    """The :data:`CONTENTION_KNOBS` whose value in ``chosen`` differs from ``baseline``
    (plans as dicts; a knob missing from one side is its default, None)."""
    return [k for k in CONTENTION_KNOBS if chosen.get(k) != baseline.get(k)]


def deciding_stages(baseline: Mapping[str, Any],
                    stages: Sequence[tuple[str, Mapping[str, Any] | None, Sequence[int]]],
                    knobs: Sequence[str]) -> tuple[list[str], set[int]]:
    """The stages (``(name, plan after it, trial numbers)``, in order) that changed one of
    ``knobs``, and their trial numbers."""
    names: list[str] = []
    numbers: set[int] = set()
    before = baseline
    for name, plan, trials in stages:
        if plan is None:
            continue
        if any(plan.get(k) != before.get(k) for k in knobs):
            names.append(name)
            numbers.update(trials)
        before = plan
    return names, numbers


def _median(values: Iterable[Any]) -> float | None:
    xs = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return round(statistics.median(xs), 3) if xs else None


def measured_at(loads: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The median load over ``loads`` (trial ``load`` dicts; empty ones skipped)."""
    loads = [x for x in loads if x]
    if not loads:
        return {}
    out: dict[str, Any] = {"trials": len(loads)}
    for key in ("others_cores", "loadavg_1m", "own_cores"):
        m = _median(x.get(key) for x in loads)
        if m is not None:
            out[key] = m
    for key in ("cores", "machine_cores"):
        m = _median(x.get(key) for x in loads)
        if m is not None:
            out[key] = int(m)
    return out


def contended(load: Mapping[str, Any]) -> bool | None:
    """Whether ``load`` is a contended machine (the module's rule); None when unknown."""
    cores = load.get("cores")
    if not isinstance(cores, (int, float)) or cores <= 0:
        return None
    spare = max(0.0, float(load.get("machine_cores") or cores) - cores)
    others = load.get("others_cores")
    if isinstance(others, (int, float)):
        return others - spare >= OTHERS_MIN_CORES
    avg = load.get("loadavg_1m")
    if isinstance(avg, (int, float)):
        return avg - float(load.get("own_cores") or 0.0) - spare > cores
    return None


def describe(load: Mapping[str, Any]) -> str:
    """``other processes 1.6 cores, load average 9.8, 2 cores: contended``."""
    parts = []
    if isinstance(load.get("others_cores"), (int, float)):
        parts.append(f"other processes {load['others_cores']:.1f} cores")
    if isinstance(load.get("loadavg_1m"), (int, float)):
        parts.append(f"load average {load['loadavg_1m']:.1f}")
    if load.get("cores"):
        parts.append(f"{load['cores']} cores")
    state = {True: "contended", False: "idle", None: "not known"}[contended(load)]
    return f"{', '.join(parts) or 'no reading'}: {state}"


def judge(then: Mapping[str, Any], now: Mapping[str, Any],
          knobs: Sequence[str]) -> tuple[bool | None, str]:
    """``(holds, verdict)``: whether a plan measured at ``then`` still wins ``now``."""
    if not knobs:
        return True, ("holds at any load: the plan changes no knob that competes with "
                      "other processes for the CPU")
    was, is_ = contended(then), contended(now)
    if was is None:
        return None, (f"not known: the trials that chose {', '.join(knobs)} carry no load "
                      "measurement")
    if is_ is None:
        return None, "not known: the load now could not be read"
    if was == is_:
        return True, f"{HOLDS} ({'contended' if is_ else 'idle'} then and now)"
    return False, (f"{REMEASURE}: the load now ({describe(now)}) differs from the load it "
                   f"was measured at ({describe(then)}); the gain of {', '.join(knobs)} "
                   "depends on how busy the machine is: tune again at the load it will "
                   "train at")


def label(baseline: Mapping[str, Any], chosen: Mapping[str, Any],
          stages: Sequence[tuple[str, Mapping[str, Any] | None, Sequence[int]]],
          trials: Sequence[Trial], now: Mapping[str, Any]) -> dict[str, Any]:
    """The label of plan ``chosen`` (see the module docstring). ``stages`` as in
    :func:`deciding_stages` (empty: every trial counts)."""
    knobs = contention_knobs(baseline, chosen)
    names, numbers = deciding_stages(baseline, stages, knobs) if knobs else ([], set())
    used = [t for t in trials if t.number in numbers] if numbers else list(trials)
    then = measured_at([t.load for t in used])
    holds, verdict = judge(then, now, knobs)
    changed = ", ".join(f"{k}={chosen.get(k)}" for k in knobs)
    summary = (f"{changed} measured at {describe(then)}; {verdict}" if knobs else
               f"measured at {describe(then)}; {verdict}")
    from perfpilot.tune_record import sanitize  # strict JSON: it goes into plan.json

    return sanitize({"knobs": knobs, "stages": names, "measured_at": then,
                     "contention": contended(then),
                     "now": {**now, "contention": contended(now)}, "holds": holds,
                     "verdict": verdict, "summary": summary, "rule": RULE})


def labelled(rec: TuneRecord, trials: Sequence[Trial],
             now: Mapping[str, Any] | None = None) -> TuneRecord:
    """``rec`` with its ``load_label`` for the plan it holds (the load now is read when
    not given: half a second)."""
    from perfpilot.tune.trial_load import load_now

    if rec.plan is None or rec.baseline_plan is None:
        return rec
    stages = [(s.name, None if s.plan is None else s.plan.to_dict(), s.trials)
              for s in rec.stages]
    lab = label(rec.baseline_plan.to_dict(), rec.plan.to_dict(), stages, trials,
                load_now() if now is None else now)
    return rec.replace(load_label=lab)


def script_labelled(rec: ScriptTuneRecord, trials: Sequence[Trial],
                    now: Mapping[str, Any] | None = None) -> ScriptTuneRecord:
    """A script tuning's record with the label of its chosen changes (against the script
    as it is: every trial counts) in ``machine["load_label"]``."""
    from perfpilot.tune.trial_load import load_now

    lab = label({}, dict(rec.result.changes), [], trials, load_now() if now is None else now)
    return rec.replace(machine={**rec.machine, "load_label": lab})


_NUMBERS = ("others_cores", "loadavg_1m", "own_cores", "cores", "machine_cores")


def check(lab: Any, now: Mapping[str, Any] | None = None) -> tuple[bool | None, str]:
    """A plan file's label against the load now: ``(holds, verdict)`` (``perfpilot
    devices --check``). A label of the wrong shape raises ValueError saying what is wrong
    (the command turns it into the file's error)."""
    from perfpilot.tune.trial_load import load_now

    if not isinstance(lab, Mapping):
        raise ValueError(f"is a JSON {type(lab).__name__}, expected an object")
    then = lab.get("measured_at") or {}
    if not isinstance(then, Mapping):
        raise ValueError(f"'measured_at' is a JSON {type(then).__name__}, expected an object")
    for key in _NUMBERS:
        v = then.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ValueError(f"'measured_at.{key}' is {v!r}, expected a number")
    knobs = lab.get("knobs") or []
    if not isinstance(knobs, list) or not all(isinstance(k, str) for k in knobs):
        raise ValueError(f"'knobs' is {knobs!r}, expected a list of knob names")
    return judge(then, load_now() if now is None else now, knobs)
