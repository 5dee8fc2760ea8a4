"""The instrumented training step: :class:`Trainer` and :class:`StepTiming`.

A :class:`Trainer` trains one workload under one plan and times every optimizer step in
phases (:data:`perfpilot.record.PHASES`):

``data``
    waiting for the next batch (``next(loader_iter)``, including epoch restarts)
``h2d``
    moving the batch to the device (``to_device``)
``forward``
    forward pass and loss, under autocast
``backward``
    ``loss.backward()`` (scaled when a GradScaler is used)
``optimizer``
    lr update, ``optimizer.step()`` (through the scaler), ``zero_grad``
``other``
    everything else between two step boundaries (bookkeeping, loop overhead)

The phases of a step are consecutive intervals between marks, so they add up to the
step's total exactly. On the CPU a mark is ``time.perf_counter()`` (or an injected
clock). On CUDA a mark is a ``torch.cuda.Event`` recorded on the current stream, so the
phases are on the GPU timeline and nothing synchronizes per step: steps queue up as
pending and are resolved when their last event has completed (polled without blocking)
or, at the latest, at the end of :meth:`Trainer.train_steps` (one sync per call). Losses
stay on the device, are copied to pinned host memory without blocking and are read when
their step resolves, which is also when a non-finite loss is detected. On CUDA, ``data``
is therefore the *exposed* data wait (the GPU idled while the host waited for the batch);
the host-side wait is kept as ``data_host``.
"""

from __future__ import annotations

import functools
import math
import os
import random
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from perfpilot.apply_plan import (
    autocast,
    batch_size_of,
    check_plan,
    lr_at,
    lr_scales,
    make_loader,
    make_scaler,
    prepare_model,
    resolve_device,
    set_lr,
    setup_process,
    to_device,
    uses_channels_last,
)
from perfpilot.engine.timers import Clock, make_timer
from perfpilot.errors import WorkloadError
from perfpilot.plan import Plan
from perfpilot.record import PHASES
from perfpilot.workload import (
    Workload,
    build_dataset,
    build_model,
    build_optimizer,
    checked_loss,
)


class NonFiniteError(FloatingPointError):
    """A loss or metric that is NaN or infinite: the training diverged.

    ``what`` is ``"loss"`` or ``"metric"``, ``step`` the 1-based optimizer step (for a
    metric: the last step before the evaluation), ``value`` the offending number.
    ``timings``: the steps of the same :meth:`Trainer.train_steps` call that completed
    before it. :func:`perfpilot.engine.run` sets ``record`` to what was measured before
    it, when at least one step completed.
    """

    def __init__(self, message: str, *, what: str = "loss", step: int = 0,
                 value: float = math.nan) -> None:  # defaults: pickle rebuilds from args
        super().__init__(message)
        self.what, self.step, self.value = what, step, value
        self.timings: list[StepTiming] = []
        self.record: Any = None


@dataclass(frozen=True)
class StepTiming:
    """One optimizer step (``plan.grad_accum`` micro-batches), in seconds.

    The six phases add up to ``total``. ``loss`` is the mean over the micro-batches.
    ``data_host`` is the host time blocked in ``next(loader)`` (equal to ``data`` on CPU).
    """

    data: float
    h2d: float
    forward: float
    backward: float
    optimizer: float
    other: float
    total: float
    samples: int
    loss: float
    data_host: float = 0.0

    def phases(self) -> dict[str, float]:
        return {p: getattr(self, p) for p in PHASES}


@dataclass
class _Pending:
    """A step whose timings may still be on the GPU."""

    number: int  # 1-based optimizer step
    marks: list[tuple[str, Any]]  # (phase of the interval ending here, mark); first is start
    loss: Any  # host tensor (filled asynchronously on CUDA)
    samples: int
    data_host: float


# ---------------------------------------------------------------- RNG isolation


def _rng_get(cuda_device: Any) -> tuple[Any, ...]:
    import numpy as np
    import torch

    cuda = torch.cuda.get_rng_state(cuda_device) if cuda_device is not None else None
    return torch.get_rng_state(), cuda, random.getstate(), np.random.get_state()


