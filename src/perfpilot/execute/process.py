"""A pool of warm worker processes that survives its workers' deaths.

Why not ``concurrent.futures.ProcessPoolExecutor``: one dead worker breaks the whole pool
(``BrokenProcessPool``) and a hung call cannot be killed on its own. Why not
``multiprocessing.Process`` with spawn/forkserver: both re-import the caller's
``__main__``, so an unguarded script starts workers recursively. Each worker here is a
fresh interpreter (``subprocess``: no fork, so no copied torch/CUDA threads) running
:func:`perfpilot.execute._worker.main`, talking over two pipes wrapped in
``multiprocessing.connection.Connection``; calls are pickled with cloudpickle.

A manager thread owns every worker: it hands a queued call to an idle worker, turns
replies into future results, kills a worker whose call passed its deadline or memory
limit, notices a worker that died (EOF on its pipe, or ``poll()``), fails that call with
the matching error, and starts a replacement in the same slot (same environment, e.g.
the same ``CUDA_VISIBLE_DEVICES``). Each worker leads its own process group (in the
caller's session): Ctrl-C in the terminal reaches only the caller's foreground group, the
caller then closes the pool, and a kill takes the worker's own children too. Not a new
session: with the kernel's autogroup scheduling a session is a CPU-share unit, and
workers must not take a bigger share of a busy machine than the caller would. A worker
also exits when its parent dies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing import connection
from pathlib import Path
from typing import Any, ClassVar

from perfpilot.execute._worker import exception_of
from perfpilot.execute.base import (
    Executor,
    ExecutorClosed,
    RemoteError,
    TrialTimeout,
    WorkerDied,
    WorkerOOM,
    describe_signal,
    usable_cores,
)

# Intra-op thread pools a worker's libraries size from the environment at import time.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
_ENTRY = ("import sys; from perfpilot.execute._worker import main; "
          "main(int(sys.argv[1]), int(sys.argv[2]))")
_TICK_S = 0.25  # longest wait between checks of deadlines, exits and memory
_MAX_START_FAILURES = 3  # consecutive workers dying before "ready": the pool is broken

# A new process group, same session (Popen's process_group is Python >= 3.11).
_NEW_GROUP: dict[str, Any] = ({"process_group": 0} if sys.version_info >= (3, 11)
                              else {"preexec_fn": os.setpgrp})

EnvSpec = Mapping[str, str] | Callable[[int], Mapping[str, str]] | None


@dataclass
class _Job:
    future: Future
    payload: bytes
    timeout_s: float | None
    sent: Any = None  # (fn, args): to restore file names in a remote traceback
    started: bool = False


@dataclass
class _Worker:
    slot: int
    proc: subprocess.Popen
    tasks: connection.Connection
    results: connection.Connection
    state: str = "starting"  # starting -> idle <-> busy
    job: _Job | None = None
    deadline: float | None = None


class ProcessExecutor(Executor):
    """``workers`` warm processes; each runs one call at a time and is reused.

    ``threads_per_worker`` (default: cores // workers, at least 1) is exported as
    ``OMP_NUM_THREADS`` and friends, so torch/numpy in a worker size their intra-op pools
    to it. ``worker_env`` adds variables (a mapping, or ``slot -> mapping``, e.g. one GPU
    per slot). ``initializer`` runs once in each worker (e.g. ``import torch``).
    ``memory_limit_bytes`` caps a worker's RSS (with its children): over it, the worker is
    killed and the call fails with :class:`WorkerOOM`. ``idle_timeout_s``: when no call
    has run for that long, the workers exit; the next ``submit`` starts them again.
    """

    kind: ClassVar[str] = "process"
    isolated: ClassVar[bool] = True

    def __init__(self, workers: int = 1, *, threads_per_worker: int | None = None,
                 worker_env: EnvSpec = None, initializer: Callable[[], None] | None = None,
                 memory_limit_bytes: int | None = None, kill_grace_s: float = 1.0,
                 idle_timeout_s: float | None = None) -> None:
        import cloudpickle

        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.threads_per_worker = threads_per_worker or max(1, usable_cores() // workers)
        self._worker_env = worker_env
        self._memory_limit = memory_limit_bytes
        self._grace = kill_grace_s
        self._idle_timeout = idle_timeout_s
        self._last_active = time.monotonic()
        self._init_blob = cloudpickle.dumps(
            {"sys_path": [p for p in sys.path if isinstance(p, str)], "initializer": initializer})
        self._lock = threading.RLock()  # RLock: a future's callback may submit() again
        self._queue: deque[_Job] = deque()
        self._slots: list[_Worker | None] = [None] * workers
        self._wake_r, self._wake_w = connection.Pipe(duplex=False)
        self._wake_pending = False
        self._closing = self._abort = False
        self._broken: str | None = None
        self._start_failures = 0
        for slot in range(workers):
            self._slots[slot] = self._spawn(slot)
        self._thread = threading.Thread(target=self._run, name="perfpilot-process-pool",
                                        daemon=True)
        self._thread.start()

    # ---- public API -------------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], *args: Any, timeout_s: float | None = None,
               **kwargs: Any) -> Future:
        import cloudpickle

        future: Future = Future()
        try:
            payload = cloudpickle.dumps((fn, args, kwargs))
        except Exception as e:
            future.set_exception(TypeError(f"cannot send {fn!r} to a worker process: {e}"))
            return future
        with self._lock:
            if self._closing:
                raise ExecutorClosed("submit() on a closed ProcessExecutor")
            if self._broken:
                future.set_exception(WorkerDied(self._broken))
                return future
            self._queue.append(_Job(future, payload, timeout_s, (fn, args)))
            self._wake()
        return future

    def close(self, *, wait: bool = True) -> None:
        with self._lock:
            self._closing = True
            self._abort = self._abort or not wait
            self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    @property
    def closed(self) -> bool:
        return self._closing

    def pids(self) -> list[int]:
        """Process ids of the live workers (for tests and diagnostics)."""
        with self._lock:
            return [w.proc.pid for w in self._slots if w is not None]

    # ---- workers ------------------------------------------------------------------------

    def _env(self, slot: int) -> dict[str, str]:
        env = dict(os.environ)
        env.update({var: str(self.threads_per_worker) for var in THREAD_VARS})
        root = str(Path(__file__).resolve().parents[2])  # the directory holding perfpilot/
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env["PERFPILOT_WORKER_SLOT"] = str(slot)
        extra = self._worker_env(slot) if callable(self._worker_env) else self._worker_env
        env.update(extra or {})
        return env

    def _spawn(self, slot: int) -> _Worker:
        task_r, task_w = os.pipe()
        res_r, res_w = os.pipe()
        try:
            proc = subprocess.Popen([sys.executable, "-c", _ENTRY, str(task_r), str(res_w)],
                                    pass_fds=(task_r, res_w), env=self._env(slot),
                                    stdin=subprocess.DEVNULL, **_NEW_GROUP)
        except BaseException:
            os.close(task_w)
            os.close(res_r)
            raise
        finally:
            os.close(task_r)
            os.close(res_w)
        worker = _Worker(slot, proc, connection.Connection(task_w, readable=False),
                         connection.Connection(res_r, writable=False))
        worker.tasks.send_bytes(self._init_blob)
        return worker

    def _kill(self, w: _Worker) -> int | None:
        """SIGKILL the worker's whole process group (its own children too); reap it."""
        try:
            os.killpg(w.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return self._reap(w)

    def _reap(self, w: _Worker) -> int | None:
        try:
            rc = w.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            rc = None
        for conn in (w.tasks, w.results):
            conn.close()
        if self._slots[w.slot] is w:
            self._slots[w.slot] = None
        return rc

    def _replace(self, slot: int) -> None:
        """Start a worker in an empty slot, unless nothing is left for it to do."""
        if self._abort or self._broken is not None or self._slots[slot] is not None:
            return
        if self._closing and not self._queue:  # close(wait=True) still drains the queue
            return
        self._slots[slot] = self._spawn(slot)

    # ---- the manager thread -------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._step():
                pass
        finally:
            self._shutdown()

    def _step(self) -> bool:
        """One round: dispatch, wait for a message or a tick, handle what happened."""
        with self._lock:
            if self._abort or (self._closing and not self._queue and not self._busy()):
                return False
            self._dispatch()
            live = {w.results: w for w in self._slots if w is not None}
            timeout = self._wait_time()
        ready = connection.wait([self._wake_r, *live], timeout)
        with self._lock:
            for conn in ready:
                if conn is self._wake_r:
                    self._drain_wake()
                elif live[conn].results is conn and not conn.closed:
                    self._on_readable(live[conn])
            self._check_workers()
        return True

    def _busy(self) -> bool:
        return any(w is not None and w.state == "busy" for w in self._slots)

    def _wait_time(self) -> float:
        deadlines = [w.deadline for w in self._slots if w is not None and w.deadline]
        if not deadlines:
            return _TICK_S
        return min(_TICK_S, max(0.0, min(deadlines) - time.monotonic()))

    def _wake(self) -> None:
        if not self._wake_pending:
            self._wake_pending = True
            self._wake_w.send_bytes(b"!")

    def _drain_wake(self) -> None:
        while self._wake_r.poll():
            self._wake_r.recv_bytes()
        self._wake_pending = False

    def _dispatch(self) -> None:
        if self._queue:  # workers stopped for idleness start again on demand
            for slot, w in enumerate(self._slots):
                if w is None:
                    self._replace(slot)
            self._last_active = time.monotonic()
        idle = [w for w in self._slots if w is not None and w.state == "idle"]
        while idle and self._queue:
            job = self._queue.popleft()
            if not job.started and not job.future.set_running_or_notify_cancel():
                continue  # cancelled while queued
            job.started = True
            w = idle.pop()
            try:
                w.tasks.send_bytes(job.payload)
            except OSError:  # died while idle: retry the call on another worker
                self._queue.appendleft(job)
                self._on_exit(w)
                continue
            w.state, w.job = "busy", job
            w.deadline = time.monotonic() + job.timeout_s if job.timeout_s else None

    def _on_readable(self, w: _Worker) -> None:
        import cloudpickle

        try:
            msg = cloudpickle.loads(w.results.recv_bytes())
        except (EOFError, OSError):
            self._on_exit(w)
            return
        except Exception as e:  # e.g. the result's class cannot be imported here
            msg = ("err", None, type(e).__qualname__, f"could not read the result: {e}", "")
        if w.state == "starting":
            w.state, self._start_failures = "idle", 0
            return
        job, w.job, w.state, w.deadline = w.job, None, "idle", None
        if job is None:
            return
        if msg[0] == "ok":
            job.future.set_result(msg[1])
        else:
            job.future.set_exception(exception_of(msg, job.sent))

    def _on_exit(self, w: _Worker, error: BaseException | None = None) -> None:
        """The worker is gone (or must go): fail its call, start a replacement."""
        pid, job, state = w.proc.pid, w.job, w.state
        rc = self._kill(w)
        if error is None:
            sig, words = describe_signal(rc)
            error = WorkerDied(f"worker process {pid} {words} while running the call",
                               pid=pid, exitcode=rc, signal_number=sig)
        if job is not None:
            job.future.set_exception(error)
        if state == "starting":
            self._start_failures += 1
            if self._start_failures >= _MAX_START_FAILURES:
                self._break(f"worker processes exit before they are ready "
                            f"(last: {describe_signal(rc)[1]}); see their stderr above")
        self._replace(w.slot)

    def _break(self, message: str) -> None:
        self._broken = message
        while self._queue:
            job = self._queue.popleft()
            if job.started or job.future.set_running_or_notify_cancel():
                job.future.set_exception(WorkerDied(message))

    def _check_workers(self) -> None:
        now = time.monotonic()
        if self._busy():
            self._last_active = now
        elif (self._idle_timeout is not None and not self._queue
              and now - self._last_active > self._idle_timeout):
            self._stop_idle()
        for w in list(self._slots):
            if w is None:
                continue
            if w.proc.poll() is not None:
                self._on_exit(w)
            elif w.deadline is not None and now >= w.deadline and w.job is not None:
                self._on_exit(w, TrialTimeout(w.job.timeout_s or 0.0, w.proc.pid))
            elif self._memory_limit and w.state == "busy":
                rss = _tree_rss(w.proc.pid)
                if rss > self._memory_limit:
                    self._on_exit(w, WorkerOOM(
                        f"worker process {w.proc.pid} used {rss / 2**20:.0f} MiB, over its "
                        f"limit of {self._memory_limit / 2**20:.0f} MiB; it was killed",
                        pid=w.proc.pid, rss_bytes=rss))

    def _stop_idle(self) -> None:
        """Let idle workers go (EOF: they exit at once); slots stay empty until needed."""
        for w in [w for w in self._slots if w is not None]:
            try:
                w.tasks.send_bytes(b"")
                w.proc.wait(timeout=self._grace)
            except (OSError, subprocess.TimeoutExpired):
                pass
            self._kill(w)

    def _shutdown(self) -> None:
        """Stop every worker: gracefully (EOF) after a normal close, SIGKILL otherwise."""
        with self._lock:
            self._closing = True
            for job in self._queue:
                if not job.future.cancel() and not job.future.done():
                    job.future.set_exception(ExecutorClosed("the executor was closed"))
            self._queue.clear()
            workers = [w for w in self._slots if w is not None]
            for w in workers:
                if w.job is not None and not w.job.future.done():
                    w.job.future.set_exception(ExecutorClosed(
                        "the executor was closed while the call was running"))
                if not self._abort:
                    try:
                        w.tasks.send_bytes(b"")
                    except OSError:
                        pass
            end = time.monotonic() + (0 if self._abort else self._grace)
            for w in workers:
                try:
                    w.proc.wait(timeout=max(0.0, end - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
                self._kill(w)
            self._wake_r.close()
            self._wake_w.close()


def _tree_rss(pid: int) -> int:
    """Resident memory of a process and its children, in bytes (0 if it is gone)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


__all__ = ["ProcessExecutor", "RemoteError", "THREAD_VARS"]
