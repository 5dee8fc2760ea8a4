"""A thread pool whose threads never keep the interpreter alive.

``concurrent.futures.ThreadPoolExecutor`` joins its threads at interpreter exit, so after
Ctrl-C a call still running in a thread (a long sleep, a C kernel) would hold the exit
hostage. pmap stops *scheduling* on Ctrl-C (its chunks check a stop event between items)
and these daemon threads let the process exit without waiting for a call in flight.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, ClassVar

from perfpilot.execute.base import Executor, ExecutorClosed


class ThreadExecutor(Executor):
    """``workers`` daemon threads sharing one queue; no timeouts (threads cannot be killed)."""

    kind: ClassVar[str] = "thread"
    isolated: ClassVar[bool] = False

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"perfpilot-pmap-{i}",
                                          daemon=True) for i in range(workers)]
        for t in self._threads:
            t.start()

    def submit(self, fn: Callable[..., Any], *args: Any, timeout_s: float | None = None,
               **kwargs: Any) -> Future:
        if timeout_s is not None:
            raise ValueError("ThreadExecutor cannot enforce timeout_s (threads cannot be "
                             "killed); use ProcessExecutor")
        if self._closed:
            raise ExecutorClosed("submit() on a closed ThreadExecutor")
        future: Future = Future()
        self._queue.put((future, fn, args, kwargs))
        return future

    def close(self, *, wait: bool = True) -> None:
        self._closed = True
        if not wait:
            self._cancel_queued()
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for t in self._threads:
                t.join()

    def _cancel_queued(self) -> None:
        try:
            while True:
                job = self._queue.get_nowait()
                if job is not None:
                    job[0].cancel()
        except queue.Empty:
            pass

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            future, fn, args, kwargs = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as e:  # noqa: B036 - the future carries every failure
                future.set_exception(e)