def _rng_set(state: tuple[Any, ...], cuda_device: Any) -> None:
    import numpy as np
    import torch

    cpu, cuda, py, npy = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, cuda_device)
    random.setstate(py)
    np.random.set_state(npy)


def _seed_all(seed: int) -> None:
    import numpy as np
    import torch

    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


# ---------------------------------------------------------------- memory


RSS_SAMPLE_EVERY_S = 0.01  # RSS reads cost ~15 us; fast steps sample at most 100/s


@functools.cache
def _process(pid: int) -> Any:
    import psutil

    return psutil.Process(pid)  # cached: building one reads /proc/<pid>/stat


def _rss_bytes() -> int:
    return int(_process(os.getpid()).memory_info().rss)


def _ru_maxrss_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(value if sys.platform == "darwin" else value * 1024)


# ---------------------------------------------------------------- the trainer


class Trainer:
    """One model, optimizer and loader under one plan; reusable for repeated measurement.

    ``seed`` (default ``workload.seed``) seeds torch, ``random``, numpy and the loader's
    shuffling, so two trainers with the same plan and seed produce the same losses. The
    trainer owns its RNG streams: they are swapped in while it trains or evaluates and
    swapped out afterwards, so interleaved trainers (A B A B comparisons) and the caller
    do not disturb each other. Process-wide knobs (threads, TF32...) are re-applied at each
    :meth:`train_steps` for the same reason. ``check`` asks :mod:`perfpilot.devices`
    whether the machine can run the plan first. ``clock`` replaces ``time.perf_counter``
    for host timings (tests inject one).

    ``step``, ``samples`` and ``train_time_s`` (sum of step totals, evaluation excluded)
    are cumulative; ``eval_time_s`` is the time spent in :meth:`evaluate`.
    """

    def __init__(self, workload: Workload, plan: Plan, *, seed: int | None = None,
                 check: bool = True, clock: Clock | None = None) -> None:
        self.workload, self.plan = workload, plan
        self.seed = workload.seed if seed is None else seed
        self.clock = clock or time.perf_counter
        self.step = self.samples = self.epoch = 0
        self.train_time_s = self.eval_time_s = 0.0
        if check:
            check_plan(plan)
        setup_process(plan)
        self.device = resolve_device(plan)
        self._cuda = self.device if self.device.type == "cuda" else None
        outer = _rng_get(self._cuda)
        try:
            _seed_all(self.seed)
            self._build()
            self._rng = _rng_get(self._cuda)
        finally:
            _rng_set(outer, self._cuda)
        self._timer = make_timer(self.device, self.clock)
        self._pending: deque[_Pending] = deque()
        self._ru_start = _ru_maxrss_bytes()
        self.peak_rss_bytes, self._rss_at = _rss_bytes(), time.monotonic()

    def _build(self) -> None:
        w, plan = self.workload, self.plan
        model = build_model(w)
        self._channels_last = uses_channels_last(model, plan)
        self.model = prepare_model(model, plan)
        self.model.train()
        self.optimizer = build_optimizer(w, self.model.parameters(), plan.lr)
        self._lr_scales = lr_scales(self.optimizer)
        self.loader = make_loader(build_dataset(w, "train_data"), plan,
                                  collate_fn=w.collate_fn, seed=self.seed)
        self.scaler = make_scaler(plan)
        autocast(plan)  # fails now, not at the first step, on a precision the device lacks
        self._non_blocking = plan.pin_memory and self.device.type == "cuda"
        self._cudagraph_step: Callable[[], None] | None = None
        self._iter: Iterator[Any] | None = None
        self._val_loader: Any = None
        if self._cuda is not None:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
            if plan.compile in ("reduce-overhead", "max-autotune"):  # these use CUDA graphs
                self._cudagraph_step = torch.compiler.cudagraph_mark_step_begin

    # -------------------------------------------------- context

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Shut down loader workers (persistent ones would linger) and drop pending steps.
        Idempotent; the model and optimizer stay usable."""
        for it in (self._iter, getattr(getattr(self, "loader", None), "_iterator", None),
                   getattr(self._val_loader, "_iterator", None)):
            if hasattr(it, "_shutdown_workers"):
                it._shutdown_workers()  # persistent workers would otherwise linger
        self._iter = self._val_loader = None
        self._pending.clear()

    @contextmanager
    def _active(self) -> Iterator[None]:
        """This trainer's process settings, device and RNG streams, for the duration."""
        import torch

        setup_process(self.plan)
        outer = _rng_get(self._cuda)
        _rng_set(self._rng, self._cuda)
        try:
            if self._cuda is not None:
                with torch.cuda.device(self.device):
                    yield
            else:
                yield
        finally:
            self._rng = _rng_get(self._cuda)
            _rng_set(outer, self._cuda)

    # -------------------------------------------------- training

    def train_steps(self, n: int) -> list[StepTiming]:
        """Run ``n`` optimizer steps and return their timings, in order.

        On CUDA this synchronizes once, at the end. Raises :class:`NonFiniteError` (a
        ``FloatingPointError``: "non-finite loss at step N") when a loss is NaN or infinite.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        out: list[StepTiming] = []
        try:
            with self._active():
                mark = self._timer.mark()
                for _ in range(n):
                    mark = self._one_step(mark)
                    out.extend(self._resolve(block=False))
                out.extend(self._resolve(block=True))
        except NonFiniteError as e:
            e.timings = out  # the steps of this call that resolved before it
            raise
        return out

    def _one_step(self, start: Any) -> Any:
        """Enqueue one optimizer step; returns its end mark (the next step's start)."""
        marks: list[tuple[str, Any]] = [("", start)]
        loss_sum, samples, data_host = None, 0, 0.0
        for _ in range(self.plan.grad_accum):
            loss, n, waited = self._micro_step(marks)
            samples, data_host = samples + n, data_host + waited
            loss_sum = loss if loss_sum is None else loss_sum + loss
        self._optimizer_step()
        marks.append(("optimizer", self._timer.mark()))
        self.step += 1
        self._sample_memory()
        loss_host = loss_sum.to("cpu", non_blocking=True) if self._cuda else loss_sum
        end = self._timer.mark()  # after the loss copy: once it completes, the loss is here
        marks.append(("other", end))
        self._pending.append(_Pending(self.step, marks, loss_host, samples, data_host))
        return end

    def _micro_step(self, marks: list[tuple[str, Any]]) -> tuple[Any, int, float]:
        """One micro-batch: data, copy, forward, backward. Returns the detached loss
        (already divided by grad_accum), the samples and the host time waiting for data."""
        t = self._timer
        if self._cudagraph_step is not None:  # tells CUDA graph trees an iteration begins
            self._cudagraph_step()
        marks.append(("other", t.mark()))
        h0 = self.clock()
        batch = self._next_batch()
        waited = self.clock() - h0
        marks.append(("data", t.mark()))
        batch = to_device(batch, self.device, self._non_blocking,
                          channels_last=self._channels_last)
        marks.append(("h2d", t.mark()))
        loss = self._forward(batch)
        marks.append(("forward", t.mark()))
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        marks.append(("backward", t.mark()))
        return loss.detach(), batch_size_of(batch), waited

    def _next_batch(self) -> Any:
        try:
            if self._iter is None:
                self._iter = iter(self.loader)
            try:
                return next(self._iter)
            except StopIteration:  # a new epoch; the loader is never empty
                self.epoch += 1
                self._iter = iter(self.loader)
                return next(self._iter)
        except Exception as e:
            raise WorkloadError(
                f"workload {self.workload.name!r}: reading a batch from train_data() raised "
                f"{type(e).__name__}: {e}"
            ) from e

    def _forward(self, batch: Any) -> Any:
        with autocast(self.plan):
            loss = checked_loss(self.workload, self.model, batch)
        if not loss.requires_grad:
            raise WorkloadError(
                f"workload {self.workload.name!r}: loss(model, batch) does not depend on the "
                "model's parameters (it has no grad_fn)"
            )
        return loss / self.plan.grad_accum if self.plan.grad_accum > 1 else loss

    def _optimizer_step(self) -> None:
        set_lr(self.optimizer, lr_at(self.step, self.plan), self._lr_scales)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _sample_memory(self) -> None:
        now = time.monotonic()  # the real clock: this is about overhead, not measurement
        if now - self._rss_at >= RSS_SAMPLE_EVERY_S:
            self._rss_at = now
            self.peak_rss_bytes = max(self.peak_rss_bytes, _rss_bytes())

    def _resolve(self, block: bool) -> list[StepTiming]:
        """Turn pending steps whose marks have completed into timings, oldest first."""
        if block and self._pending:
            self._timer.wait(self._pending[-1].marks[-1][1])
        out = []
        while self._pending and self._timer.done(self._pending[0].marks[-1][1]):
            out.append(self._timing(self._pending.popleft()))
        return out

    def _timing(self, p: _Pending) -> StepTiming:
        phases = dict.fromkeys(PHASES, 0.0)
        for (_, a), (label, b) in zip(p.marks, p.marks[1:], strict=False):
            phases[label] += self._timer.seconds(a, b)
        loss = float(p.loss)
        if not math.isfinite(loss):
            self._pending.clear()
            raise NonFiniteError(
                f"non-finite loss at step {p.number} ({loss}) with plan "
                f"precision={self.plan.precision}, lr={self.plan.lr}",
                what="loss", step=p.number, value=loss,
            )
        total = sum(phases.values())
        self.samples += p.samples
        self.train_time_s += total
        return StepTiming(**phases, total=total, samples=p.samples, loss=loss,
                          data_host=p.data_host)

    # -------------------------------------------------- evaluation and memory

    def evaluate(self, max_batches: int | None = None) -> float | None:
        """The validation metric (sample-weighted mean over ``val_data``), or None when
        the workload has no metric. Runs in eval mode under ``no_grad`` and autocast; its
        time goes to ``eval_time_s``, never to ``train_time_s``."""
        w = self.workload
        if w.metric is None or w.val_data is None:
            return None
        import torch

        t0 = self.clock()
        with self._active(), torch.no_grad():
            if self._val_loader is None:
                self._val_loader = make_loader(
                    build_dataset(w, "val_data"), self.plan, shuffle=False,
                    collate_fn=w.collate_fn, seed=self.seed, drop_last=False)
            self.model.eval()
            try:
                value = self._metric_mean(max_batches)
            finally:
                self.model.train()
        self.eval_time_s += self.clock() - t0
        return value

    def _metric_mean(self, max_batches: int | None) -> float:
        total, count = 0.0, 0
        for i, batch in enumerate(self._val_loader):
            if max_batches is not None and i >= max_batches:
                break
            n = batch_size_of(batch)
            batch = to_device(batch, self.device, self._non_blocking,
                                 channels_last=self._channels_last)
            with autocast(self.plan):
                total += self._metric(batch) * n
            count += n
        value = total / max(count, 1)
        if not math.isfinite(value):
            raise NonFiniteError(f"non-finite metric ({value}) after step {self.step}",
                                 what="metric", step=self.step, value=value)
        return value

    def _metric(self, batch: Any) -> float:
        w = self.workload
        try:
            return float(w.metric(self.model, batch))  # type: ignore[misc]
        except Exception as e:
            raise WorkloadError(
                f"workload {w.name!r}: metric(model, batch) raised {type(e).__name__}: {e}"
            ) from e

    def peak_memory_bytes(self) -> int:
        """Peak device memory: ``max_memory_allocated`` on CUDA; on the CPU the peak RSS,
        sampled after steps (at most every 10 ms) and raised to ``ru_maxrss`` when the
        process peak grew during this trainer's life (that catches spikes between samples)."""
        if self._cuda is not None:
            import torch

            return int(torch.cuda.max_memory_allocated(self.device))
        ru = _ru_maxrss_bytes()
        grew = ru is not None and self._ru_start is not None and ru > self._ru_start
        return max(self.peak_rss_bytes, ru if grew else 0)  # type: ignore[arg-type]

    def memory_info(self) -> dict[str, int | None]:
        info: dict[str, int | None] = {"peak_rss_sampled_bytes": self.peak_rss_bytes,
                                       "ru_maxrss_bytes": _ru_maxrss_bytes()}
        if self._cuda is not None:
            info["cuda_max_allocated_bytes"] = self.peak_memory_bytes()
        return info

    @property
    def timer_name(self) -> str:
        return self._timer.name
