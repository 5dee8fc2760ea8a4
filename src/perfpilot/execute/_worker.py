"""The worker side of remote executors, and the wire format of a call's result.

A call travels as ``cloudpickle.dumps((fn, args, kwargs))`` (so closures and lambdas
work) and comes back as ``cloudpickle.dumps(reply)`` where ``reply`` is ``("ok", value)``
or ``("err", exc_blob | None, type_name, message, traceback_text)``. The same functions
serve the process pool (``main``) and Ray (``run_blob`` as the remote function).

This module is also the worker's entry point (``python -c 'from ... import main'``), so it
imports nothing heavy: the worker stays a bare interpreter until a call needs more.
"""

from __future__ import annotations

import linecache
import os
import re
import sys
import threading
import time
import traceback
import types
from collections.abc import Iterator
from typing import Any


def run_blob(blob: bytes) -> bytes:
    """Run one pickled call and return its pickled reply; never raises."""
    import cloudpickle

    try:
        fn, args, kwargs = cloudpickle.loads(blob)
        reply: tuple = ("ok", fn(*args, **kwargs))
    except BaseException as e:  # noqa: B036 - SystemExit of a call must not end the worker
        reply = error_reply(e)
    try:
        return cloudpickle.dumps(reply)
    except Exception as e:  # an unpicklable result is the call's failure, not the worker's
        return cloudpickle.dumps(error_reply(e, context="could not send the result back: "))


def error_reply(exc: BaseException, context: str = "") -> tuple:
    """``("err", blob, type, message, traceback)``; blob is None if exc cannot be pickled."""
    import cloudpickle

    tb = exc.__traceback__
    if tb is not None and tb.tb_frame.f_code is run_blob.__code__:
        tb = tb.tb_next  # the user's frames only
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    try:
        blob = None if context else cloudpickle.dumps(exc)
        if blob is not None:
            cloudpickle.loads(blob)  # some exceptions pickle but cannot be rebuilt
    except Exception:
        blob = None
    return ("err", blob, type(exc).__qualname__, context + str(exc), text)


def rebuild(reply: tuple) -> Any:
    """The value of an ``ok`` reply, or raise the exception of an ``err`` reply."""
    if reply[0] == "ok":
        return reply[1]
    raise exception_of(reply)


def exception_of(reply: tuple, sent: Any = None) -> BaseException:
    """The original exception (with its traceback text as ``__cause__``) or a RemoteError.

    ``sent`` is what was sent (the function and its arguments): file names of functions
    pickled by value, which cloudpickle replaces by ``<dynamic-code>``, are restored from it.
    """
    import cloudpickle

    from perfpilot.execute.base import RemoteError, RemoteTraceback

    _, blob, type_name, message, text = reply
    text = restore_source(text, sent)
    exc: BaseException | None = None
    if blob is not None:
        try:
            exc = cloudpickle.loads(blob)
        except Exception:
            exc = None
    if exc is None:
        exc = RemoteError(type_name, message, text)
    exc.__cause__ = RemoteTraceback(text)
    return exc


_DYNAMIC = re.compile(r'^  File "<dynamic-code>", line (\d+), in (.+)$', re.M)


def restore_source(text: str, sent: Any) -> str:
    """Put back file names and source lines of by-value functions found in ``sent``."""
    if "<dynamic-code>" not in text:
        return text
    files: dict[str, str] = {}
    for code in _code_objects(sent, depth=4, seen=set()):
        files.setdefault(code.co_name, code.co_filename)

    def fix(m: re.Match) -> str:
        line, name = int(m[1]), m[2]
        file = files.get(name)
        if file is None:
            return m[0]
        source = linecache.getline(file, line).strip()
        return f'  File "{file}", line {line}, in {name}' + (f"\n    {source}" if source else "")

    return _DYNAMIC.sub(fix, text)


def _code_objects(obj: Any, depth: int, seen: set[int]) -> Iterator[types.CodeType]:
    """Code objects reachable from functions in ``obj`` (closures, partials, containers)."""
    if depth < 0 or id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, types.CodeType):
        yield obj
        for const in obj.co_consts:
            yield from _code_objects(const, depth - 1, seen)
    elif isinstance(obj, types.FunctionType):
        yield from _code_objects(obj.__code__, depth, seen)
        for cell in obj.__closure__ or ():
            try:
                yield from _code_objects(cell.cell_contents, depth - 1, seen)
            except ValueError:  # an empty cell
                pass
    elif isinstance(obj, (list, tuple)) and len(obj) <= 16:
        for item in obj:
            yield from _code_objects(item, depth - 1, seen)
    elif hasattr(obj, "func"):  # functools.partial
        yield from _code_objects(obj.func, depth - 1, seen)


def main(task_fd: int, result_fd: int) -> None:
    """Worker loop: read the init message, say ready, then run calls until EOF or b""."""
    from multiprocessing.connection import Connection

    import cloudpickle

    tasks = Connection(task_fd, writable=False)
    results = Connection(result_fd, readable=False)
    try:
        init = cloudpickle.loads(tasks.recv_bytes())
    except EOFError:  # the parent closed the pipe before starting us (Ctrl-C, SIGTERM)
        return
    sys.path[:0] = [p for p in init["sys_path"] if p not in sys.path]
    if init.get("initializer") is not None:
        init["initializer"]()
    _watch_parent(os.getppid())
    results.send_bytes(cloudpickle.dumps(("ready", os.getpid())))
    while True:
        try:
            blob = tasks.recv_bytes()
        except (EOFError, OSError):
            return
        if not blob:
            return
        results.send_bytes(run_blob(blob))


def _watch_parent(parent: int) -> None:
    """Exit when the parent dies (reparenting), even in the middle of a long call."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="perfpilot-parent-watch", daemon=True).start()
