"""A tiny stack sampler for lint's tests and docs (private; a stopgap).

The real sampler is :mod:`perfpilot.probes` (``perfpilot profile``); this one exists so
``perfpilot.lint`` can be tested and demonstrated on its own. It samples the calling
thread's stack from a daemon thread every ``interval_s`` and returns a ``stack_samples``
section (contract in :mod:`perfpilot.record`) inside a minimal :class:`RunRecord`.

    python -m perfpilot.lint._sampler examples/lint/tokens.py -o tokens.record.json
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from perfpilot.record import RunRecord, StatSummary


def sample_call(fn: Callable[[], Any], *, interval_s: float = 0.002) -> dict[str, Any]:
    """Run ``fn()`` in this thread while sampling its stack; the ``stack_samples`` section."""
    target = threading.get_ident()
    counts: Counter[tuple[tuple[str, int, str], ...]] = Counter()
    done = threading.Event()

    def sample() -> None:
        while not done.wait(interval_s):
            frame = sys._current_frames().get(target)
            stack = []
            while frame is not None:
                code = frame.f_code
                stack.append((os.path.abspath(code.co_filename), line_of(frame),
                              code.co_name))
                frame = frame.f_back
            counts[tuple(reversed(stack))] += 1

    thread = threading.Thread(target=sample, name="perfpilot-lint-sampler", daemon=True)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    return {"interval_s": interval_s, "total": sum(counts.values()),
            "stacks": [{"frames": [list(f) for f in k], "count": c} for k, c in counts.items()]}


def line_of(frame: Any) -> int:
    """The frame's line; at a loop back-edge (CPython 3.11: no line), the line before it.

    A sampling thread only gets the GIL where the interpreter checks for pending work,
    which in a tight loop is mostly the backward jump, an instruction without a line
    number; the nearest preceding line keeps the sample inside its loop.
    """
    if frame.f_lineno is not None:
        return frame.f_lineno
    line = 0
    for start, _end, ln in frame.f_code.co_lines():
        if start > frame.f_lasti:
            break
        if ln is not None:
            line = ln
    return line


def record_of(section: dict[str, Any], workload: str, wall_s: float = 0.0) -> RunRecord:
    """A minimal RunRecord carrying only ``stack_samples`` (no training measured)."""
    return RunRecord(workload=workload, plan={}, steps=0, samples_per_s=0.0,
                     step_time_s=StatSummary(0.0, 0.0, 0.0, 0.0), phases_s={},
                     peak_memory_bytes=0, wall_time_s=wall_s,
                     extra={"stack_samples": section})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perfpilot.lint._sampler")
    parser.add_argument("script")
    parser.add_argument("-o", "--out", required=True)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    section = sample_call(lambda: runpy.run_path(args.script, run_name="__main__"))
    record_of(section, args.script, time.perf_counter() - start).save(args.out)
    print(f"{section['total']} samples -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
