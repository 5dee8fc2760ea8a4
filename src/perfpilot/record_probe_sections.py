"""The typed sections of a :class:`~perfpilot.record.RunRecord` that the torch probes fill.

The probes run inside the profiled process and write plain JSON (see
:mod:`perfpilot.probes`); :func:`perfpilot.probes.assemble.build_record` reads it into these
frozen dataclasses, so analysis and renderers read attributes, never JSON keys. Each
section's ``from_dict`` accepts the JSON form (lists where the value holds tuples) and
ignores keys it does not know, like those in :mod:`perfpilot.record_sections`; the JSON
keys are the probes' own, so records written before these types existed load unchanged.

Who fills what:

* :mod:`perfpilot.probes.hooks` / :mod:`~perfpilot.probes.loader_hooks`:
  :class:`LoaderInfo` (``loaders``), :class:`IoCall` (``io``), :class:`RootModule`
  (``roots``), :class:`OptimizerInfo` (``optimizers``), :class:`SetThreadsCall`
  (``set_num_threads``), :class:`GradInEval` (``grad_in_eval``);
* :mod:`perfpilot.probes.inject`: :class:`Injection` (``injection``);
* :mod:`perfpilot.probes.opwindow`: :class:`HotOps` (``hot_ops``);
* :mod:`perfpilot.probes.cuda`: :class:`CudaInfo` (``cuda``);
* the runner's calibrations (:mod:`perfpilot.probes.threads`, ``calibrate_matmul``):
  :class:`Calibration` (``calibration``).

A ``site`` is where user code made the call: ``(file, line, function)``, or None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from perfpilot.record_sections import Frame, Section, build


def site_of(value: Any) -> Frame | None:
    """A ``[file, line, function]`` JSON site as a :data:`Frame` (None stays None)."""
    if not value:
        return None
    file, line, *rest = value
    return (str(file), int(line), str(rest[0]) if rest else "")


# ---------------------------------------------------------------- hooks


@dataclass(frozen=True)
class LoaderInfo(Section):
    """One ``DataLoader``: its settings, where it was built, and what it delivered.

    ``role``: ``train``, ``eval``, ``unknown`` (iterated, role not seen) or ``unused``;
    ``fetch_s``: time waiting in ``next()``; ``iter_s``: time in ``iter()`` (worker start).
    """

    id: int | None = None
    dataset: str = ""
    dataset_len: int | None = None
    batch_size: int | None = None
    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = False
    prefetch_factor: int | None = None
    site: Frame | None = None
    batches: int = 0
    samples: int = 0
    fetch_s: float = 0.0
    iters: int = 0
    iter_s: float = 0.0
    role: str = "unknown"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoaderInfo:
        return build(cls, d, site=site_of)


@dataclass(frozen=True)
class IoCall(Section):
    """Hooked file I/O (``torch.save``, ``pickle.load``...) at one site in one phase
    (``startup``, ``warmup``, ``steady``, ``eval``); ``kind`` is ``read`` or ``write``."""

    call: str
    kind: str = ""
    site: Frame | None = None
    phase: str = ""
    count: int = 0
    seconds: float = 0.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IoCall:
        return build(cls, d, site=site_of)


@dataclass(frozen=True)
class RootModule(Section):
    """A module called while no other module ran (a model, a loss), by class name.

    ``role``: ``"model"``, or ``"loss"`` for a loss class or a parameter-free module (its
    time is forward time; it never starts a step). ``batch_dim``: the input dimension that
    holds the batch, and ``batch_dim_from`` how that was inferred (see docs/profile.md)."""

    type: str
    has_params: bool = False
    calls: int = 0
    role: str = "model"
    batch_dim: int = 0
    batch_dim_from: str = ""


@dataclass(frozen=True)
class OptimizerInfo(Section):
    """An optimizer that stepped: class name, steps, parameter groups."""

    type: str
    steps: int = 0
    groups: int = 0


@dataclass(frozen=True)
class SetThreadsCall(Section):
    """A ``torch.set_num_threads(value)`` call by user code."""

    value: int
    site: Frame | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SetThreadsCall:
        return build(cls, d, site=site_of)


@dataclass(frozen=True)
class Injection(Section):
    """What the runner did with a script plan's changes (:mod:`perfpilot.probes.inject`):
    ``applied`` knob -> what was done, ``refused`` knob -> why not (a refused knob
    changed nothing). Both empty when nothing was asked."""

    applied: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GradInEvalCall(Section):
    """Forwards of a module in ``eval()`` mode with grad on, from one site;
    ``then_backward`` of them were followed by a backward (so grad was needed)."""

    module: str
    site: Frame | None = None
    calls: int = 0
    then_backward: int = 0

    @property
    def without_backward(self) -> int:
        return self.calls - self.then_backward

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GradInEvalCall:
        return build(cls, d, site=site_of)


@dataclass(frozen=True)
class GradInEval(Section):
    """Grad-mode eval forwards (most calls first) and, for a few re-run both ways, the
    measured time with grad over the time without (``grad_over_nograd``)."""

    calls: tuple[GradInEvalCall, ...] = ()
    grad_over_nograd: tuple[float, ...] = ()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GradInEval:
        return build(cls, d, calls=lambda cs: tuple(GradInEvalCall.from_dict(c) for c in cs),
                     grad_over_nograd=lambda rs: tuple(float(r) for r in rs))


# ---------------------------------------------------------------- operator window


@dataclass(frozen=True)
class HotOp(Section):
    """One operator (or CUDA kernel) over the profiler window: calls and seconds."""

    name: str
    device: str = "cpu"
    count: int = 0
    total_s: float = 0.0
    self_s: float = 0.0
    per_step: float = 0.0


@dataclass(frozen=True)
class KernelFacts(Section):
    """What the CUDA kernels of the profiler window say: kernel and copy seconds (by
    memcpy kind), GEMM seconds and the part on tensor cores, the GEMM kernels' names."""

    kernel_s: float = 0.0
    memcpy_s: dict[str, float] = field(default_factory=dict)
    pageable_h2d_s: float = 0.0
    gemm_s: float = 0.0
    gemm_tensor_core_s: float = 0.0
    gemm_kernels: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KernelFacts:
        return build(cls, d, gemm_kernels=tuple)


