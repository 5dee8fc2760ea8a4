"""Stack samples for lint's tests, taken with perfpilot's real sampler
(:class:`perfpilot.probes.sampler.StackSampler`), and minimal records carrying them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from perfpilot.probes.sampler import StackSampler
from perfpilot.record import RunRecord, StatSummary
from perfpilot.record_sections import StackSamples


def sample_call(fn: Callable[[], Any], *, interval_s: float = 0.002) -> StackSamples:
    """Run ``fn()`` in this thread while the sampler samples it; its stacks only."""
    sampler = StackSampler(interval_s, main_ident=threading.get_ident())
    sampler.start()
    try:
        fn()
    finally:
        sampler.stop()
    samples = StackSamples.from_dict(sampler.section())
    return samples.steady_view()  # this thread's stacks, ticks counted once


def record_of(samples: StackSamples | dict[str, Any], workload: str = "test") -> RunRecord:
    """A minimal RunRecord carrying only stack samples (no training measured)."""
    return RunRecord(workload=workload, plan={}, steps=0, samples_per_s=0.0,
                     step_time_s=StatSummary(0.0, 0.0, 0.0, 0.0), phases_s={},
                     peak_memory_bytes=0, stack_samples=StackSamples.from_dict(samples))
