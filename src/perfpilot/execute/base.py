"""The executor contract, the errors executors raise, and the in-process executor.

An executor runs a callable somewhere (the caller's process, a warm worker process, a Ray
cluster) and hands its result back through a :class:`concurrent.futures.Future`:

- ``submit(fn, *args, timeout_s=None, **kwargs) -> Future``. The future's result is
  ``fn(*args, **kwargs)``. If ``fn`` raises, the future raises *the same exception type
  with the same message*; when it ran in another process its original traceback text is
  attached as ``__cause__`` (a :class:`RemoteTraceback`), like ``ProcessPoolExecutor``
  does. Exceptions that cannot be pickled come back as :class:`RemoteError`.
- Failures of the *place* a trial runs in get their own classes, so the tuner records the
  right state through ``perfpilot.trial.outcome_of_exception``: :class:`TrialTimeout`
  (a ``TimeoutError``: state ``timeout``), :class:`WorkerOOM` (a ``MemoryError``: state
  ``oom``), :class:`WorkerDied` (state ``failed``, with the signal that killed the worker).
- ``timeout_s`` counts from the moment the call starts running, not from submission.
- ``close(wait=True)`` finishes queued work then releases workers; ``close(wait=False)``
  cancels queued work and kills running work. Executors are context managers (leaving the
  block through an exception, Ctrl-C included, closes with ``wait=False``).
"""

from __future__ import annotations

import abc
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, ClassVar


class ExecutorError(Exception):
    """Base of the errors that come from the executor rather than from the trial's code."""


class TrialTimeout(ExecutorError, TimeoutError):
    """The call ran longer than its ``timeout_s``; the worker running it was killed."""

    def __init__(self, timeout_s: float, pid: int | None = None, detail: str = "") -> None:
        where = f"; worker {pid} was killed" if pid else ""
        super().__init__(f"trial exceeded its timeout of {timeout_s:g} s{where}{detail}")
        self.timeout_s = timeout_s
        self.pid = pid


class WorkerDied(ExecutorError, RuntimeError):
    """The worker process running the call exited or was killed (e.g. SIGKILL, segfault)."""

    def __init__(self, message: str, pid: int | None = None, exitcode: int | None = None,
                 signal_number: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid
        self.exitcode = exitcode
        self.signal = signal_number


class WorkerOOM(ExecutorError, MemoryError):
    """The worker went over its memory limit (or Ray's memory monitor killed it)."""

    def __init__(self, message: str, pid: int | None = None, rss_bytes: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid
        self.rss_bytes = rss_bytes


class ExecutorClosed(ExecutorError, RuntimeError):
    """The executor was closed (``close(wait=False)``) while the call was queued or running."""


class RemoteTraceback(Exception):
    """The traceback text of an exception raised in another process (set as ``__cause__``)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text.rstrip()}\n"""'


class RemoteError(Exception):
    """An exception from another process that could not be sent back as itself."""

    def __init__(self, type_name: str, message: str, traceback_text: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.traceback = traceback_text


def describe_signal(returncode: int | None) -> tuple[int | None, str]:
    """``(signal number or None, words)`` for a ``Popen.returncode``."""
    if returncode is None:
        return None, "is gone"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return -returncode, f"was killed by {name}"
    return None, f"exited with code {returncode}"


class Executor(abc.ABC):
    """One small base class per variation point: inline, process pool, Ray.

    ``workers`` is how many calls may run at once; ``isolated`` says whether a call runs
    apart from the caller (so a crash, SIGKILL or hang of the call cannot take the caller
    down, and a timeout can always be enforced).
    """

    kind: ClassVar[str] = "base"
    isolated: ClassVar[bool] = False
    workers: int = 1

    @abc.abstractmethod
    def submit(self, fn: Callable[..., Any], *args: Any, timeout_s: float | None = None,
               **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)``; see the module docstring for the contract."""

    @abc.abstractmethod
    def close(self, *, wait: bool = True) -> None:
        """Release workers; ``wait=False`` cancels queued calls and kills running ones."""

    def map(self, fn: Callable[[Any], Any], iterable: Iterable[Any], *,
            timeout_s: float | None = None) -> Iterator[Any]:
        """Results of ``fn(x)`` in input order; re-raises the first failure in order."""
        futures = [self.submit(fn, x, timeout_s=timeout_s) for x in iterable]
        try:
            for f in futures:
                yield f.result()
        finally:
            for f in futures:
                f.cancel()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(wait=exc_type is None)


class InlineExecutor(Executor):
    """Runs each call in the caller's thread, at submit time (the future is already done).

    A timeout is enforced with ``SIGALRM`` when called from the main thread on POSIX (it
    interrupts Python code and sleeps, not a long C call); elsewhere the call runs to the
    end and still counts as timed out if it overran. A SIGKILL or segfault of the call
    kills the caller: use :class:`~perfpilot.execute.ProcessExecutor` for isolation.
    """

    kind: ClassVar[str] = "inline"
    isolated: ClassVar[bool] = False

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.workers = 1
        self._clock = clock
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any, timeout_s: float | None = None,
               **kwargs: Any) -> Future:
        if self._closed:
            raise ExecutorClosed("submit() on a closed InlineExecutor")
        future: Future = Future()
        future.set_running_or_notify_cancel()
        started = self._clock()
        try:
            with _alarm(timeout_s):
                result = fn(*args, **kwargs)
        except Exception as e:  # the future carries the failure, as remote executors do
            future.set_exception(e)
            return future
        if timeout_s is not None and self._clock() - started > timeout_s:
            future.set_exception(TrialTimeout(timeout_s, detail=" (noticed after it finished)"))
        else:
            future.set_result(result)
        return future

    def close(self, *, wait: bool = True) -> None:
        self._closed = True


class _alarm:
    """Raise :class:`TrialTimeout` in the main thread after ``timeout_s`` (nests with an
    outer ITIMER_REAL, e.g. pytest-timeout's, and re-arms it on exit)."""

    def __init__(self, timeout_s: float | None) -> None:
        self.timeout_s = timeout_s
        self.active = False

    def __enter__(self) -> None:
        t = self.timeout_s
        if t is None or not hasattr(signal, "setitimer"):
            return
        if threading.current_thread() is not threading.main_thread():
            return
        outer, _ = signal.getitimer(signal.ITIMER_REAL)
        if outer and outer <= t:  # the outer alarm fires first anyway
            return
        self.outer, self.start = outer, time.monotonic()
        self.old = signal.signal(signal.SIGALRM, self._fire)
        signal.setitimer(signal.ITIMER_REAL, t)
        self.active = True

    def _fire(self, signum: int, frame: Any) -> None:
        raise TrialTimeout(self.timeout_s or 0.0, detail=" (interrupted in the caller)")

    def __exit__(self, *exc: Any) -> None:
        if not self.active:
            return
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.old)
        if self.outer:
            left = self.outer - (time.monotonic() - self.start)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3))


def usable_cores() -> int:
    """CPU cores this process may use (affinity and cgroup quota); see perfpilot.devices."""
    from perfpilot.devices import usable_cores as _usable_cores

    return _usable_cores()
