"""Run calls as Ray tasks: a local Ray, or an existing cluster (``address="auto"`` or given).

Ray is optional (``pip install 'perfpilot[ray]'``) and imported only when a
:class:`RayExecutor` is built. Each call is one task running
:func:`perfpilot.execute._worker.run_blob` on a blob pickled with cloudpickle, so errors
come back exactly as with the process pool (same type, message, traceback text). Ray
reuses its worker processes between tasks and replaces one that dies.

``resources`` go to ``.options()`` of every task (``{"num_cpus": 1}``, ``{"num_gpus": 1}``,
``{"resources": {"custom": 1}}``). ``max_per_node`` caps how many calls run at once on one
node: the executor then pins each task to a node with a free slot
(``NodeAffinitySchedulingStrategy``), which is how timing trials get a node each.
A dispatcher thread submits queued calls, waits on running ones (``ray.wait``) and
cancels (``force=True``, which kills the Ray worker) a call that passes its deadline.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, ClassVar

from perfpilot.errors import UserError
from perfpilot.execute.base import (
    Executor,
    ExecutorClosed,
    TrialTimeout,
    WorkerDied,
    WorkerOOM,
)

_TICK_S = 0.1
_NODE_REFRESH_S = 5.0


def import_ray() -> Any:
    """``ray``, or a UserError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError("the Ray backend needs Ray: pip install 'perfpilot[ray]'") from None
    return ray


@dataclass
class _Job:
    future: Future
    payload: bytes
    timeout_s: float | None
    sent: Any
    node: str | None = None
    deadline: float | None = None
    ref: Any = field(default=None, repr=False)


