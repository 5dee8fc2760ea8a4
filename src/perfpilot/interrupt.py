"""Ctrl-C and SIGTERM stop a tuning, whatever code was running when they arrived.

Python turns SIGINT into a ``KeyboardInterrupt`` raised wherever the main thread happens to
be. Inside a trial that place is often someone else's code, and the exception can be lost
there: raised in a ``__del__`` (a DataLoader iterator shutting its workers down), where
Python prints "Exception ignored" and goes on; replaced by another exception raised in a
``finally`` on the way out (the DataLoader's "worker exited unexpectedly" when Ctrl-C
reached its workers too); or caught by the user's own training code. The trial then ends
as an ordinary failure and the tuner goes on to the next one. SIGTERM, by default, kills
the process at once, leaving the record saying "running".

:func:`handling` (installed by the command for the length of a tuning) makes the *first*
SIGINT or SIGTERM a fact that cannot be lost: it sets a flag and raises
:class:`Interrupted` (a ``KeyboardInterrupt``) in the main thread. Every trial boundary
calls :func:`check`, which raises :class:`Interrupted` again while the flag is set, so a
trial that "failed" or even "completed" after the signal is never recorded as its result
and the next trial never starts. Later signals do not interrupt the clean-up (writing the
record and the report takes a moment); a third one ends the process at once.

Exit codes follow the shell's convention for a process stopped by a signal, 128 + its
number: 130 for SIGINT, 143 for SIGTERM (:func:`exit_code`). The module costs nothing
outside :func:`handling`: :func:`check` reads one module variable.

After such a stop the process's exit is bounded (:func:`exit_within`, armed by
:func:`stopped` when the console entry declared :func:`exit_after_command`): an
interrupted trial can leave a DataLoader half shut down, and the process then waits on its
queues' feeder threads, pin-memory thread or workers (CI once saw a stopped tune print
"interrupted" and hang 240 s). Past :data:`EXIT_WITHIN_S` the process ends its children
and itself.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
FORCE_AFTER = 3  # the third signal ends the process without clean-up
# The interpreter's own exit after a stop (atexit handlers, joins) takes well under a
# second when nothing hangs; the fault tests give a stop 10 s from the signal to the end.
EXIT_WITHIN_S = 5.0

_received: list[int] = []  # signal numbers received while handling() is active


class Interrupted(KeyboardInterrupt):
    """The tuning was asked to stop by ``signum`` (SIGINT or SIGTERM)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return exit_code(self.signum)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_code(signum: int) -> int:
    """128 + the signal's number: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + int(signum)


STOP_CODES = frozenset(exit_code(s) for s in SIGNALS)


_exits_after_command = False  # set by the console entry: this process ends with the command
_bounded = False  # exit_within was armed (once per process)


def exit_after_command() -> None:
    """Declare that this process ends when the command returns (the console entry calls
    it). Then :func:`stopped` bounds the exit from the moment a stop is reported, which
    covers a hang still inside the command: freeing an interrupted trial's frames runs a
    DataLoader iterator's shutdown, which joins its workers and pin-memory thread."""
    global _exits_after_command
    _exits_after_command = True


def stopped(code: int) -> None:
    """A command has handled a stop and will exit with ``code``: bound that exit if this
    process ends with the command (:func:`exit_after_command`); in-process callers
    (tests, notebooks) are left alone."""
    if _exits_after_command:
        exit_within(code)


def exit_within(code: int, seconds: float = EXIT_WITHIN_S) -> None:
    """Bound the exit that follows: a daemon thread that, if the process is still alive
    ``seconds`` from now, ends its child processes (SIGTERM, then SIGKILL 1 s later),
    flushes stdout/stderr and calls ``os._exit(code)``. Only for a process that is about
    to exit (never in a library call: it would end the caller's process). Armed once; a
    second call does nothing."""
    global _bounded
    if _bounded:
        return
    _bounded = True

    def last_resort() -> None:
        time.sleep(seconds)
        _end_children()
        # Flushed from another thread, waited on briefly: a main thread stuck writing to a
        # full pipe holds the stream's lock, and a flush here would wait with it.
        flusher = threading.Thread(target=_flush, name="perfpilot-exit-flush", daemon=True)
        flusher.start()
        flusher.join(0.5)
        os._exit(code)

    threading.Thread(target=last_resort, name="perfpilot-exit-bound", daemon=True).start()


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass


def _end_children(grace_s: float = 1.0) -> None:
    import psutil

    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return
    for p in children:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(children, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass


def requested() -> int | None:
    """The first signal received while :func:`handling` is active, or ``None``."""
    return _received[0] if _received else None


def check() -> None:
    """Raise :class:`Interrupted` if a stop was requested (call at every trial boundary)."""
    if _received:
        raise Interrupted(_received[0])


def signum_of(exc: BaseException) -> int:
    """The signal behind an interrupt: its own, the flag's, else SIGINT (a plain Ctrl-C)."""
    if isinstance(exc, Interrupted):
        return exc.signum
    return requested() or signal.SIGINT


def _handler(signum: int, frame: Any) -> None:
    _received.append(signum)
    if len(_received) == 1:
        raise Interrupted(signum)
    if len(_received) >= FORCE_AFTER:
        os._exit(exit_code(_received[0]))
    # A second signal while stopping: the clean-up is already under way; let it finish.


@contextmanager
def handling(signals: tuple[signal.Signals, ...] = SIGNALS) -> Iterator[None]:
    """Install the stop handler for ``signals`` (main thread only; elsewhere a no-op) and
    restore the previous handlers on exit. The flag is cleared on entry and exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    old = {s: signal.signal(s, _handler) for s in signals}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _received.clear()