@dataclass(frozen=True)
class HotOps(Section):
    """The profiler window (see :mod:`perfpilot.probes.opwindow`): ``state`` (``done``,
    ``failed``... or ``not run``), top operators by self time over ``steps`` steps,
    CPU operator self time, ATen operators per step, and ``cuda`` kernel facts."""

    state: str = "not run"
    error: str | None = None
    window_s: float = 0.0
    steps: int = 0
    kind: str | None = None
    ops: tuple[HotOp, ...] = ()
    cpu_self_s: float = 0.0
    aten_ops_per_step: float | None = None
    cuda: KernelFacts | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HotOps:
        return build(cls, d, ops=lambda os_: tuple(HotOp.from_dict(o) for o in os_),
                     cuda=KernelFacts.from_dict)


# ---------------------------------------------------------------- CUDA


@dataclass(frozen=True)
class Sync(Section):
    """Synchronizing CUDA calls from one site, in the steady window or not."""

    site: Frame | None = None
    steady: bool = False
    count: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sync:
        return build(cls, d, site=site_of)


@dataclass(frozen=True)
class HostToDevice(Section):
    """CPU-to-CUDA tensor copies: all, from pageable memory, blocking; ``sites`` counts
    pageable copies per ``file:line``."""

    copies: int = 0
    bytes: int = 0
    pageable_bytes: int = 0
    pageable_copies: int = 0
    blocking_copies: int = 0
    sites: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class GpuUtilization(Section):
    """NVML utilization over the steady window: ``samples`` polls, ``mean`` percent."""

    samples: int = 0
    mean: float | None = None


@dataclass(frozen=True)
class GpuMemory(Section):
    """Allocator peaks and capacity of the device the run used."""

    device: int | None = None
    max_allocated_bytes: int | None = None
    max_reserved_bytes: int | None = None
    total_bytes: int | None = None
    free_bytes: int | None = None


@dataclass(frozen=True)
class CudaInfo(Section):
    """What the CUDA probe saw (empty, ``measured`` False, on a run without CUDA)."""

    device: str = ""
    capability: tuple[int, ...] = ()
    total_memory_bytes: int = 0
    allow_tf32_matmul: bool = False
    float32_matmul_precision: str = ""
    syncs: tuple[Sync, ...] = ()
    h2d: HostToDevice = field(default_factory=HostToDevice)
    utilization: GpuUtilization = field(default_factory=GpuUtilization)
    errors: tuple[str, ...] = ()
    memory: GpuMemory = field(default_factory=GpuMemory)

    @property
    def measured(self) -> bool:
        """The run used CUDA and the probe reported."""
        return bool(self.device)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CudaInfo:
        return build(cls, d, capability=lambda c: tuple(int(x) for x in c),
                     syncs=lambda ss: tuple(Sync.from_dict(s) for s in ss),
                     h2d=HostToDevice.from_dict, utilization=GpuUtilization.from_dict,
                     errors=tuple, memory=GpuMemory.from_dict)


# ---------------------------------------------------------------- calibration


