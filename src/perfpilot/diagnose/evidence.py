"""How much measurement a finding rests on, and its gain over the whole run.

Every finding gets a :class:`~perfpilot.record_sections.Support`; one that rests on less
than its rule needs is *thin* (:attr:`~perfpilot.record.Finding.thin`): the report shows
it under "not enough evidence" with how to measure more, never as the top finding, and
``--verify`` does not spend runs on it.

The rule, by the kind of measurement behind the share:

* **Stack samples** (``python-hotspot`` and the lint findings: a share of the steady
  window's main-thread samples): at least :data:`MIN_WINDOW_SAMPLES` samples in the window
  and :data:`MIN_OWN_SAMPLES` in the finding's own code. A share resting on ``k`` samples
  has a relative error of about ``1/sqrt(k)`` (binomial): 20 gives +-22%, 10 gives +-32%
  (the ~10-sample "hot spot" of a 108 ms window that the next run did not find). The
  share's interval is Wilson's 95% score interval.
* **Steps** (every other rule: per-step phase times, calls per step, calibrations scaled
  by the compute share): at least :data:`MIN_STEADY_STEPS` steady steps. The share's
  interval is the 95% interval of the phase's per-step mean (``StepPhases.per_step_ci_s``) for the
  rules whose share is one phase (:data:`PHASE_OF`); the others have none.

The gain: a finding's ``estimated_speedup`` is Amdahl on its share of the *steady window*
-- what a long run of the same script gains. ``Support.run_speedup`` is the same fix
applied to *this* run: the share scaled by the steady window's fraction of the wall time,
so a fix of the steady steps of a run that is mostly start-up reads as the small gain it
is for that run.
"""

from __future__ import annotations

import dataclasses
import math

from perfpilot.diagnose.common import Facts
from perfpilot.record import Finding, amdahl
from perfpilot.record_sections import Support

MIN_WINDOW_SAMPLES = 50
MIN_OWN_SAMPLES = 20
MIN_STEADY_STEPS = 20
SAMPLE_RULES = frozenset({"python-hotspot"})  # and every finding with lint detail
PHASE_OF = {"dataloader-bound": "data", "eval-dominates": "eval", "io-in-loop": "io",
            "pageable-memcpy": "h2d"}
Z95 = 1.96


def with_support(findings: list[Finding], facts: Facts) -> list[Finding]:
    """``findings`` with ``support`` set (unchanged where the record has no counts)."""
    return [dataclasses.replace(f, support=support_of(f, facts)) for f in findings]


def support_of(f: Finding, facts: Facts) -> Support | None:
    """The measurement behind ``f``'s share; None when the record cannot say (no step or
    sample counts, e.g. a record from before counts were kept)."""
    frac = _steady_fraction(facts)
    run = (round(amdahl(f.time_share * frac, f.factor), 4)
           if frac is not None and f.time_share is not None and f.factor else None)
    if f.id in SAMPLE_RULES or f.lint is not None:
        ticks = facts.record.stack_samples.steady_view().total
        if not ticks:
            return None
        share = f.time_share or 0.0
        own = int(round(share * ticks))
        lo, hi = wilson(own, ticks)
        return Support(n=ticks, unit="samples", needed=MIN_WINDOW_SAMPLES, own=own,
                       own_needed=MIN_OWN_SAMPLES, share_low=lo, share_high=hi,
                       run_speedup=run, steady_fraction=frac)
    if not facts.steps:
        return None
    lo = hi = None
    phase = PHASE_OF.get(f.id)
    ci = facts.record.step_phases.per_step_ci_s.get(phase or "")
    mean = facts.per_step.get(phase or "", 0.0)
    if ci and mean > 0 and f.time_share is not None:
        lo = round(min(f.time_share * ci[0] / mean, 1.0), 4)
        hi = round(min(f.time_share * ci[1] / mean, 1.0), 4)
    return Support(n=facts.steps, unit="steps", needed=MIN_STEADY_STEPS, share_low=lo,
                   share_high=hi, run_speedup=run, steady_fraction=frac)


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``k/n`` (``n > 0``)."""
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return round(max(centre - half, 0.0), 4), round(min(centre + half, 1.0), 4)


def _steady_fraction(facts: Facts) -> float | None:
    tl = facts.record.timeline
    total = tl.total_s or facts.record.wall_time_s
    if not total or not tl.steady_s:
        return None
    return round(min(tl.steady_s / total, 1.0), 4)


def how_to_get_more(record_duration: float | None = None) -> str:
    """The advice a thin finding carries: measure a longer steady window."""
    longer = (f"--duration {max(60, int(4 * record_duration))}s" if record_duration
              else "--duration 2m")
    return (f"measure a longer steady window: perfpilot profile {longer} -- ... "
            "(or more --steps)")
