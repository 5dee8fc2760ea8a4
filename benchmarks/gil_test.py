"""Benchmark: what ``pmap(backend="auto")``'s GIL test reads on this machine.

1. **Drift**: 40 serial calls of one pure-Python function, back to back: the spread of
   their wall and thread-CPU times (a CPU whose speed moves makes two short windows
   disagree, which is why the GIL test compares by CPU occupancy).
2. **Rounds** per kind of function (pure Python; ``hashlib.sha256`` of 8 MB, which
   releases the GIL; a 10 ms sleep; half sleep, half Python): interleaved, a plain wall
   ratio (2 calls in 2 threads over 2 calls serially) and the GIL test's own ratio
   (``perfpilot.parallel._auto.gil_test``, one pair): min / median / max; and the sleep
   again while another thread of the process hashes (it must still read as waiting).
3. **Choices**: ``pmap``'s backend and ``gil_ratio`` for 60 items of each kind, 2 workers.
4. **A slow map**: 20 calls of a 0.2 s sleep on 8 workers (the GIL test's cost when
   calls are slow), wall time.

Writes ``benchmarks/results/gil_test.json`` with the load average before and after.

    .venv/bin/python benchmarks/gil_test.py            # about 1 minute
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from perfpilot import pmap
from perfpilot.parallel import _auto

RESULTS = Path(__file__).resolve().parent / "results" / "gil_test.json"
ROUNDS = 12
DATA = b"x" * (8 << 20)


def python(x: int) -> int:
    s = 0
    for i in range(150_000):
        s += i * i % 7
    return x


def sha256(x: int) -> int:
    hashlib.sha256(DATA).digest()
    return x


def sleep(x: int) -> int:
    time.sleep(0.01)
    return x


def half(x: int) -> int:
    time.sleep(0.006)
    s = 0
    for i in range(60_000):
        s += i * i % 7
    return x


KINDS = {"pure Python": python, "sha256 8 MB": sha256, "sleep 10 ms": sleep,
         "half sleep, half Python": half, "sleep beside a busy thread": sleep}
BUSY = "sleep beside a busy thread"  # another thread of the process hashes meanwhile


def hash_until(stop: threading.Event) -> None:
    while not stop.is_set():
        sha256(0)


def spread(xs: list[float]) -> dict[str, float]:
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs)}


def drift() -> dict[str, Any]:
    wall, cpu = [], []
    for _ in range(40):
        t, c = time.perf_counter(), time.thread_time()
        python(0)
        wall.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - c)
    return {"wall_s": spread(wall), "thread_cpu_s": spread(cpu)}


def wall_ratio(fn: Any) -> float:
    t = time.perf_counter()
    fn(0), fn(0)
    serial = time.perf_counter() - t
    threads = [threading.Thread(target=fn, args=(0,)) for _ in range(2)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return (time.perf_counter() - t) / serial


def rounds(fn: Any) -> dict[str, Any]:
    walls, tests = [], []
    for _ in range(ROUNDS):
        walls.append(wall_ratio(fn))
        tests.append(_auto.gil_test(fn, list(range(4)), 0, 1, on_error=lambda i, e: e)[1])
    return {"wall_ratio": spread(walls), "gil_test_ratio": spread(tests)}


class _Choices(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage())


def choices(fn: Any) -> list[str]:
    log = logging.getLogger("perfpilot.parallel")
    h = _Choices()
    log.addHandler(h)
    log.setLevel(logging.INFO)
    try:
        for _ in range(4):
            pmap(fn, range(60), workers=2)
    finally:
        log.removeHandler(h)
    return [m for m in h.seen if m.startswith("pmap:")]


def main() -> int:
    load_before = os.getloadavg()
    doc: dict[str, Any] = {"benchmark": "gil_test", "cpus": os.cpu_count(),
                           "loadavg_before": load_before[0], "drift": drift(), "kinds": {}}
    for name, fn in KINDS.items():
        stop = threading.Event()
        if name == BUSY:
            threading.Thread(target=hash_until, args=(stop,), daemon=True).start()
        try:
            doc["kinds"][name] = {**rounds(fn), "choices": choices(fn)}
        finally:
            stop.set()
    t = time.perf_counter()
    pmap(lambda x: time.sleep(0.2), range(20), workers=8)
    doc["slow_map_s"] = time.perf_counter() - t
    doc["loadavg_after"] = os.getloadavg()[0]
    d = doc["drift"]
    print(f"gil_test benchmark: {doc['cpus']} CPUs, load {load_before[0]:.2f} -> "
          f"{doc['loadavg_after']:.2f}")
    print(f"drift, 40 pure-Python calls: wall {d['wall_s']['min'] * 1e3:.1f}-"
          f"{d['wall_s']['max'] * 1e3:.1f} ms, thread CPU {d['thread_cpu_s']['min'] * 1e3:.1f}-"
          f"{d['thread_cpu_s']['max'] * 1e3:.1f} ms")
    for name, k in doc["kinds"].items():
        w, g = k["wall_ratio"], k["gil_test_ratio"]
        print(f"{name:27s} wall ratio {w['min']:.2f} / {w['median']:.2f} / {w['max']:.2f}   "
              f"GIL test {g['min']:.2f} / {g['median']:.2f} / {g['max']:.2f}  (min/med/max of "
              f"{ROUNDS})")
        for c in k["choices"]:
            print(f"    {c}")
    print(f"20 x 0.2 s sleeps on 8 workers: {doc['slow_map_s']:.2f} s")
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
