"""The process pool that ``pmap(backend="process")`` reuses between maps.

Starting worker processes costs 0.1-0.3 s (more if ``fn`` imports torch), which a loop
of short maps would pay every time; like joblib's loky executor, one pool is kept and
reused while its shape (workers, threads per worker) fits. Its workers exit after
:data:`IDLE_TIMEOUT_S` without work and start again on demand; :func:`shutdown` (also
registered with ``atexit``) ends them at once. A map that ends abnormally (an exception,
Ctrl-C) while no other map uses the pool kills it, so no work of a failed map lingers.
"""

from __future__ import annotations

import atexit
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from perfpilot.execute.process import ProcessExecutor

IDLE_TIMEOUT_S = 300.0

_lock = threading.Lock()
_state: dict = {"pool": None, "shape": None, "users": 0, "atexit": False}


def acquire(workers: int, threads_per_worker: int) -> ProcessExecutor:
    """The shared pool with this shape (a new one if the shape changed)."""
    from perfpilot.execute.process import ProcessExecutor

    with _lock:
        shape = (workers, threads_per_worker)
        if _state["pool"] is not None and (_state["shape"] != shape or _state["pool"].closed):
            if _state["users"] == 0:
                _state["pool"].close(wait=False)
            _state["pool"] = None
        if _state["pool"] is None:
            _state["pool"] = ProcessExecutor(workers, threads_per_worker=threads_per_worker,
                                             idle_timeout_s=IDLE_TIMEOUT_S)
            _state["shape"], _state["users"] = shape, 0
            if not _state["atexit"]:
                atexit.register(shutdown)
                _state["atexit"] = True
        _state["users"] += 1
        return _state["pool"]


def is_warm(workers: int, threads_per_worker: int) -> bool:
    """Whether a map of this shape would find live workers (no start-up to pay)."""
    with _lock:
        pool = _state["pool"]
        return (pool is not None and not pool.closed
                and _state["shape"] == (workers, threads_per_worker) and bool(pool.pids()))


def release(pool: ProcessExecutor, *, clean: bool) -> None:
    """A map is done with ``pool``; after an abnormal end, kill it unless others use it."""
    with _lock:
        if pool is not _state["pool"]:  # replaced meanwhile: this map was its last user
            if not clean:
                pool.close(wait=False)
            return
        _state["users"] -= 1
        if not clean and _state["users"] == 0:
            _state["pool"] = None
            pool.close(wait=False)


def shutdown() -> None:
    """End the shared pool's workers now (they would exit after IDLE_TIMEOUT_S anyway)."""
    with _lock:
        pool, _state["pool"] = _state["pool"], None
    if pool is not None:
        pool.close(wait=False)
