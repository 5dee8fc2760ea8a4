"""A short profiler window (kineto, as ``torch.profiler``): the top operators of a few
steady steps.

The window opens at a step boundary once warm-up is over and a couple of steady steps
and :attr:`OpWindow.min_steady_s` seconds have run (a run shorter than that gets no
operator profile: kineto's start-up would be a large part of it), and closes after
:attr:`OpWindow.steps` boundaries or :attr:`OpWindow.max_s` seconds. Its steps are
flagged so step statistics leave them out (the profiler slows every op down). Raw
kineto events are aggregated directly (about 1 us per event; the
``FunctionEvent``/``key_averages`` route costs ~50 us per event), into operator self and
total time per device. On CUDA the window also yields kernel time, memcpy kinds
("Pageable -> Device"...) and the GEMM kernels used, for the tensor-core rule.

Kineto prints ``profiler_start``/``profiler_stop`` lines on stderr (fd 2), and a CUDA build
on a machine without a driver ``gpuGetDeviceCount failed with code 35``; they are filtered
out so the user's stderr passes through unchanged.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable
from typing import Any

from perfpilot.probes.steps import StepTracker

TOP_OPS = 25
_RANK = {"optimizer": 0, "backward": 1, "data": 2, "forward": 3}
# Kineto's start/stop markers, and the line a CUDA build of torch prints when the profiler
# starts on a machine without a usable NVIDIA driver (code 35, cudaErrorInsufficientDriver;
# harmless: the window goes on CPU-only). Either logger's prefix ("E1205 ...] ",
# "ERROR:2026-... DeviceProperties.cpp:47] ") may precede it.
_KINETO_NOISE = re.compile(rb"^(?:USDT:.*profiler_(?:start|stop)"
                           rb"|(?:.*\] )?gpuGetDeviceCount failed with code \d+)\s*$")
_GEMM = re.compile(r"gemm|matmul|cutlass|xmma|wgmma|sm\d+_.*mma|ampere_|hopper_|volta_|turing_",
                   re.I)
_TENSOR_CORE = re.compile(r"tf32|bf16|fp16|f16|h884|h1688|s1688|s16816|hmma|mma|xmma|wgmma|"
                          r"tensorop|i8816", re.I)


class _QuietFd2:
    """Redirect fd 2 to a temp file for a moment; replay what is not kineto noise."""

    def __enter__(self) -> _QuietFd2:
        self.saved = os.dup(2)
        self.tmp = tempfile.TemporaryFile()
        os.dup2(self.tmp.fileno(), 2)
        return self

    def __exit__(self, *exc: object) -> None:
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.tmp.seek(0)
        kept = [ln for ln in self.tmp.read().splitlines(keepends=True)
                if not _KINETO_NOISE.match(ln)]
        self.tmp.close()
        if kept:
            os.write(2, b"".join(kept))


class OpWindow:
    """Opens and closes the profiler at step boundaries (see the module docstring)."""

    def __init__(self, tracker: StepTracker, *, steps: int = 3, max_s: float = 0.3,
                 after_steady: int = 2, min_steady_s: float = 0.5, cuda: bool = False,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.t = tracker
        self.steps, self.max_s, self.after_steady = steps, max_s, after_steady
        self.min_steady_s = min_steady_s
        self.cuda = cuda
        self.clock = clock
        self.kind: str | None = None
        self._seen = 0
        self._in = 0
        self._t0 = 0.0
        self.prof: Any = None
        self.results: Any = None
        self.state = "waiting"  # waiting | open | done | failed
        self.error = ""
        self.window_s = 0.0
        self.window_steps = 0

    def on_boundary(self, kind: str) -> None:
        """Count boundaries of the best kind seen (optimizer > backward > data > forward)."""
        if self.state not in ("waiting", "open") or self.t.warmup_end is None:
            return
        if self.state == "waiting":
            if self.kind is None or _RANK.get(kind, 9) < _RANK.get(self.kind, 9):
                self.kind, self._seen = kind, 0
            if kind == self.kind:
                self._seen += 1
                steady_s = self.clock() - (self.t.warmup_end or self.clock())
                if self._seen > self.after_steady and steady_s >= self.min_steady_s:
                    self._open()
        elif kind == self.kind:
            self._in += 1
            if self._in >= self.steps or self.clock() - self._t0 >= self.max_s:
                self.close()

    def _open(self) -> None:
        try:
            # torch.autograd.profiler, not torch.profiler.profile: the latter imports
            # torch.distributed on start (measured 0.5-2 s for a script that had not
            # imported it yet), which would land in the user's run.
            from torch.autograd import profiler as autograd_profiler

            self.prof = autograd_profiler.profile(use_device="cuda" if self.cuda else None)
            with _QuietFd2():
                self.prof._prepare_trace()
                self.prof._start_trace()
        except Exception as e:
            self.state, self.error = "failed", f"{type(e).__name__}: {e}"
            return
        self.state = "open"
        self.t.skip()
        self.t.profiling = True
        self._t0 = self.clock()

    def close(self) -> None:
        """Stop the profiler (idempotent); called at the last window boundary or at exit."""
        if self.state != "open":
            return
        self.window_s = self.clock() - self._t0
        self.window_steps = self._in
        try:
            import torch.autograd

            with _QuietFd2():
                # Not prof.__exit__: that parses every event into Python objects.
                self.results = torch.autograd._disable_profiler()
            self.state = "done"
        except Exception as e:
            self.state, self.error = "failed", f"{type(e).__name__}: {e}"
        self.t.profiling = False
        self.t.skip()

    # ------------------------------------------------------------ results

    def section(self) -> dict[str, Any]:
        """``hot_ops`` section: operators by self time, plus CUDA kernel facts."""
        out: dict[str, Any] = {"state": self.state, "error": self.error,
                               "window_s": round(self.window_s, 6),
                               "steps": self.window_steps, "kind": self.kind, "ops": []}
        if self.state != "done":
            return out
        try:
            events = self.results.events()
            out.update(summarize_events(events, self.window_steps))
        except Exception as e:
            out["state"], out["error"] = "failed", f"{type(e).__name__}: {e}"
        return out


def _device(e: Any) -> str:
    name = str(e.device_type()).lower()
    return "cuda" if "cuda" in name else "cpu"


def summarize_events(events: list[Any], steps: int) -> dict[str, Any]:
    """Aggregate raw kineto events: self/total time per (device, op name)."""
    cpu = [e for e in events if _device(e) == "cpu"]
    gpu = [e for e in events if _device(e) == "cuda"]
    agg: dict[tuple[str, str], list[float]] = {}
    for dev, selfs in (("cpu", _self_times(cpu)), ("cuda", _self_times(gpu, nest=False))):
        for name, total, self_t in selfs:
            a = agg.setdefault((dev, name), [0, 0.0, 0.0])
            a[0] += 1
            a[1] += total
            a[2] += self_t
    ops = [{"name": name, "device": dev, "count": int(c), "total_s": round(tot, 9),
            "self_s": round(slf, 9), "per_step": round(c / max(steps, 1), 3)}
           for (dev, name), (c, tot, slf) in agg.items()]
    ops.sort(key=lambda o: o["self_s"], reverse=True)
    cpu_ops = [o for o in ops if o["device"] == "cpu" and not _is_wrapper(o["name"])]
    result: dict[str, Any] = {
        "ops": ops[:TOP_OPS],
        "cpu_self_s": round(sum(o["self_s"] for o in cpu_ops), 9),
        "aten_ops_per_step": round(sum(o["count"] for o in cpu_ops
                                       if o["name"].startswith("aten::"))
                                   / max(steps, 1), 2),
    }
    if gpu:
        result["cuda"] = _cuda_facts([o for o in ops if o["device"] == "cuda"])
    return result


def _is_wrapper(name: str) -> bool:
    return name.startswith(("ProfilerStep", "Optimizer.", "## ", "<built-in"))


def _self_times(events: list[Any], nest: bool = True) -> list[tuple[str, float, float]]:
    """(name, total_s, self_s) per event; self excludes children on the same thread."""
    rows = []
    by_thread: dict[int, list[Any]] = {}
    for e in events:
        by_thread.setdefault(e.start_thread_id() if nest else 0, []).append(e)
    for evs in by_thread.values():
        evs.sort(key=lambda e: (e.start_ns(), -e.duration_ns()))
        stack: list[list[Any]] = []  # [end_ns, name, duration_ns, child_ns]
        for e in evs:
            start, dur = e.start_ns(), e.duration_ns()
            while nest and stack and stack[-1][0] <= start:
                rows.append(_row(stack.pop()))
            if nest and stack:
                stack[-1][3] += dur
            stack.append([start + dur, e.name(), dur, 0])
            if not nest:
                rows.append(_row(stack.pop()))
        while stack:
            rows.append(_row(stack.pop()))
    return rows


def _row(item: list[Any]) -> tuple[str, float, float]:
    _, name, dur, child = item
    return name, dur / 1e9, max(dur - child, 0) / 1e9


def _cuda_facts(ops: list[dict[str, Any]]) -> dict[str, Any]:
    memcpy = {o["name"]: o["total_s"] for o in ops if o["name"].startswith(("Memcpy", "Memset"))}
    kernels = [o for o in ops if not o["name"].startswith(("Memcpy", "Memset"))]
    gemm = [o for o in kernels if _GEMM.search(o["name"])]
    gemm_tc = [o for o in gemm if _TENSOR_CORE.search(o["name"])]
    return {
        "kernel_s": round(sum(o["total_s"] for o in kernels), 9),
        "memcpy_s": memcpy,
        "pageable_h2d_s": round(sum(v for k, v in memcpy.items()
                                    if "HtoD" in k and "Pageable" in k), 9),
        "gemm_s": round(sum(o["total_s"] for o in gemm), 9),
        "gemm_tensor_core_s": round(sum(o["total_s"] for o in gemm_tc), 9),
        "gemm_kernels": [o["name"][:120] for o in gemm[:8]],
    }
