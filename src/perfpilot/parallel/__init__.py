"""``perfpilot.pmap``: a parallel map that measures before it parallelizes.

``pmap(fn, items)`` returns ``[fn(x) for x in items]``, computed serially, in threads, in
worker processes or on Ray. With ``backend="auto"`` it times a few calls on the first
items (their results are kept) and picks the backend with a cost model
(:mod:`perfpilot.parallel._auto`); items go to workers in adaptive chunks
(:mod:`perfpilot.parallel._chunks`); workers get intra-op thread limits so that
workers x threads does not exceed the cores. ``pimap`` is the same as a generator.

Failures: an exception in ``fn`` stops the map and is re-raised in the caller as the
same exception type, with a note naming the item's index (and, from a process or Ray
worker, the original traceback text as ``__cause__``). Ctrl-C cancels queued chunks,
kills process workers and re-raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any, Literal

from perfpilot.execute.base import Executor, usable_cores
from perfpilot.parallel import _auto
from perfpilot.parallel._auto import Backend, Choice, decide, gil_test, probe, transfer_cost
from perfpilot.parallel._chunks import ChunkResult, ChunkSizer, run_chunk

__all__ = ["Backend", "Choice", "ChunkSizer", "pimap", "pmap", "shutdown"]

logger = logging.getLogger("perfpilot.parallel")
BACKENDS = ("auto", "serial", "thread", "process", "ray")
PROGRESS_AFTER_S = 1.0  # a map shows its bar once it has run this long (short ones never do)


def pmap(fn: Callable[[Any], Any], iterable: Iterable[Any], *,
         backend: Literal["auto"] | Backend = "auto", workers: int | Literal["auto"] = "auto",
         chunksize: int | Literal["auto"] = "auto", ordered: bool = True,
         progress: bool | Callable[[int, int], None] = True, executor: Executor | None = None,
         address: str | None = None) -> list[Any]:
    """``[fn(x) for x in iterable]`` in parallel; results in input order (``ordered=False``:
    in completion order). See :func:`pimap` for the options."""
    out: list[Any] = []
    for batch in _batches(fn, iterable, backend, workers, chunksize, ordered, progress,
                          executor, address):
        out.extend(batch)
    return out


def pimap(fn: Callable[[Any], Any], iterable: Iterable[Any], *,
          backend: Literal["auto"] | Backend = "auto", workers: int | Literal["auto"] = "auto",
          chunksize: int | Literal["auto"] = "auto", ordered: bool = True,
          progress: bool | Callable[[int, int], None] = True, executor: Executor | None = None,
          address: str | None = None) -> Iterator[Any]:
    """Yield ``fn(x)`` for each item as results arrive (the input is read up front).

    ``backend``: ``auto`` (measure, then serial/thread/process), ``serial``, ``thread``,
    ``process`` (worker processes kept warm between maps; closures and lambdas work), ``ray``
    (``address``:
    ``None`` joins a running/``RAY_ADDRESS`` cluster or starts a local Ray; ``"auto"`` or
    ``"host:port"`` joins that cluster). ``workers``: ``auto`` = usable cores (Ray: the
    cluster's CPUs). ``chunksize``: items per task, ``auto`` adapts to ~0.2 s chunks.
    ``progress``: a rich bar on a terminal's stderr once the map has run 1 s, or a callable
    ``(done, total)``. ``executor``: run on this executor (not closed afterwards), e.g. a
    warm :class:`~perfpilot.execute.ProcessExecutor` shared by several maps.
    """
    for batch in _batches(fn, iterable, backend, workers, chunksize, ordered, progress,
                          executor, address):
        yield from batch


def _batches(fn: Callable[[Any], Any], iterable: Iterable[Any], backend: str, workers: Any,
             chunksize: Any, ordered: bool, progress: Any, executor: Executor | None,
             address: str | None) -> Iterator[list[Any]]:
    """The map's results as lists (chunks), in order; lists, not items, keep the
    per-item cost of the plumbing near zero."""
    _check(backend, workers, chunksize)
    items = iterable if isinstance(iterable, Sequence) else list(iterable)
    bar = _Progress(progress, len(items))
    try:
        yield from _run(fn, items, backend, workers, chunksize, ordered, executor, address, bar)
    finally:
        bar.close()


def shutdown() -> None:
    """End the worker processes that ``backend="process"`` keeps warm between maps (they
    also exit after 5 idle minutes, and at interpreter exit)."""
    from perfpilot.parallel import _pool

    _pool.shutdown()


def _check(backend: str, workers: Any, chunksize: Any) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: expected one of {', '.join(BACKENDS)}")
    for name, value in (("workers", workers), ("chunksize", chunksize)):
        if value != "auto" and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name}={value!r}: expected 'auto' or an integer >= 1")


def _run(fn: Callable[[Any], Any], items: Sequence[Any], backend: str, workers: Any,
         chunksize: Any, ordered: bool, executor: Executor | None, address: str | None,
         bar: _Progress) -> Iterator[list[Any]]:
    fixed = None if chunksize == "auto" else chunksize
    if executor is not None:
        yield from _parallel(executor, fn, items, 0, ChunkSizer(executor.workers, fixed=fixed),
                             ordered, bar, owned=False)
        return
    pool_workers = usable_cores() if workers == "auto" else workers
    n_workers = min(pool_workers, max(1, len(items)))
    first, per_item = 0, None
    if backend == "auto":
        head, choice = _choose(fn, items, n_workers, pool_workers)
        logger.info("pmap: %s x%d (%s)", choice.backend, choice.workers, choice.reason)
        bar.advance(len(head), choice.backend)
        yield head
        first, per_item, backend = len(head), choice.per_call_s, choice.backend
    if backend == "serial" or first >= len(items):
        yield from _serial(fn, items, first, bar)
        return
    if backend == "process":  # not capped by items: one pool shape for every map
        yield from _on_shared_pool(fn, items, first, pool_workers, per_item, fixed, ordered, bar)
        return
    ex = _make_executor(backend, n_workers, address)
    sizer = ChunkSizer(ex.workers, per_item_s=per_item, fixed=fixed)
    yield from _parallel(ex, fn, items, first, sizer, ordered, bar, owned=True)


def _on_shared_pool(fn: Callable[[Any], Any], items: Sequence[Any], first: int, workers: int,
                    per_item: float | None, fixed: int | None, ordered: bool,
                    bar: _Progress) -> Iterator[list[Any]]:
    from perfpilot.parallel import _pool

    pool = _pool.acquire(workers, _threads_per_worker(workers))
    clean = False
    try:
        sizer = ChunkSizer(workers, per_item_s=per_item, fixed=fixed)
        yield from _parallel(pool, fn, items, first, sizer, ordered, bar, owned=False)
        clean = True
    finally:
        _pool.release(pool, clean=clean)


def _threads_per_worker(workers: int) -> int:
    return max(1, usable_cores() // workers)


def _choose(fn: Callable[[Any], Any], items: Sequence[Any], workers: int,
            pool_workers: int) -> tuple[list, Choice]:
    """Run and time the first calls; return their values and the decision."""
    from perfpilot.parallel import _pool

    n = len(items)
    pr = probe(fn, items, on_error=_annotate_at(items))
    head = pr.values
    transfer = transfer_cost(items[:len(head)], head)
    # a warm shared pool of this shape costs no start-up
    warm = _pool.is_warm(pool_workers, _threads_per_worker(pool_workers))
    start = 0.0 if warm else None
    choice = decide(pr.per_call_s, n - len(head), workers, transfer_s=transfer,
                    process_start_s=start)
    if workers < 2 or pr.per_call_s * (n - len(head)) < _auto.MIN_PARALLEL_S:
        return head, choice  # serial whatever the GIL does: no need to test it
    # pairs of calls per thread half; each pair has 2 serial calls beside it (gil_test)
    wanted = round(0.5 * _auto.GIL_TEST_S / max(pr.per_call_s, 1e-9))
    pairs = min((n - len(head)) // 4, max(1, wanted))  # slow calls: one pair, one round
    if pairs < 1:
        return head, choice
    values, ratio = gil_test(fn, items, len(head), pairs, on_error=_annotate_at(items))
    head = head + values
    return head, decide(pr.per_call_s, n - len(head), workers, gil_ratio=ratio,
                        transfer_s=transfer, process_start_s=start)


def _serial(fn: Callable[[Any], Any], items: Sequence[Any], first: int,
            bar: _Progress) -> Iterator[list[Any]]:
    """One list of values, or one per item while a progress display watches."""
    if bar.active:
        for i in range(first, len(items)):
            yield _serial_values(fn, items, i, i + 1)
            bar.advance(1, "serial")
    else:
        yield _serial_values(fn, items, first, len(items))


def _serial_values(fn: Callable[[Any], Any], items: Sequence[Any], lo: int,
                   hi: int) -> list[Any]:
    out: list[Any] = []
    append = out.append
    i = lo
    try:
        for i in range(lo, hi):  # i names the failing item below
            append(fn(items[i]))
    except Exception as e:
        raise _annotate(e, i, items[i]) from None
    return out


def _make_executor(backend: str, workers: int, address: str | None) -> Executor:
    if backend == "thread":
        from perfpilot.execute.threads import ThreadExecutor

        return ThreadExecutor(workers)
    from perfpilot.execute.ray_executor import RayExecutor

    return RayExecutor(address, resources={"num_cpus": 1})


def _parallel(ex: Executor, fn: Callable[[Any], Any], items: Sequence[Any], first: int,
              sizer: ChunkSizer, ordered: bool, bar: _Progress, *,
              owned: bool) -> Iterator[list[Any]]:
    """Feed chunks to ``ex`` (two per worker in flight) and yield their value lists."""
    import cloudpickle

    remote = ex.isolated
    stop = threading.Event()
    payload: Any = cloudpickle.dumps(fn) if remote else fn
    extra = () if remote else (stop,)
    inflight: dict[Future, tuple[int, int]] = {}
    ready: dict[int, list[Any]] = {}
    sent = out = first
    clean = False
    try:
        with _thread_limits(ex):
            while sent < len(items) or inflight:
                while sent < len(items) and len(inflight) < 2 * ex.workers:
                    k = sizer.next(len(items) - sent)
                    f = ex.submit(run_chunk, payload, items[sent:sent + k], sent, *extra)
                    inflight[f] = (sent, k)
                    sent += k
                done, _ = wait(inflight, timeout=0.5, return_when=FIRST_COMPLETED)
                for f in done:
                    start, k = inflight.pop(f)
                    res = _chunk_result(f, start, k, fn, items, remote)
                    sizer.observe(len(res.values), res.seconds)
                    bar.advance(len(res.values), ex.kind)
                    if not ordered:
                        yield res.values
                        continue
                    ready[start] = res.values
                    while out in ready:
                        values = ready.pop(out)
                        out += len(values)
                        yield values
        clean = True
    finally:
        stop.set()
        for f in inflight:
            f.cancel()
        if owned:
            ex.close(wait=clean)


def _chunk_result(f: Future, start: int, k: int, fn: Any, items: Sequence[Any],
                  remote: bool) -> ChunkResult:
    """The chunk's result, or raise its failure naming the item (or the chunk's range)."""
    from perfpilot.execute._worker import exception_of

    try:
        res: ChunkResult = f.result()
    except Exception as e:  # the worker died, or the chunk's results could not come back
        _add_note(e, f"pmap: while running items {start}..{start + k - 1}")
        raise
    if res.error is None:
        return res
    index, err = res.error
    exc = exception_of(err, fn) if remote else err
    raise _annotate(exc, index, items[index])


def _annotate_at(items: Sequence[Any]) -> Callable[[int, Exception], BaseException]:
    return lambda index, e: _annotate(e, index, items[index])


def _annotate(exc: BaseException, index: int, item: Any) -> BaseException:
    """Name the failing item on the exception (a note, and ``exc.pmap_index``)."""
    text = repr(item)
    text = text if len(text) <= 80 else text[:77] + "..."
    _add_note(exc, f"pmap: fn raised on item {index}: {text}")
    with contextlib.suppress(AttributeError, TypeError):
        exc.pmap_index = index  # type: ignore[attr-defined]
    return exc


def _add_note(exc: BaseException, note: str) -> None:
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    else:  # Python 3.10: kept for tools that read __notes__
        exc.__notes__ = [*getattr(exc, "__notes__", []), note]  # type: ignore[attr-defined]


@contextlib.contextmanager
def _thread_limits(ex: Executor) -> Iterator[None]:
    """Threads share this process's BLAS/OpenMP/torch pools: size them cores // workers."""
    if ex.kind != "thread":
        yield
        return
    n = max(1, usable_cores() // ex.workers)
    torch = sys.modules.get("torch")
    old = torch.get_num_threads() if torch is not None else None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limits: Any = contextlib.nullcontext()
    else:
        limits = threadpool_limits(limits=n)
    try:
        if torch is not None:
            torch.set_num_threads(n)
        with limits:
            yield
    finally:
        if torch is not None and old is not None:
            torch.set_num_threads(old)


class _Progress:
    """A callable ``(done, total)`` or a rich bar (stderr, terminal only, after 1 s)."""

    def __init__(self, progress: bool | Callable[[int, int], None], total: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.callback = progress if callable(progress) else None
        self.enabled = progress is True and sys.stderr.isatty()
        self.total, self.done = total, 0
        self.clock, self.start = clock, clock()
        self.bar: Any = None
        self.active = self.callback is not None or self.enabled

    def advance(self, n: int, backend: str) -> None:
        self.done += n
        if self.callback is not None:
            self.callback(self.done, self.total)
        if not self.enabled:
            return
        if self.bar is None and self.clock() - self.start >= PROGRESS_AFTER_S:
            self._open(backend)
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done)

    def _open(self, backend: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(TextColumn(f"pmap [{backend}]"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TimeRemainingColumn(),
                            console=Console(stderr=True), transient=True)
        self.task = self.bar.add_task("pmap", total=self.total, completed=self.done)
        self.bar.start()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
