"""``system-time``: the kernel's share of the process's CPU, and allocator churn.

Measured (the record's ``cpu`` section, over the steady window): the process's user and
system CPU seconds and its page faults per second. The rule fires when system time is at
least :data:`MIN_SYSTEM_SHARE` of the process's CPU time.

**Allocator churn** (page faults at least :data:`MIN_FAULT_RATE` per second): glibc's
``malloc`` serves a block above its mmap threshold (dynamic, at most 32 MiB on 64-bit
Linux) with ``mmap`` and unmaps it on ``free``, so a step that allocates large activations
and gradients and frees them page-faults every page in again, zeroed by the kernel, each
step. The fix is two environment variables read at process start, no code change:
``MALLOC_MMAP_MAX_=0`` (large blocks come from the heap) and ``MALLOC_TRIM_THRESHOLD_``
(freed heap is kept for the next step instead of returned). Its cost: the process keeps
its peak heap (resident memory does not shrink after the largest step). ``--verify``
re-runs the script with that environment. Offered only where the record says glibc is the
allocator and those settings are not already made.

**Other system time** (few faults: system calls, file or pipe I/O, spinning threads):
named with its numbers; the fix is a direction, not a setting.

Gain: Amdahl with system time's share of the process's CPU time, times the share of the
window the process computed (its steps but data waits and evaluation), as the share of
the run, made :data:`SYSTEM_FACTOR` times faster. The factor is an assumption (on a
64 MiB version of ``examples/bottlenecks/alloc_churn.py`` the settings cut system time
10x, 8.2 s to 0.8 s); the measured answer is ``--verify``'s (2.32x, 95% CI 2.04-3.55, on
the example at load 3.9).
"""

from __future__ import annotations

from perfpilot.diagnose.common import Facts, make, pct, secs
from perfpilot.record import Finding, Measure

MIN_SYSTEM_SHARE = 0.2  # of the process's own CPU time
MIN_FAULT_RATE = 20_000.0  # page faults per second: allocator churn, not a few mallocs
MIN_CPU_S = 0.5  # CPU seconds in the window: below that the shares are noise
SYSTEM_FACTOR = 5.0
# 64 GiB: "never trim" in practice; a number glibc's mallopt accepts on 64-bit.
TRIM_THRESHOLD = str(64 * 2**30)
MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": TRIM_THRESHOLD}


def _active(f: Facts, own: float) -> float:
    """The share of the window the process was computing: its steps' phases but the data
    wait and evaluation (time it waits for loader workers is no CPU of its own); without
    steps, its CPU seconds over the window. Not the CPU over the window with steps: on a
    busy machine the process waits for a core, and that wait stretches its system time
    as much as its user time."""
    active = sum(v for k, v in f.totals.items() if k not in ("data", "eval"))
    if active > 0:
        return f.share(active)
    return min(own / f.record.cpu.span_s, 1.0)


def system_time(f: Facts) -> list[Finding]:
    cpu = f.record.cpu
    own = cpu.user_s + cpu.system_s
    if not cpu.measured or own < MIN_CPU_S or cpu.system_share < MIN_SYSTEM_SHARE:
        return []
    share = cpu.system_share * _active(f, own)
    rate = cpu.fault_rate
    measured = [Measure("system_share", round(cpu.system_share, 4), "fraction"),
                Measure("page_faults_per_s", round(rate), "count")]
    numbers = (f"system time is {pct(cpu.system_share)} of the process's CPU time "
               f"({secs(cpu.system_s)} of {secs(own)} over {secs(cpu.span_s)} of steady "
               f"steps), with {rate:,.0f} page faults/s")
    if rate < MIN_FAULT_RATE:
        return [make("system-time", "The kernel takes much of the process's CPU time",
                     numbers + ": not page faults, so system calls (file or pipe I/O, "
                     "thread wake-ups).",
                     "Look for per-step file, socket or pipe I/O and busy thread pools in "
                     "the step (perfpilot profile's hot lines show where the step waits).",
                     share, SYSTEM_FACTOR, confidence="low", measured=measured)]
    glibc = cpu.allocator == "glibc"
    already = cpu.allocator_env.get("MALLOC_MMAP_MAX_") == "0"
    evidence = (numbers + ": the allocator hands large tensors back to the kernel and "
                "faults fresh zeroed pages in again every step.")
    if glibc and not already:
        env = " ".join(f"{k}={v}" for k, v in MALLOC_ENV.items())
        fix = (f"Run with `{env}` in the environment (glibc keeps freed memory for the next "
               "step instead of unmapping it; resident memory then stays at its peak), "
               "or reuse preallocated buffers for the largest tensors.")
        return [make("system-time", "Allocator churn: every step page-faults its memory in "
                     "again", evidence, fix, share, SYSTEM_FACTOR, confidence="medium",
                     plan_change={"env": dict(MALLOC_ENV)}, measured=measured)]
    what = cpu.allocator or "this C library's malloc"
    fix = (f"Reuse preallocated buffers for the largest tensors (the allocator, {what}, "
           "already has its settings or takes none perfpilot knows).")
    return [make("system-time", "Allocator churn: every step page-faults its memory in again",
                 evidence, fix, share, SYSTEM_FACTOR, confidence="low", measured=measured)]