class RayExecutor(Executor):
    """Calls as Ray tasks. Connects to Ray if it is already initialized in this process,
    else ``ray.init(address=address, **init_kwargs)`` (``None``: Ray's own rule, which
    joins a cluster named by ``RAY_ADDRESS`` or started on this machine, else starts a
    local one). Shuts Ray down on ``close()`` only if it started it."""

    kind: ClassVar[str] = "ray"
    isolated: ClassVar[bool] = True

    def __init__(self, address: str | None = None, *, resources: dict[str, Any] | None = None,
                 max_per_node: int | None = None,
                 init_kwargs: dict[str, Any] | None = None) -> None:
        ray = import_ray()
        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(address=address, **(init_kwargs or {}))
        from perfpilot.execute._worker import run_blob

        self._options = {"max_retries": 0, **(resources or {})}
        self._remote = ray.remote(run_blob)
        self._max_per_node = max_per_node
        self._nodes: list[str] = []
        self._nodes_at = -_NODE_REFRESH_S
        self._lock = threading.RLock()
        self._wakeup = threading.Condition(self._lock)
        self._queue: deque[_Job] = deque()
        self._running: dict[Any, _Job] = {}
        self._closing = self._abort = False
        self.workers = self._concurrency()
        self._thread = threading.Thread(target=self._run, name="perfpilot-ray", daemon=True)
        self._thread.start()

    # ---- public API -------------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], *args: Any, timeout_s: float | None = None,
               **kwargs: Any) -> Future:
        import cloudpickle

        future: Future = Future()
        try:
            payload = cloudpickle.dumps((fn, args, kwargs))
        except Exception as e:
            future.set_exception(TypeError(f"cannot send {fn!r} to Ray: {e}"))
            return future
        with self._lock:
            if self._closing:
                raise ExecutorClosed("submit() on a closed RayExecutor")
            self._queue.append(_Job(future, payload, timeout_s, (fn, args)))
            self._wakeup.notify()
        return future

    def close(self, *, wait: bool = True) -> None:
        with self._lock:
            self._closing = True
            self._abort = self._abort or not wait
            self._wakeup.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join()
        if self._owns_ray:
            self._ray.shutdown()

    # ---- scheduling ---------------------------------------------------------------------

    def _concurrency(self) -> int:
        """How many calls can run at once, from the cluster's resources."""
        total = self._ray.cluster_resources()
        if self._max_per_node:
            return self._max_per_node * max(1, len(self._alive_nodes()))
        for key, name in (("num_gpus", "GPU"), ("num_cpus", "CPU")):
            need = self._options.get(key)
            if need:
                return max(1, int(total.get(name, 0) // need))
        return max(1, int(total.get("CPU", 1)))

    def _alive_nodes(self) -> list[str]:
        now = time.monotonic()
        if now - self._nodes_at > _NODE_REFRESH_S:
            self._nodes = [n["NodeID"] for n in self._ray.nodes()
                           if n.get("Alive") and n.get("Resources", {}).get("CPU")]
            self._nodes_at = now
        return self._nodes

    def _free_node(self) -> str | None:
        used: dict[str, int] = {}
        for job in self._running.values():
            used[job.node] = used.get(job.node, 0) + 1
        for node in self._alive_nodes():
            if used.get(node, 0) < (self._max_per_node or 0):
                return node
        return None

    def _dispatch(self) -> None:
        while self._queue:
            options = dict(self._options)
            node = None
            if self._max_per_node:
                node = self._free_node()
                if node is None:
                    return
                from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

                options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
            job = self._queue.popleft()
            if not job.future.set_running_or_notify_cancel():
                continue
            job.node = node
            job.ref = self._remote.options(**options).remote(job.payload)
            job.deadline = time.monotonic() + job.timeout_s if job.timeout_s else None
            self._running[job.ref] = job

    # ---- the dispatcher thread ----------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._step():
                pass
        finally:
            self._cancel_all()

    def _step(self) -> bool:
        with self._lock:
            if self._abort or (self._closing and not self._queue and not self._running):
                return False
            self._dispatch()
            refs = list(self._running)
            if not refs:  # idle (or waiting for a node slot): until submit() or close()
                self._wakeup.wait(_TICK_S if self._queue else None)
                return True
        ready, _ = self._ray.wait(refs, num_returns=1, timeout=self._wait_time())
        if ready:  # collect every other finished task too, without waiting
            ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
        with self._lock:
            for ref in ready:
                self._finish(self._running.pop(ref))
            self._expire(time.monotonic())
        return True

    def _wait_time(self) -> float:
        deadlines = [j.deadline for j in self._running.values() if j.deadline is not None]
        if not deadlines:
            return _TICK_S
        return min(_TICK_S, max(0.0, min(deadlines) - time.monotonic()))

    def _finish(self, job: _Job) -> None:
        import cloudpickle

        from perfpilot.execute._worker import exception_of

        try:
            msg = cloudpickle.loads(self._ray.get(job.ref))
        except Exception as e:
            job.future.set_exception(self._infrastructure_error(e))
            return
        if msg[0] == "ok":
            job.future.set_result(msg[1])
        else:
            job.future.set_exception(exception_of(msg, job.sent))

    def _infrastructure_error(self, e: Exception) -> BaseException:
        """Ray's errors about the place a task ran in, as this package's classes."""
        ex = self._ray.exceptions
        if isinstance(e, ex.OutOfMemoryError):
            return WorkerOOM(f"Ray's memory monitor killed the worker: {e}")
        if isinstance(e, (ex.WorkerCrashedError, ex.NodeDiedError)):
            return WorkerDied(f"the Ray worker running the call died: {e}")
        if isinstance(e, ex.RayError):
            return WorkerDied(f"Ray could not run the call: {type(e).__name__}: {e}")
        return e

    def _expire(self, now: float) -> None:
        for ref, job in list(self._running.items()):
            if job.deadline is not None and now >= job.deadline:
                del self._running[ref]
                self._ray.cancel(ref, force=True)  # kills the Ray worker running it
                job.future.set_exception(TrialTimeout(job.timeout_s or 0.0))

    def _cancel_all(self) -> None:
        with self._lock:
            for job in self._queue:
                job.future.cancel()
            self._queue.clear()
            for ref, job in self._running.items():
                self._ray.cancel(ref, force=True)
                if not job.future.done():
                    job.future.set_exception(ExecutorClosed(
                        "the executor was closed while the call was running"))
            self._running.clear()
