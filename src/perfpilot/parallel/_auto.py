"""``backend="auto"``: measure a few calls, then pick serial, threads or processes.

The decision is a cost model fed with measurements taken on the user's own items (their
results are kept, nothing is computed twice):

- ``per_call_s``: median time of a few calls run serially in the caller (at least 3 calls
  and :data:`PROBE_S`, at most :data:`PROBE_MAX_S`; fewer when the whole map is clearly
  under :data:`MIN_PARALLEL_S`);
- ``gil_ratio``: some calls split over 2 threads against as many run serially beside them
  (rounds alternate the two), compared by CPU occupancy or wall time (:func:`gil_test`);
  about 0.5 when ``fn`` releases the GIL (numpy/torch kernels, I/O), about 1 or more when
  it holds it. With Amdahl's law it extrapolates to ``workers`` threads;
- ``transfer_s``: time to pickle and unpickle one item and its result (a process worker
  pays it, and so does the caller, which feeds the workers alone).

Estimated times for what is left: serial ``n·t``; threads ``n·t·((1-p) + p/w)`` with
``p = 2(1 - gil_ratio)``; processes ``start + n·max(c, (t + c)/w)``. A parallel backend
is chosen only if it is estimated :data:`MIN_GAIN` times faster than serial, and never
when the serial rest is under :data:`MIN_PARALLEL_S`.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Backend = Literal["serial", "thread", "process", "ray"]

MIN_PARALLEL_S = 0.05  # below this much serial work, no pool start-up pays for itself
MIN_GAIN = 1.25  # a parallel backend must be estimated this much faster than serial
# Start-up of a process worker (a fresh interpreter importing cloudpickle and perfpilot's
# worker): ~0.1-0.2 s measured on the 2-core dev machine (benchmarks/pmap.py prints it);
# taken pessimistically since the workers of fn may import more (torch: ~1 s).
PROCESS_START_S = 0.3
PROBE_S = 0.02  # measure at least this long (and >= 3 calls) ...
PROBE_MAX_S = 0.1  # ... but stop as soon as this much serial time is spent
GIL_TEST_S = 0.04  # serial work handed to the 2 threads of the GIL test (as much again runs
# serially beside them, as its reference) ...
GIL_ROUNDS = 3  # ... in up to this many rounds (one per pair of calls a thread half has)
CPU_BOUND = 0.5  # serial calls this busy on a CPU (CPU s per wall s) are judged by occupancy


@dataclass(frozen=True)
class Choice:
    """What ``auto`` chose and why (logged on ``perfpilot.parallel`` at INFO)."""

    backend: Backend
    workers: int
    reason: str
    per_call_s: float | None = None
    gil_ratio: float | None = None
    transfer_s: float | None = None


def decide(per_call_s: float, remaining: int, workers: int, *, gil_ratio: float | None = None,
           transfer_s: float = 0.0, process_start_s: float | None = None) -> Choice:
    """The cost-model decision (module docstring) from measured numbers."""
    t, n, w = per_call_s, remaining, workers
    start = PROCESS_START_S if process_start_s is None else process_start_s
    serial = t * n
    facts = dict(per_call_s=t, gil_ratio=gil_ratio, transfer_s=transfer_s)
    if w < 2:
        return Choice("serial", 1, "one usable core", **facts)
    if serial < MIN_PARALLEL_S:
        return Choice("serial", 1, f"~{serial * 1e3:.0f} ms of work left: too little to pay "
                      "for parallel start-up", **facts)
    costs = {"process": start + n * max(transfer_s, (t + transfer_s) / w)}
    if gil_ratio is not None:
        p = min(1.0, max(0.0, 2 * (1 - gil_ratio)))
        costs["thread"] = serial * ((1 - p) + p / w)
    best = min(costs, key=lambda k: costs[k])
    gain = serial / costs[best]
    if gain < MIN_GAIN:
        return Choice("serial", 1, f"best parallel estimate ({best}) only {gain:.2f}x faster "
                      "than serial", **facts)
    return Choice(best, w, f"{best} estimated {gain:.1f}x faster than serial "  # type: ignore[arg-type]
                  f"({n} calls of ~{t * 1e3:.2g} ms)", **facts)


@dataclass
class Probe:
    """Results of the calls run while measuring (in input order) and the measurements."""

    values: list[Any]
    per_call_s: float
    gil_ratio: float | None = None
    transfer_s: float = 0.0


def probe(fn: Callable[[Any], Any], items: Sequence[Any], *,
          on_error: Callable[[int, Exception], BaseException],
          clock: Callable[[], float] = time.perf_counter) -> Probe:
    """Run the first calls serially, timing each (stops per PROBE_S / PROBE_MAX_S)."""
    values: list[Any] = []
    times: list[float] = []
    start = clock()
    busy = 0.0
    while len(values) < len(items):
        t0 = clock()
        values.append(_call(fn, items, len(values), on_error))
        t1 = clock()
        times.append(t1 - t0)
        busy += t1 - t0
        spent = t1 - start
        if spent >= PROBE_MAX_S or (len(values) >= 3 and spent >= PROBE_S):
            break
        if len(values) >= 3 and busy / len(values) * len(items) < MIN_PARALLEL_S:
            break  # the whole map is too short to parallelize: stop measuring

    return Probe(values, statistics.median(times))


def gil_test(fn: Callable[[Any], Any], items: Sequence[Any], first: int, pairs: int, *,
             on_error: Callable[[int, Exception], BaseException],
             clock: Callable[[], float] = time.perf_counter,
             cpu_clock: Callable[[], float] = time.thread_time) -> tuple[list[Any], float]:
    """Run items ``first .. first + 4*pairs`` and return their values and the GIL ratio
    (the threads' time for a call over the serial time; about 0.5 if 2 threads overlap).

    Rounds (up to :data:`GIL_ROUNDS`, one per pair) each run ``2k`` calls serially and
    ``2k`` calls split over 2 threads, the order swapped every round; the ratio is the
    median over rounds. Each half's wall time is measured with its *occupancy* ``u``: the
    CPU seconds of the threads that ran the calls (``cpu_clock`` read in each; the
    process's other threads, such as a loader's, are not counted) per wall second. A
    round's ratio is:

    - when the serial calls were mostly on a CPU (``u_serial >= CPU_BOUND``), the larger
      of ``u_serial / u_threads`` (how many more cores the calling threads kept busy: a
      function holding the GIL keeps one busy either way, 1.0; one computing with the GIL
      released keeps two, 0.5) and the wall ratio capped at 1. The wall ratio vetoes a
      gain the wall clock did not see: threads that burn more CPU per call (spin-waits,
      oversubscribed intra-op pools, a CUDA sync that spins) look busier, not faster.
    - the wall ratio otherwise (the calls mostly wait: sleeps, I/O), as a wait's wall
      time does not depend on the CPU's speed.

    Why not wall times alone for CPU-bound calls: where the CPU's speed moves between
    short windows (this shared VM), 2 threads of pure Python read anywhere from 0.63 to
    1.48 of the serial wall in interleaved rounds, and CI twice chose threads ("1.8x
    faster") for pure Python; occupancy is a ratio within one window, and the same rounds
    read 1.02-1.26 by this rule (``benchmarks/gil_test.py``, its stored run).
    """
    values: list[Any] = [None] * (4 * pairs)
    rounds = min(GIL_ROUNDS, pairs)
    ratios: list[float] = []
    at = 0
    for r in range(rounds):
        k = pairs // rounds + (1 if r < pairs % rounds else 0)
        halves: dict[str, tuple[float, float]] = {}
        for half in (("serial", "threads") if r % 2 == 0 else ("threads", "serial")):
            t0 = clock()
            if half == "serial":
                c0 = cpu_clock()
                for j in range(at, at + 2 * k):
                    values[j] = _call(fn, items, first + j, on_error)
                cpu = cpu_clock() - c0
            else:
                cpu = _in_two_threads(fn, items, first, at, k, values, on_error, cpu_clock)
            halves[half] = (max(clock() - t0, 1e-9), cpu)
            at += 2 * k
        ratios.append(_round_ratio(halves["serial"], halves["threads"]))
    return values, statistics.median(ratios)


def _round_ratio(serial: tuple[float, float], threads: tuple[float, float]) -> float:
    """One round's GIL ratio from (wall, cpu) of each half (see :func:`gil_test`)."""
    wall = threads[0] / serial[0]
    u_serial, u_threads = serial[1] / serial[0], threads[1] / threads[0]
    if u_serial >= CPU_BOUND and u_threads > 0:
        return max(u_serial / u_threads, min(wall, 1.0))
    return wall


def _in_two_threads(fn: Callable[[Any], Any], items: Sequence[Any], first: int, at: int,
                    k: int, values: list[Any],
                    on_error: Callable[[int, Exception], BaseException],
                    cpu_clock: Callable[[], float]) -> float:
    """Run ``values[at .. at + 2k]`` in 2 threads of ``k`` calls each; the CPU seconds
    the 2 threads used (``cpu_clock`` is read in each: a per-thread clock)."""
    errors: list[BaseException] = []
    cpu: list[float] = []

    def work(offsets: range) -> None:
        c0 = cpu_clock()
        try:
            for j in offsets:
                values[j] = _call(fn, items, first + j, on_error)
        except BaseException as e:  # noqa: B036 - re-raised in the caller below
            errors.append(e)
        finally:
            cpu.append(cpu_clock() - c0)

    threads = [threading.Thread(target=work, args=(r,), daemon=True)
               for r in (range(at, at + k), range(at + k, at + 2 * k))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    return sum(cpu)


def transfer_cost(items: Sequence[Any], values: Sequence[Any],
                  clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds to pickle + unpickle one item and one result (pipes roughly double it)."""
    import cloudpickle

    k = min(len(items), len(values), 1000)  # enough for a per-item figure
    if k == 0:
        return 0.0
    t0 = clock()
    for obj in (list(items[:k]), list(values[:k])):
        cloudpickle.loads(cloudpickle.dumps(obj))
    return 2 * (clock() - t0) / k


def _call(fn: Callable[[Any], Any], items: Sequence[Any], index: int,
          on_error: Callable[[int, Exception], BaseException]) -> Any:
    try:
        return fn(items[index])
    except Exception as e:
        raise on_error(index, e) from None
