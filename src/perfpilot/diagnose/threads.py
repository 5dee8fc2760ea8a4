"""``thread-oversubscription``: more compute threads than cores this process may use.

Measured: torch's intra-op thread count (and ``OMP_NUM_THREADS``...) against usable cores
(affinity and cgroup quota); when torch uses more, the runner timed a training-like op
mix at that count and at fewer threads (usable cores, 1), interleaved, on this machine.
Gain: Amdahl with the compute phases (forward, backward, optimizer) sped up by the best
measured factor. Without a measurement that says fewer threads are faster, the rule
stays silent. The measurement itself is the record's ``calibration.threads``.

Second form, **contention**: no more threads than usable cores, but other processes and the
loader workers kept cores busy during the run (``calibration.threads.free_cores``: torch
threads + workers' demand + other processes' demand exceed the usable cores; from the
``cpu`` section),
and fewer threads measured faster *at that load* (torch's threads spin-wait for cores the
others hold). The finding says it holds at that load: on a quiet machine the same script
may be faster with every core, so it is advice for this machine as busy as it was.
"""

from __future__ import annotations

from typing import Any

from perfpilot.diagnose.common import Facts, loc, make, pct, where
from perfpilot.record import Finding


def thread_oversubscription(f: Facts) -> list[Finding]:
    th = f.record.threads
    cores = int(th.usable_cores or 0)
    current = int(th.torch_threads or 0)
    cal = f.record.calibration.threads
    if not cores or cal is None:
        return []
    if current <= cores:  # not more threads than cores; maybe more than the load leaves
        return _contention(f, current, cores, cal)
    factor, lo = cal.factor, cal.ci_low
    best = cal.target or cores
    if lo <= 1.0 or best >= current:
        return []
    calls = f.record.set_num_threads
    site = next((c.site for c in reversed(calls) if c.value == current), None)
    share = f.share(f.compute_total)
    who = f" (set at {where(site)})" if site else ""
    env = th.env
    if not site and env:
        who = " (from " + ", ".join(f"{k}={v}" for k, v in env.items()) + ")"
    evidence = (f"torch uses {current} intra-op threads{who} on {cores} usable cores; on this "
                f"machine a training-like op mix ran {factor:.2f}x faster with {best} "
                f"thread{'s' if best > 1 else ''} (95% CI {lo:.2f}-"
                f"{cal.ci_high:.2f}); compute is {pct(share)} of the run.")
    fix = (f"torch.set_num_threads({best})" + (f" at {where(site)}" if site else "")
           + f" (at most one thread per usable core), or unset what asks for {current}.")
    return [make("thread-oversubscription", "More threads than usable cores", evidence, fix,
                 share, factor, location=loc(site), confidence="high",
                 plan_change={"cpu_threads": best})]


def _contention(f: Facts, current: int, cores: int, cal: Any) -> list[Finding]:
    free = cal.free_cores
    if free is None or current <= free:
        return []
    factor, lo, best = cal.factor, cal.ci_low, cal.target or free
    if lo <= 1.0 or best >= current:
        return []
    share = f.share(f.compute_total)
    others, workers = cal.other_cores or 0.0, cal.worker_cores or 0.0
    load = f.record.cpu.load_1m_end
    at = f", load average {load:.1f}" if load is not None else ""
    who = f"other processes kept {others:.1f} cores busy"
    if workers >= 0.05:
        who += f" and its DataLoader workers {workers:.1f}"
    evidence = (f"torch uses {current} intra-op threads on {cores} usable cores, but {who} "
                f"during the run{at}; at that load a "
                f"training-like op mix ran {factor:.2f}x faster with {best} "
                f"thread{'s' if best > 1 else ''} (95% CI {lo:.2f}-{cal.ci_high:.2f}); "
                f"compute is {pct(share)} of the run.")
    fix = (f"torch.set_num_threads({best}) while the machine is this busy; on a quiet "
           f"machine {current} threads may be faster, so measure again there before keeping "
           "it (perfpilot profile shows how busy the machine was).")
    return [make("thread-oversubscription",
                 "More threads than the cores other processes leave free (at this load)",
                 evidence, fix, share, factor, confidence="medium",
                 plan_change={"cpu_threads": best})]