@dataclass(frozen=True)
class ThreadCalibration(Section):
    """A training-like op mix timed at ``current`` threads and fewer: the best count
    measured faster (``target``, ``factor`` with its interval over ``n`` rounds), or
    ``factor`` 1.0; ``tried`` maps each count tried (as text) to its measured speedup.
    ``free_cores``: the usable cores other processes and the loader workers left free when
    it was timed (None: they did not compete); ``other_cores``/``worker_cores`` the cores
    each kept busy over the steady window."""

    current: int = 0
    target: int = 0
    factor: float = 1.0
    ci_low: float = 1.0
    ci_high: float = 1.0
    n: int = 0
    tried: dict[str, float] = field(default_factory=dict)
    free_cores: int | None = None
    other_cores: float | None = None
    worker_cores: float | None = None


@dataclass(frozen=True)
class MatmulCalibration(Section):
    """Seconds per ``size``x``size`` matmul in fp32, TF32 and bf16 on the GPU, and the
    TF32 and bf16 speedups over fp32."""

    size: int = 0
    fp32_s: float = 0.0
    tf32_s: float = 0.0
    bf16_s: float = 0.0
    tf32_factor: float = 1.0
    bf16_factor: float = 1.0


@dataclass(frozen=True)
class Calibration(Section):
    """Measurements the runner made after the script ended: PyTorch's per-operator
    dispatch cost, thread counts (when torch used more threads than cores), matmul
    precisions (fp32 GEMMs on tensor-core hardware); ``error`` if one failed,
    ``seconds`` they took."""

    op_overhead_s: float | None = None
    threads: ThreadCalibration | None = None
    matmul: MatmulCalibration | None = None
    error: str | None = None
    seconds: float = 0.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        return build(cls, d, threads=ThreadCalibration.from_dict,
                     matmul=MatmulCalibration.from_dict)


# Cores other processes keep busy on average before a run counts as measured on a busy
# machine (its timings and thread advice then hold only at that load).
BUSY_OTHER_CORES = 0.5


@dataclass(frozen=True)
class CpuUse(Section):
    """CPU use while the run was measured (:mod:`perfpilot.probes.cpu`), over ``span_s``
    seconds of the ``window`` (``"steady"``: from the end of warm-up; ``"run"``: the whole
    run when it had no steady steps). ``user_s``/``system_s``: the process's own CPU
    seconds; ``children_s``: its child processes' (DataLoader workers);
    ``other_processes_s``: every other process's on the machine; page faults of the
    process; the 1-minute load average at both ends; ``allocator``: the process's
    ``malloc`` (``glibc``, ``jemalloc``..., ``""`` unknown) and ``allocator_env`` its
    settings from the environment (:func:`perfpilot.probes.cpu.allocator`).
    Empty (``span_s`` 0) when not measured; ``error`` says why a reading failed."""

    span_s: float = 0.0
    window: str = ""
    user_s: float = 0.0
    system_s: float = 0.0
    children_s: float = 0.0
    other_processes_s: float = 0.0
    minor_faults: int = 0
    major_faults: int = 0
    load_1m_start: float | None = None
    load_1m_end: float | None = None
    usable_cores: int | None = None
    allocator: str = ""
    allocator_env: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def measured(self) -> bool:
        return self.span_s > 0

    @property
    def system_share(self) -> float:
        """System time as a share of the process's own CPU time."""
        total = self.user_s + self.system_s
        return self.system_s / total if total > 0 else 0.0

    @property
    def other_cores(self) -> float:
        """Cores other processes kept busy on average during the window."""
        return self.other_processes_s / self.span_s if self.span_s > 0 else 0.0

    @property
    def busy(self) -> bool:
        """Whether other processes competed for the cores (:data:`BUSY_OTHER_CORES`)."""
        return self.measured and self.other_cores >= BUSY_OTHER_CORES

    @property
    def fault_rate(self) -> float:
        """Page faults (minor + major) per second of the window."""
        return (self.minor_faults + self.major_faults) / self.span_s if self.span_s else 0.0

    @property
    def worker_cores(self) -> float:
        """Cores the process's children (DataLoader workers) kept busy on average."""
        return self.children_s / self.span_s if self.span_s > 0 else 0.0

    def free_cores(self, cores: int) -> int:
        """Usable cores left to torch's intra-op threads: all of them unless other
        processes and the loader workers together kept :data:`BUSY_OTHER_CORES` or more
        busy, else ``cores`` minus what they used, at least 1."""
        competing = self.other_cores + self.worker_cores
        if not self.measured or competing < BUSY_OTHER_CORES:
            return cores
        return max(1, cores - round(competing))
