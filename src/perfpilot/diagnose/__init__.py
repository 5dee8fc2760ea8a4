"""perfpilot.diagnose: rules from a profiled :class:`~perfpilot.record.RunRecord` to findings.

``diagnose(record) -> list[Finding]`` runs every rule (one small module per family) on
facts read once from the record, adds lint findings for the measured hot code, drops
findings another one explains better, attaches the measurement each rests on
(:mod:`perfpilot.diagnose.evidence`), and ranks them: by ``estimated_speedup`` (whole
run, Amdahl from measured shares), except that a finding about something costing under
:data:`MIN_FIRST_SHARE` of the run is never ranked above one that costs more, and one
resting on too little measurement (thin) comes after every other.

Rules are pure functions ``(Facts) -> list[Finding]``; see ``docs/findings.md`` for what
each finding means, how it is measured and its fix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from perfpilot.diagnose.batch import small_batch
from perfpilot.diagnose.common import Facts, facts_of
from perfpilot.diagnose.cuda import (
    fp32_on_tensor_cores,
    gpu_idle,
    host_device_sync,
    memory_headroom,
    pageable_memcpy,
)
from perfpilot.diagnose.evidence import with_support
from perfpilot.diagnose.loader import dataloader_bound
from perfpilot.diagnose.loop import eval_dominates, grad_in_eval, io_in_loop
from perfpilot.diagnose.python import drop_covered, lint_findings, python_hotspot
from perfpilot.diagnose.system import system_time
from perfpilot.diagnose.threads import thread_oversubscription
from perfpilot.record import Finding, RunRecord

Rule = Callable[[Facts], list[Finding]]
RULES: dict[str, Rule] = {
    "dataloader-bound": dataloader_bound,
    "small-batch": small_batch,
    "python-hotspot": python_hotspot,
    "thread-oversubscription": thread_oversubscription,
    "system-time": system_time,
    "eval-dominates": eval_dominates,
    "io-in-loop": io_in_loop,
    "grad-in-eval": grad_in_eval,
    "host-device-sync": host_device_sync,
    "pageable-memcpy": pageable_memcpy,
    "fp32-on-tensor-cores": fp32_on_tensor_cores,
    "gpu-idle": gpu_idle,
    "memory-headroom": memory_headroom,
}
MIN_FIRST_SHARE = 0.02

__all__ = ["RULES", "Facts", "diagnose", "facts_of", "rank"]


def diagnose(record: RunRecord, *, lint: bool = True,
             notes: list[str] | None = None) -> list[Finding]:
    """All findings for ``record``, ranked. ``notes`` (if given) collects why a source of
    findings was unavailable (e.g. lint not installed)."""
    facts = facts_of(record)
    found: list[Finding] = []
    for fid, rule in RULES.items():
        try:
            found.extend(rule(facts))
        except Exception as e:  # one broken rule must not hide the others
            if notes is not None:
                notes.append(f"rule {fid} failed: {type(e).__name__}: {e}")
    if lint:
        linted, note = lint_findings(record)
        if note and notes is not None:
            notes.append(note)
        hotspots = [f for f in found if f.id == "python-hotspot"]
        kept = drop_covered(hotspots, linted)
        found = [f for f in found if f.id != "python-hotspot"] + kept + linted
    return rank(with_support(_dedupe(found), facts))


# A symptom and the findings that cause it: when both are found, the cause leads (fixing it
# removes the symptom's time too) and the symptom is listed after it, saying so. Repeated
# concatenation reallocates a growing buffer every iteration: glibc serves large blocks
# with mmap, so each one page-faults in again as kernel (system) time.
SYMPTOM_OF = {"system-time": frozenset({"repeated-concat"})}

CAUSES_OF_IDLE_GPU = frozenset({"dataloader-bound", "host-device-sync", "pageable-memcpy",
                                "python-hotspot", "io-in-loop", "memory-headroom",
                                "small-batch", "eval-dominates"})


def _dedupe(found: list[Finding]) -> list[Finding]:
    """Keep the finding that names the cause when two describe the same time.

    * a python-hotspot inside data loading is the dataloader-bound finding's business;
    * on a GPU with memory to spare, memory-headroom and small-batch give the same fix
      (a larger batch): memory-headroom, which says how far it can grow, is kept;
    * gpu-idle is a symptom: dropped when a cause finding covers at least half its time;
    * system-time with a repeated-concat finding: kept, saying the concatenation is a
      likely cause (:data:`SYMPTOM_OF`; :func:`rank` lists it after its cause).
    """
    ids = {f.id for f in found}
    if "dataloader-bound" in ids:
        found = [f for f in found
                 if not (f.id == "python-hotspot" and f.tag == "data")]
    if "memory-headroom" in ids:
        found = [f for f in found if f.id != "small-batch"]
    found = [_after_cause(f, ids) for f in found]
    idle = next((f for f in found if f.id == "gpu-idle"), None)
    if idle is not None:
        covered = sum(f.time_share or 0.0 for f in found if f.id in CAUSES_OF_IDLE_GPU)
        if covered >= 0.5 * (idle.time_share or 0.0):
            found = [f for f in found if f.id != "gpu-idle"]
    return found


def _after_cause(f: Finding, ids: set[str]) -> Finding:
    causes = sorted(SYMPTOM_OF.get(f.id, frozenset()) & ids)
    if not causes:
        return f
    return dataclasses.replace(f, evidence=f"{f.evidence} The {', '.join(causes)} finding "
                               "here is a likely cause of this time: fix it first, then "
                               "profile again.")


def rank(findings: list[Finding]) -> list[Finding]:
    """Highest whole-run gain first; findings under 2% of the run never lead, a symptom
    comes right after its cause (:data:`SYMPTOM_OF`), and thin ones (not enough evidence,
    see :mod:`perfpilot.diagnose.evidence`) come after all others."""
    def key(f: Finding) -> tuple[bool, bool, float]:
        small = f.time_share is not None and f.time_share < MIN_FIRST_SHARE
        return (not f.thin, not small, f.estimated_speedup)

    out = sorted(findings, key=key, reverse=True)
    for f in [f for f in out if f.id in SYMPTOM_OF]:
        causes = [i for i, g in enumerate(out) if g.id in SYMPTOM_OF[f.id]]
        if causes and out.index(f) < causes[-1]:
            out.remove(f)  # the cause moved up by one: insert after its new place
            out.insert(causes[-1], f)
    return out
