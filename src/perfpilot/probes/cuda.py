"""CUDA probes: synchronizations, host-to-device copies, GPU utilization, tensor cores.

* Synchronizations: ``torch.cuda.set_sync_debug_mode("warn")`` makes PyTorch warn at
  every synchronizing call (``.item()``, ``.cpu()``, ``nonzero``...); the warnings are
  intercepted (never printed), counted per user call site, and the sampler later says
  how much time those lines took.
* Host-to-device copies: ``Tensor.to``/``Tensor.cuda`` from CPU to CUDA are counted with
  their bytes, whether the source was pinned and whether ``non_blocking`` was asked.
* Utilization: NVML (``nvidia-ml-py``) is polled on the sampler thread.
* Tensor cores: :func:`calibrate_matmul` times an fp32 matmul against TF32 and bf16 on
  this GPU, so the fp32 rule's gain is measured rather than assumed.

Nothing here runs without CUDA; the rules that read these sections are tested on
synthetic records.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

from perfpilot.probes.frames import caller_site

_SYNC_TEXT = "synchronizing CUDA operation"


class CudaProbe:
    """Installed by the runner when ``torch.cuda.is_available()``."""

    def __init__(self, torch: Any, in_steady: Callable[[], bool],
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.torch, self.in_steady, self.clock = torch, in_steady, clock
        self.syncs: dict[tuple[Any, ...], int] = {}
        self.h2d = {"copies": 0, "bytes": 0, "pageable_bytes": 0, "pageable_copies": 0,
                    "blocking_copies": 0, "sites": {}}
        self.util: list[tuple[float, int, int]] = []
        self._nvml: Any = None
        self._undo: list[Callable[[], None]] = []
        self.errors: list[str] = []

    def install(self) -> None:
        for step in (self._install_sync, self._install_h2d, self._install_nvml):
            try:
                step()
            except Exception as e:  # a probe that cannot start is reported, not fatal
                self.errors.append(f"{step.__name__}: {type(e).__name__}: {e}")

    def uninstall(self) -> None:
        while self._undo:
            try:
                self._undo.pop()()
            except Exception:
                pass

    # ------------------------------------------------------------ syncs

    def _install_sync(self) -> None:
        torch = self.torch
        before = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("warn")
        warnings.filterwarnings("always", message=f".*{_SYNC_TEXT}.*")
        shown = warnings.showwarning

        def showwarning(message: Any, category: Any, filename: str, lineno: int,
                        file: Any = None, line: Any = None) -> None:
            if _SYNC_TEXT in str(message):
                site = caller_site(1)
                key = (tuple(site) if site else None, self.in_steady())
                self.syncs[key] = self.syncs.get(key, 0) + 1
                return
            shown(message, category, filename, lineno, file, line)

        warnings.showwarning = showwarning
        self._undo.append(lambda: setattr(warnings, "showwarning", shown))
        self._undo.append(lambda: torch.cuda.set_sync_debug_mode(before))

    # ------------------------------------------------------------ host-to-device

    def _install_h2d(self) -> None:
        torch = self.torch
        probe = self
        orig_to, orig_cuda = torch.Tensor.to, torch.Tensor.cuda

        def to(self: Any, *args: Any, **kwargs: Any) -> Any:
            out = orig_to(self, *args, **kwargs)
            if out is not self and self.device.type == "cpu" and out.device.type == "cuda":
                probe._count(self, bool(kwargs.get("non_blocking", False)))
            return out

        def cuda(self: Any, *args: Any, **kwargs: Any) -> Any:
            out = orig_cuda(self, *args, **kwargs)
            if self.device.type == "cpu":
                probe._count(self, bool(kwargs.get("non_blocking", False)))
            return out

        torch.Tensor.to, torch.Tensor.cuda = to, cuda
        self._undo.append(lambda: (setattr(torch.Tensor, "to", orig_to),
                                   setattr(torch.Tensor, "cuda", orig_cuda)))

    def _count(self, t: Any, non_blocking: bool) -> None:
        h = self.h2d
        nbytes = t.numel() * t.element_size()
        h["copies"] += 1
        h["bytes"] += nbytes
        if not t.is_pinned():
            h["pageable_copies"] += 1
            h["pageable_bytes"] += nbytes
            if len(h["sites"]) < 50 and h["pageable_copies"] <= 1000:
                site = caller_site(2)
                key = ":".join(map(str, site[:2])) if site else "?"
                h["sites"][key] = h["sites"].get(key, 0) + 1
        if not non_blocking:
            h["blocking_copies"] += 1

    # ------------------------------------------------------------ NVML

    def _install_nvml(self) -> None:
        import pynvml

        pynvml.nvmlInit()
        self._nvml = (pynvml, nvml_handle(pynvml, self.torch.cuda.current_device()))

    def sample_util(self) -> None:
        if self._nvml is None:
            return
        nv, handle = self._nvml
        try:
            rates = nv.nvmlDeviceGetUtilizationRates(handle)
        except Exception:
            return
        self.util.append((self.clock(), int(rates.gpu), 1 if self.in_steady() else 0))

    # ------------------------------------------------------------ output

    def section(self) -> dict[str, Any]:
        torch = self.torch
        dev = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(dev)
        steady_util = [u for _, u, s in self.util if s]
        syncs = [{"site": list(site) if site else None, "steady": steady, "count": n}
                 for (site, steady), n in sorted(self.syncs.items(), key=lambda kv: -kv[1])]
        return {
            "device": props.name, "capability": list(torch.cuda.get_device_capability(dev)),
            "total_memory_bytes": int(props.total_memory),
            "allow_tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "syncs": syncs[:50], "h2d": self.h2d,
            "utilization": {"samples": len(steady_util),
                            "mean": (sum(steady_util) / len(steady_util)
                                     if steady_util else None)},
            "errors": self.errors,
        }


def nvml_handle(nv: Any, torch_index: int, visible: str | None = None) -> Any:
    """The NVML handle of torch's device ``torch_index``: NVML counts all GPUs, torch only
    those in ``CUDA_VISIBLE_DEVICES`` (indices or ``GPU-...`` UUIDs)."""
    import os

    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    entries = [e.strip() for e in (visible or "").split(",") if e.strip()]
    if torch_index < len(entries):
        entry = entries[torch_index]
        if entry.isdigit():
            return nv.nvmlDeviceGetHandleByIndex(int(entry))
        return nv.nvmlDeviceGetHandleByUUID(entry)
    return nv.nvmlDeviceGetHandleByIndex(torch_index)


def calibrate_matmul(torch: Any, size: int = 4096, reps: int = 10) -> dict[str, Any]:
    """Seconds per ``size``x``size`` matmul in fp32, TF32 and bf16 on the current GPU."""
    a = torch.randn(size, size, device="cuda")
    prev = torch.backends.cuda.matmul.allow_tf32

    def timed(fn: Callable[[], Any]) -> float:
        fn()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        best = float("inf")
        for _ in range(3):
            start.record()
            for _ in range(reps):
                fn()
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end) / 1e3 / reps)
        return best

    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        fp32 = timed(lambda: a @ a)
        torch.backends.cuda.matmul.allow_tf32 = True
        tf32 = timed(lambda: a @ a)
        b = a.to(torch.bfloat16)
        bf16 = timed(lambda: b @ b)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev
    return {"size": size, "fp32_s": fp32, "tf32_s": tf32, "bf16_s": bf16,
            "tf32_factor": fp32 / tf32, "bf16_factor": fp32 / bf16}
