"""An in-process, privilege-free sampler of Python stacks (line level, all threads).

Why in-process (see docs/profile.md, "Sampler choice"): an external sampler such as
py-spy reads the target's memory with ``ptrace``/``process_vm_readv``, which containers
often deny (``CAP_SYS_PTRACE``, Yama ``ptrace_scope``); a thread that reads
``sys._current_frames()`` needs nothing and is cheap at 100-200 Hz.

Each tick the sampler walks every thread's stack (except its own) and attributes the
wall time since the previous tick to it, so samples are *time weighted*: a tick that
waited for the GIL still accounts for all the time it covers. For the main thread it
also records

* whether the main thread was running Python bytecode: the sampler must take the GIL to
  sample; when the main thread holds it (pure Python), the sampler waits for the switch
  interval (5 ms by default) before it gets it, while a thread inside a torch op, I/O or
  a sleep has released it and the sampler gets it at once. A tick delayed by more than
  :data:`GIL_WAIT_FRACTION` of the switch interval (a forced hand-over: the main thread
  was still running Python, at the line we see) is counted as Python time, after
  subtracting the time the sampler thread sat runnable without a CPU (Linux schedstat),
  so a busy machine is not mistaken for Python code. A shorter wait ended by a voluntary
  release (a torch op) is a *hand-off*: the Python ran before the line we see, maybe in
  a callee that has returned, so the line is unknown; that time is kept as
  ``handoff_s`` and not credited to the line we see (the stack above it is right).
* the main thread's CPU time (``pthread_getcpuclockid``), so waiting (for workers, I/O,
  a lock) can be told from computing.
* a phase tag from the step tracker (``data``, ``forward``, ``startup``...).

The section it produces follows the ``stack_samples`` contract in :mod:`perfpilot.record`
(``count`` per stack) with extra per-stack fields ``seconds``, ``python_s``,
``handoff_s``, ``cpu_s``,
``thread`` and ``tag``.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

GIL_WAIT_FRACTION = 0.95
HANDOFF_MIN_S = 0.00015
STARTUP_SLOWDOWN = 4
DEFAULT_INTERVAL_S = 0.01  # 100 Hz, as py-spy; see benchmarks/profile_overhead.py
MAX_DEPTH = 96
MAX_STACKS = 20000  # distinct stacks kept; beyond that new stacks fold into their leaf

Frame = tuple[str, int, str]
# Instructions that can run long in C without reaching an eval-breaker check point (where
# the GIL is handed over): a sample taken at the next check point belongs to them.
INLINE_HEAVY = frozenset({"CONTAINS_OP", "BINARY_OP", "COMPARE_OP", "BINARY_SUBSCR",
                          "STORE_SUBSCR", "DELETE_SUBSCR", "BUILD_STRING", "FORMAT_VALUE",
                          "LIST_EXTEND", "SET_UPDATE", "DICT_UPDATE", "DICT_MERGE",
                          "BINARY_SLICE", "STORE_SLICE", "BINARY_ADD", "INPLACE_ADD",
                          "BINARY_MULTIPLY", "INPLACE_MULTIPLY", "BINARY_SUBTRACT"})


@dataclass
class _Agg:
    count: int = 0
    seconds: float = 0.0
    python_s: float = 0.0
    handoff_s: float = 0.0
    cpu_s: float = 0.0


def _thread_cpu_clock(ident: int | None) -> Callable[[], float] | None:
    if ident is None or not hasattr(time, "pthread_getcpuclockid"):
        return None
    try:
        clk = time.pthread_getcpuclockid(ident)
        time.clock_gettime(clk)
    except (OSError, OverflowError):
        return None
    return lambda: time.clock_gettime(clk)


def loop_body_line(code: Any, lasti: int) -> int:
    """The line a sample at the line-less instruction ``lasti`` belongs to (see
    :meth:`StackSampler._line_at`): for a back edge, an :data:`INLINE_HEAVY` instruction
    between the loop's start and ``lasti`` (``in`` first, else the last one); else the
    nearest earlier line."""
    import dis

    line = code.co_firstlineno
    for start, _end, ln in code.co_lines():
        if start > lasti:
            break
        if ln is not None:
            line = ln
    ins = {i.offset: i for i in dis.get_instructions(code)}
    jump = ins.get(lasti)
    if jump is None or not jump.opname.startswith("JUMP_BACKWARD"):
        return line
    heavy = [(i.opname == "CONTAINS_OP", off, _lineno(i)) for off, i in ins.items()
             if jump.argval <= off < lasti and i.opname in INLINE_HEAVY and _lineno(i)]
    return max(heavy)[2] if heavy else line  # a scan (``in``) first, else the last one


def _lineno(ins: Any) -> int | None:
    pos = getattr(ins, "positions", None)  # Python 3.11+
    return pos.lineno if pos is not None else ins.starts_line


def _startup_frames(frames: list[list[Any]]) -> list[list[Any]]:
    """A startup stack reduced to the user's frames and the first import frame: all that
    startup figures need (imports are found by that frame), at a fraction of the size."""
    from perfpilot.probes.frames import is_user_file

    out, importing = [], False
    for f in frames:
        if is_user_file(f[0]):
            out.append(f)
        elif not importing and f[0].startswith("<frozen importlib"):
            out.append(f)
            importing = True
    return out or frames[-1:]


class _RunQueueClock:
    """Seconds this thread spent runnable but waiting for a CPU (Linux schedstat).

    Must be created on the thread it measures; :meth:`delta` is the wait since the last
    call (0 where schedstat is unavailable).
    """

    def __init__(self) -> None:
        try:
            self.fd: int | None = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:
            self.fd = None
        self.last = self._read()

    def _read(self) -> int:
        if self.fd is None:
            return 0
        try:
            return int(os.pread(self.fd, 128, 0).split()[1])
        except (OSError, ValueError, IndexError):
            return 0

    def delta(self) -> float:
        now = self._read()
        d, self.last = now - self.last, now
        return max(d, 0) / 1e9

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class StackSampler:
    """Samples all Python threads every ``interval_s`` from a daemon thread.

    ``tag()`` (optional) labels main-thread samples; ``periodic`` is a list of
    ``(period_s, fn)`` run on the sampler thread (memory, GPU utilization, partial
    saves). ``clock`` is injectable for tests; :meth:`tick` can be called directly.
    """

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S, *,
                 tag: Callable[[], str] | None = None,
                 periodic: list[tuple[float, Callable[[], None]]] | None = None,
                 clock: Callable[[], float] = time.perf_counter,
                 main_ident: int | None = None) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.interval_s = interval_s
        self._tag = tag or (lambda: "")
        self._periodic = [[period, 0.0, fn] for period, fn in (periodic or [])]
        self._clock = clock
        self._main = main_ident if main_ident is not None else threading.main_thread().ident
        self._main_cpu = _thread_cpu_clock(self._main)
        self._stacks: dict[tuple[Any, ...], _Agg] = {}
        self._codes: dict[int, Any] = {}  # id -> code object (kept alive: ids stay unique)
        self._lines: dict[tuple[int, int], int] = {}
        self._names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last = self._last_cpu = 0.0
        self.ticks = 0
        self.enabled = True
        self.busy_s = 0.0  # CPU time the sampler thread spent sampling
        self.python_s = self.total_s = 0.0
        self._lock = threading.Lock()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._last = self._clock()
        for entry in self._periodic:  # first run one period from now
            entry[1] = self._last
        self._last_cpu = self._main_cpu() if self._main_cpu else 0.0
        self._thread = threading.Thread(target=self._run, name="perfpilot-sampler",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self._thread = None

    def _run(self) -> None:
        own = threading.get_ident()
        runq = _RunQueueClock()
        target = self._clock() + self.interval_s
        while not self._stop.is_set():
            delay = target - self._clock()
            if delay > 0:
                time.sleep(delay)
            woke = self._clock()
            cpu0 = time.thread_time()
            late = max(woke - target, 0.0)
            try:
                # Lateness minus time spent runnable but without a CPU = time waiting
                # for the GIL (another thread running Python).
                if self.enabled:
                    self.tick(late_s=max(late - runq.delta(), 0.0), skip=own)
                self._run_periodic(woke)
            except Exception:  # never let a probe kill the user's program
                pass
            self.busy_s += time.thread_time() - cpu0
            # Catch up after a late tick instead of bursting, but keep the cadence.
            # Startup (imports, building data) is reported, not diagnosed: sample it
            # STARTUP_SLOWDOWN times less often, its stacks are deep and all different.
            step = self.interval_s * (STARTUP_SLOWDOWN if self._tag() == "startup" else 1)
            target = max(target + step, self._clock() + 0.2 * step)
        runq.close()

    def _run_periodic(self, now: float) -> None:
        for entry in self._periodic:
            period, last, fn = entry
            if now - last >= period:
                entry[1] = now
                fn()

    # ------------------------------------------------------------ sampling

    def tick(self, late_s: float = 0.0, skip: int | None = None) -> None:
        """Take one sample of every thread; ``late_s`` is how late this tick woke."""
        now = self._clock()
        dt = now - self._last
        self._last = now
        cpu_dt = 0.0
        if self._main_cpu is not None:
            cpu = self._main_cpu()
            cpu_dt, self._last_cpu = cpu - self._last_cpu, cpu
        switch = sys.getswitchinterval()
        is_python = late_s > GIL_WAIT_FRACTION * switch
        is_handoff = not is_python and late_s > max(HANDOFF_MIN_S, 0.3 * switch)
        gc_on = gc.isenabled()
        gc.disable()  # a collection could run finalizers, hand the GIL over mid-walk
        try:
            self._sample(dt, cpu_dt, is_python, is_handoff, skip)
        finally:
            if gc_on:
                gc.enable()

    def _sample(self, dt: float, cpu_dt: float, is_python: bool, is_handoff: bool,
                skip: int | None) -> None:
        frames = sys._current_frames()
        if len(self._names) != len(frames):
            self._names = {t.ident: t.name for t in threading.enumerate() if t.ident}
        with self._lock:
            for ident, frame in frames.items():
                if ident == skip:
                    continue
                main = ident == self._main
                name = "MainThread" if main else self._names.get(ident, str(ident))
                key = (name, self._tag() if main else "", self._walk(frame))
                agg = self._stacks.get(key)
                if agg is None:
                    if len(self._stacks) >= MAX_STACKS:
                        key = (key[0], key[1], key[2][-2:])
                    agg = self._stacks.setdefault(key, _Agg())
                agg.count += 1
                agg.seconds += dt
                if main:
                    agg.cpu_s += min(max(cpu_dt, 0.0), dt)
                    if is_python:
                        agg.python_s += dt
                        self.python_s += dt
                    elif is_handoff:
                        agg.handoff_s += dt
            self.total_s += dt
            self.ticks += 1
        del frames  # hold no frame object past the tick (see _walk)

    def _walk(self, frame: Any) -> tuple[int, ...]:
        """The stack as a flat ``(code id, line, ...)`` tuple, outermost first.

        No frame object is kept past the tick: on CPython 3.11 a frame object that
        outlives its function goes through ``take_ownership``, and in-process samplers
        that keep or revisit other threads' frames have been seen to crash there (e.g.
        sentry-python #2386, dd-trace-py #13567). Caching frames across ticks made each
        tick ~5x cheaper and made this profiler crash about once in 25 runs of a 10 s
        script; a full walk at 100 Hz costs well under 1%.
        """
        out: list[int] = []
        codes = self._codes
        depth = 0
        while frame is not None and depth < MAX_DEPTH:
            code = frame.f_code
            cid = id(code)
            if cid not in codes:
                codes[cid] = code
            line = frame.f_lineno
            if line is None:  # e.g. a loop's back-edge, where the GIL is usually handed over
                line = self._line_at(code, cid, frame.f_lasti)
            out.append(line)
            out.append(cid)
            frame = frame.f_back
            depth += 1
        out.reverse()  # (cid, line) pairs, outermost first
        return tuple(out)

    def _line_at(self, code: Any, cid: int, lasti: int) -> int:
        """The line that ran Python before a line-less instruction at ``lasti``.

        The main thread hands the GIL over only at *check points* (function entry, the
        loop's back edge, some calls), so a forced hand-over is seen at the check point
        *after* the instruction that held the GIL. A loop's back edge has no line of its
        own; the nearest line before it in the bytecode is the body's last line, which
        would get the time of, say, an ``x in a_list`` scan a line above it. So for a
        back edge the time goes to the line of an instruction in the loop body that runs C
        code without a check point (:data:`INLINE_HEAVY`): a membership scan (``in``,
        O(n) on a list) if there is one, else the last such instruction (``+``, ``[i]``);
        with none, to the nearest line before ``lasti``.
        """
        key = (cid, lasti)
        line = self._lines.get(key)
        if line is None:
            line = loop_body_line(code, lasti)
            self._lines[key] = line
        return line

    # ------------------------------------------------------------ output

    def section(self) -> dict[str, Any]:
        """The ``stack_samples`` section (see the module docstring)."""
        with self._lock:
            items = list(self._stacks.items())
        merged: dict[tuple[Any, ...], list[Any]] = {}
        for (name, tag, flat), a in items:
            frames = self._resolve(flat)
            if tag == "startup":
                frames = _startup_frames(frames)
            key = (name, tag, tuple(map(tuple, frames)))
            m = merged.setdefault(key, [frames, _Agg()])
            for attr in ("count", "seconds", "python_s", "handoff_s", "cpu_s"):
                setattr(m[1], attr, getattr(m[1], attr) + getattr(a, attr))
        stacks = [
            {"thread": name, "tag": tag, "frames": frames,
             "count": a.count, "seconds": round(a.seconds, 6),
             "python_s": round(a.python_s, 6), "handoff_s": round(a.handoff_s, 6),
             "cpu_s": round(a.cpu_s, 6)}
            for (name, tag, _), (frames, a) in merged.items()
        ]
        stacks.sort(key=lambda s: s["seconds"], reverse=True)
        return {"interval_s": self.interval_s, "total": self.ticks,
                "seconds": round(self.total_s, 6), "busy_s": round(self.busy_s, 6),
                "stacks": stacks}

    def _resolve(self, flat: tuple[int, ...]) -> list[list[Any]]:
        out = []
        for i in range(0, len(flat), 2):
            code = self._codes.get(flat[i])
            if code is None:
                out.append(["?", flat[i + 1], "?"])
            else:
                out.append([code.co_filename, flat[i + 1], code.co_name])
        return out
