"""Ending a profiled script from outside when its ``--steps``/``--duration`` window is over.

Stopping must never raise into the script: an exception (``KeyboardInterrupt`` from
``_thread.interrupt_main``, or any exception raised from a hook) can be caught by the
script, which then goes on (to save, load a checkpoint, evaluate...) while perfpilot
still records. Instead the runner writes the final profile first and then ends the
process with :func:`os._exit`: no user code runs after the window (no ``except``,
``finally`` or ``atexit`` handler), so this module does what a normal exit would have
done for the output: it flushes ``sys.stdout``/``sys.stderr`` and every open file the
script wrote to, and ends the script's daemonic child processes (DataLoader workers).
"""

from __future__ import annotations

import gc
import io
import os
import sys
from typing import NoReturn

_FILES = (io.BufferedWriter, io.BufferedRandom, io.TextIOWrapper)


def flush_user_output() -> None:
    """Flush stdout, stderr and every open writable file object (what the interpreter's
    own shutdown would flush)."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        _flush(stream)
    try:
        # type(), not isinstance(): isinstance reads ``__class__``, which some objects
        # turn into a property with side effects (torch warns on deprecated aliases).
        for obj in gc.get_objects():
            if issubclass(type(obj), _FILES):
                _flush(obj)
    except Exception:
        pass


def _flush(stream: object) -> None:
    try:
        if stream is not None and not stream.closed and stream.writable():  # type: ignore[attr-defined]
            stream.flush()  # type: ignore[attr-defined]
    except Exception:
        pass


def end_child_processes(timeout_s: float = 1.0) -> None:
    """Terminate daemonic ``multiprocessing`` children (as ``multiprocessing``'s own exit
    handler does), so DataLoader workers do not outlive the script."""
    mp = sys.modules.get("multiprocessing")
    if mp is None:
        return
    try:
        children = [p for p in mp.active_children() if p.daemon]
        for p in children:
            p.terminate()
        for p in children:
            p.join(timeout_s / max(len(children), 1))
    except Exception:
        pass


def hard_exit(code: int = 0) -> NoReturn:
    """Flush the script's output, end its workers, and leave at once with ``code``."""
    flush_user_output()
    end_child_processes()
    flush_user_output()
    os._exit(code)
