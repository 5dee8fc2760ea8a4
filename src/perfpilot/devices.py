"""What this machine can do: device discovery and capabilities.

:func:`discover` returns a frozen :class:`Machine` (cached; ``refresh=True`` looks again).
Every capability question is a pure function of a Machine, so tuners and tests can ask
about hand-made machines (an A100, a V100, a laptop with MPS) on any host:

* :func:`device_support` / :func:`precision_support` / :func:`compile_support` return
  ``None`` when something works, else the reason it does not (one short phrase).
* :func:`check_plan` raises :class:`~perfpilot.errors.PlanError` naming the plan key,
  its value and the reason; :func:`plan_notes` lists settings that are allowed but do
  nothing (or little) on the plan's device.

Decisions: bf16 on CPU is *supported* (autocast works everywhere) even without native
bf16 instructions; :attr:`CpuInfo.native_bf16` says whether it can be fast, and
:func:`plan_notes` warns when it cannot. fp16 is offered on CUDA and MPS only. TF32 needs
CUDA compute capability 8.0+. ``pin_memory`` and ``cudnn_benchmark`` off CUDA are
harmless no-ops: allowed, with a note.

Discovery imports torch (and, lazily and guarded, ``pynvml`` and ``torch_xla``) and, on
a CUDA machine, initializes CUDA in this process: a process that later *forks* children
which use CUDA must not call it first (perfpilot's executors spawn). Low-level host facts
(cgroups, /proc/cpuinfo, compilers) live in :mod:`perfpilot.host`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import platform
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from perfpilot.errors import PlanError
from perfpilot.host import (
    SIMD_FLAGS,
    affinity_cores,
    cgroup_cpu_limit,
    compile_issue,
    cpu_model,
    norm_uuid,
    nvml_query,
    parse_cfs,
    parse_cpu_features,
    parse_cpu_max,
    read_text,
    usable_cores,
    which_cc,
    which_cxx,
)

if TYPE_CHECKING:
    from perfpilot.plan import Plan

__all__ = [
    "CpuInfo", "GpuInfo", "Machine", "XlaInfo", "PRECISION_ORDER", "affinity_cores", "as_machine",
    "cgroup_cpu_limit", "check_plan", "compile_support", "device_options", "device_support",
    "discover", "parse_cfs", "parse_cpu_features", "parse_cpu_max", "plan_notes",
    "precision_support", "usable_cores",
]

PRECISION_ORDER: tuple[str, ...] = ("fp32", "tf32", "bf16", "fp16")
_DEVICE_RE = re.compile(r"(cpu|mps|xla|cuda)(?::(\d+))?")
_NATIVE_BF16 = ("avx512_bf16", "amx_bf16", "bf16")


@dataclass(frozen=True)
class CpuInfo:
    """The host CPU. ``features`` are lower-case /proc/cpuinfo names (ARM ``asimd`` is
    reported as ``neon``); ``usable_cores`` honours affinity and cgroup quota."""

    model: str
    arch: str
    logical_cores: int
    physical_cores: int | None = None
    usable_cores: int = 1
    affinity_cores: int | None = None
    quota_cores: float | None = None
    features: tuple[str, ...] = ()
    torch_capability: str | None = None
    memory_bytes: int | None = None

    @property
    def native_bf16(self) -> bool:
        """bf16 instructions in hardware (AVX512_BF16, AMX, ARM BF16): bf16 can be fast."""
        return any(f in self.features for f in _NATIVE_BF16)

    @property
    def simd(self) -> tuple[str, ...]:
        """Display names of the interesting SIMD features, e.g. ``("AVX2", "AVX-512")``."""
        return tuple(name for flag, name in SIMD_FLAGS.items() if flag in self.features)


@dataclass(frozen=True)
class GpuInfo:
    """One CUDA device as torch sees it; NVML fields are ``None`` without nvidia-ml-py."""

    index: int
    name: str
    capability: tuple[int, int]
    memory_bytes: int
    multiprocessors: int | None = None
    uuid: str | None = None
    memory_used_bytes: int | None = None
    utilization_pct: float | None = None

    @property
    def device(self) -> str:
        return f"cuda:{self.index}"

    @property
    def tensor_cores(self) -> bool:
        return tuple(self.capability) >= (7, 0)

    @property
    def bf16(self) -> bool:
        return tuple(self.capability) >= (8, 0)

    @property
    def tf32(self) -> bool:
        return tuple(self.capability) >= (8, 0)


@dataclass(frozen=True)
class XlaInfo:
    """Devices reachable through torch_xla (TPU, or XLA on GPU/CPU)."""

    device_type: str
    devices: int
    version: str | None = None


@dataclass(frozen=True)
class Machine:
    """Everything perfpilot knows about this machine. ``compile_issue`` is why
    torch.compile cannot run here at all (``None``: it can); ``cxx_compiler`` is the C++
    compiler inductor uses on CPU, ``c_compiler`` the C compiler Triton needs on CUDA;
    ``notes`` are discovery problems worth telling the user."""

    cpu: CpuInfo
    gpus: tuple[GpuInfo, ...] = ()
    mps: bool = False
    xla: XlaInfo | None = None
    torch_version: str | None = None
    cuda_runtime: str | None = None
    cudnn_version: int | None = None
    nvidia_driver: str | None = None
    python: str = ""
    os: str = ""
    compile_issue: str | None = None
    cxx_compiler: str | None = None
    c_compiler: str | None = None
    triton: bool = False
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the fields, derived flags, device names and per-device support."""
        d = dataclasses.asdict(self)
        d["cpu"].update(native_bf16=self.cpu.native_bf16, simd=list(self.cpu.simd))
        for g, gd in zip(self.gpus, d["gpus"], strict=True):
            gd.update(device=g.device, capability=list(g.capability),
                      tensor_cores=g.tensor_cores, bf16=g.bf16, tf32=g.tf32)
        d["devices"] = device_options(self)
        d["support"] = {dev: {"precision": precision_support(dev, self),
                              "compile": compile_support(dev, self)}
                        for dev in d["devices"]}
        return _jsonable(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Machine:
        """Inverse of :meth:`to_dict` (derived keys are ignored)."""
        kw = _known(cls, d)
        kw["cpu"] = CpuInfo(**{**_known(CpuInfo, d["cpu"]),
                               "features": tuple(d["cpu"].get("features", ()))})
        kw["gpus"] = tuple(GpuInfo(**{**_known(GpuInfo, g), "capability":
                                      tuple(g["capability"])}) for g in d.get("gpus", ()))
        kw["xla"] = XlaInfo(**_known(XlaInfo, d["xla"])) if d.get("xla") else None
        kw["notes"] = tuple(d.get("notes", ()))
        return cls(**kw)


# ---------------------------------------------------------------- capabilities


def as_machine(machine: Machine | dict[str, Any]) -> Machine:
    """A Machine, also from its JSON form (``RunRecord.machine``, ``StageContext.machine``)."""
    return machine if isinstance(machine, Machine) else Machine.from_dict(machine)


def device_options(machine: Machine | dict[str, Any]) -> list[str]:
    """Devices a plan may name here, e.g. ``["cpu", "cuda:0", "cuda:1"]``."""
    machine = as_machine(machine)
    out = ["cpu"] + [g.device for g in machine.gpus]
    if machine.mps:
        out.append("mps")
    if machine.xla is not None:
        out.append("xla")
    return out


def device_support(device: str, machine: Machine | dict[str, Any]) -> str | None:
    """``None`` if ``device`` exists here, else why not."""
    machine = as_machine(machine)
    m = _DEVICE_RE.fullmatch(device) if isinstance(device, str) else None
    if m is None:
        return "not a device name: use cpu, cuda, cuda:N, mps or xla"
    kind, index = m.group(1), int(m.group(2) or 0)
    if kind == "cuda":
        return _cuda_missing(index, machine)
    if kind == "mps" and not machine.mps:
        return "MPS is not available: it needs Apple silicon, macOS 12.3+ and a torch with MPS"
    if kind == "xla" and machine.xla is None:
        return "torch_xla is not installed or found no XLA device"
    if kind in ("cpu", "mps", "xla") and m.group(2) is not None and index != 0:
        return f"there is only one {kind} device"
    return None


def _cuda_missing(index: int, machine: Machine) -> str | None:
    n = len(machine.gpus)
    if n == 0:
        build = (f"; torch {machine.torch_version} is a CPU-only build"
                 if machine.torch_version and machine.cuda_runtime is None else "")
        return f"no CUDA GPU found{build}"
    if index >= n:
        listing = ", ".join(g.device for g in machine.gpus)
        return f"this machine has {n} CUDA GPU{'s' if n > 1 else ''}: {listing}"
    return None


def precision_support(device: str,
                      machine: Machine | dict[str, Any]) -> dict[str, str | None]:
    """``{precision: None or reason}`` for fp32, tf32, bf16 and fp16 on ``device``."""
    machine = as_machine(machine)
    missing = device_support(device, machine)
    if missing:
        return {p: f"{device} is not available: {missing}" for p in PRECISION_ORDER}
    kind = device.split(":")[0]
    if kind == "cuda":
        return _cuda_precisions(_gpu(device, machine))
    support: dict[str, str | None] = {"fp32": None, "tf32": f"TF32 is {_TF32_WHERE}"}
    if kind == "cpu":
        support["bf16"] = None  # autocast works; CpuInfo.native_bf16 says if it is fast
        support["fp16"] = "fp16 is offered on CUDA and MPS only; on CPU use bf16"
    elif kind == "mps":
        support["bf16"] = None
        support["fp16"] = None
    else:  # xla: TPUs compute in bf16 natively; fp16 is not their format
        support["bf16"] = None
        support["fp16"] = "fp16 is not offered on XLA devices; use bf16"
    return support


_TF32_WHERE = "an NVIDIA GPU feature: CUDA compute capability 8.0+, Ampere or newer"


def _cuda_precisions(gpu: GpuInfo) -> dict[str, str | None]:
    cc = f"{gpu.name} has {gpu.capability[0]}.{gpu.capability[1]}"
    return {
        "fp32": None,
        "tf32": None if gpu.tf32 else f"TF32 needs compute capability 8.0+; {cc}",
        "bf16": None if gpu.bf16 else (
            f"bf16 needs compute capability 8.0+ for native support; {cc} and would "
            "emulate it slowly"),
        "fp16": None,
    }


def compile_support(device: str, machine: Machine | dict[str, Any]) -> str | None:
    """``None`` if torch.compile (inductor) can work for ``device`` here, else why not."""
    machine = as_machine(machine)
    missing = device_support(device, machine)
    if missing:
        return f"{device} is not available: {missing}"
    if machine.compile_issue:
        return f"torch.compile is not supported here: {machine.compile_issue}"
    kind = device.split(":")[0]
    if kind == "cpu" and not machine.cxx_compiler:
        return ("torch.compile on CPU needs a C++ compiler for inductor: set CXX or install "
                "g++ or clang++")
    if kind == "cuda":
        gpu = _gpu(device, machine)
        if not machine.triton:
            return "torch.compile on CUDA needs Triton: pip install triton"
        if tuple(gpu.capability) < (7, 0):
            return (f"Triton needs compute capability 7.0+; {gpu.name} has "
                    f"{gpu.capability[0]}.{gpu.capability[1]}")
        if not machine.c_compiler:
            return "Triton needs a C compiler to build its launchers: set CC or install gcc"
    if kind == "xla":
        return "XLA compiles graphs itself; torch.compile modes do not apply, use torch_xla"
    return None


def check_plan(plan: Plan, machine: Machine | dict[str, Any] | None = None) -> None:
    """Raise :class:`PlanError` if this machine cannot run ``plan``.

    Checked: the device exists, the precision and (unless ``compile="off"``) torch.compile
    work on it. Harmless settings (``pin_memory`` or ``cudnn_benchmark`` off CUDA, more
    threads than cores) are allowed; see :func:`plan_notes`.
    """
    machine = discover() if machine is None else as_machine(machine)
    missing = device_support(plan.device, machine)
    if missing:
        raise PlanError(f"plan key 'device': {plan.device!r} is not available ({missing})")
    why = precision_support(plan.device, machine)[plan.precision]
    if why:
        raise PlanError(f"plan key 'precision': {plan.precision!r} is not available on "
                        f"{plan.device} ({why})")
    if plan.compile != "off":
        why = compile_support(plan.device, machine)
        if why:
            raise PlanError(f"plan key 'compile': {plan.compile!r} is not available on "
                            f"{plan.device} ({why})")


def plan_notes(plan: Plan, machine: Machine | dict[str, Any] | None = None) -> list[str]:
    """Settings that are allowed but do nothing, or little, on this plan's device."""
    machine = discover() if machine is None else as_machine(machine)
    kind = plan.device.split(":")[0]
    notes = []
    if plan.pin_memory and kind == "cpu":
        notes.append("pin_memory has no effect when training on the CPU")
    if plan.cudnn_benchmark and kind != "cuda":
        notes.append(f"cudnn_benchmark has no effect on {plan.device}: cuDNN is CUDA-only")
    if plan.compile == "reduce-overhead" and kind != "cuda":
        notes.append(f"compile 'reduce-overhead' uses CUDA graphs; on {plan.device} it "
                     "behaves like 'default'")
    if plan.precision == "bf16" and kind == "cpu" and not machine.cpu.native_bf16:
        notes.append("bf16 on this CPU is emulated, without AVX512_BF16, AMX or ARM BF16: "
                     "usually slower than fp32")
    if plan.cpu_threads and plan.cpu_threads > machine.cpu.usable_cores:
        notes.append(f"cpu_threads={plan.cpu_threads} exceeds the {machine.cpu.usable_cores} "
                     "cores this process may use: threads will oversubscribe")
    if kind == "cuda" and plan.precision in ("fp16", "bf16") and not device_support(
            plan.device, machine):
        gpu = _gpu(plan.device, machine)
        if not gpu.tensor_cores:
            notes.append(f"{gpu.name} has no tensor cores: {plan.precision} gains little")
    return notes


def _gpu(device: str, machine: Machine) -> GpuInfo:
    index = int(device.split(":")[1]) if ":" in device else 0
    return machine.gpus[index]


# ---------------------------------------------------------------- discovery


def discover(*, refresh: bool = False) -> Machine:
    """This machine (cached after the first call; ``refresh=True`` looks again)."""
    if refresh:
        _discover.cache_clear()
    return _discover()


@functools.lru_cache(maxsize=1)
def _discover() -> Machine:
    import torch

    notes: list[str] = []
    gpus = _cuda_gpus(torch, notes)
    driver, gpus = _nvml(gpus, torch, notes)
    return Machine(
        cpu=_cpu_info(torch), gpus=gpus, mps=_mps(torch), xla=_xla(notes),
        torch_version=torch.__version__, cuda_runtime=torch.version.cuda,
        cudnn_version=_cudnn(torch), nvidia_driver=driver,
        python=platform.python_version(), os=f"{platform.system()} {platform.release()}",
        compile_issue=compile_issue(), cxx_compiler=which_cxx(), c_compiler=which_cc(),
        triton=importlib.util.find_spec("triton") is not None, notes=tuple(notes),
    )


def _cpu_info(torch: Any) -> CpuInfo:
    import psutil

    text = read_text("/proc/cpuinfo")
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # old torch builds
        capability = None
    return CpuInfo(
        model=cpu_model(text), arch=platform.machine(),
        logical_cores=psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        physical_cores=psutil.cpu_count(logical=False), usable_cores=usable_cores(),
        affinity_cores=affinity_cores(), quota_cores=cgroup_cpu_limit(),
        features=parse_cpu_features(text, platform.machine()),
        torch_capability=capability, memory_bytes=psutil.virtual_memory().total,
    )


def _cuda_gpus(torch: Any, notes: list[str]) -> tuple[GpuInfo, ...]:
    try:
        if not torch.cuda.is_available():
            return ()
        out = []
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            out.append(GpuInfo(index=i, name=p.name, capability=(p.major, p.minor),
                               memory_bytes=int(p.total_memory),
                               multiprocessors=getattr(p, "multi_processor_count", None),
                               uuid=norm_uuid(str(getattr(p, "uuid", "")) or None)))
        return tuple(out)
    except Exception as e:  # a broken driver must not break `perfpilot devices`
        notes.append(f"CUDA query failed: {type(e).__name__}: {e}")
        return ()


def _nvml(gpus: tuple[GpuInfo, ...], torch: Any,
          notes: list[str]) -> tuple[str | None, tuple[GpuInfo, ...]]:
    """Driver version and live use from NVML, matched to torch devices by UUID (NVML
    numbers every GPU; torch only the visible ones)."""
    try:
        found = nvml_query()
    except ImportError:
        if gpus:
            notes.append("install nvidia-ml-py (perfpilot[gpu]) for driver and utilization")
        return None, gpus
    except Exception as e:
        notes.append(f"NVML query failed: {type(e).__name__}: {e}")
        return None, gpus
    if found is None:  # no NVIDIA driver: the usual case on CPU machines and Macs
        return None, gpus
    driver, use = found
    if use and not gpus:
        notes.append(f"NVML sees {len(use)} NVIDIA GPU(s) but torch cannot use them"
                     + _why_no_cuda(torch))
    return driver, tuple(
        dataclasses.replace(g, memory_used_bytes=use[g.uuid][0],
                            utilization_pct=use[g.uuid][1]) if g.uuid and g.uuid in use else g
        for g in gpus)


def _why_no_cuda(torch: Any) -> str:
    if not torch.version.cuda:
        return f" (torch {torch.__version__} is a CPU-only build)"
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    return f" (CUDA_VISIBLE_DEVICES={hidden!r})" if hidden is not None else ""


def _mps(torch: Any) -> bool:
    mps = getattr(torch.backends, "mps", None)
    try:
        return bool(mps is not None and mps.is_available())
    except Exception:
        return False


def _xla(notes: list[str]) -> XlaInfo | None:
    if importlib.util.find_spec("torch_xla") is None:
        return None
    try:
        import torch_xla
        import torch_xla.runtime as xr

        return XlaInfo(device_type=str(xr.device_type()),
                       devices=int(xr.global_runtime_device_count()),
                       version=getattr(torch_xla, "__version__", None))
    except Exception as e:
        notes.append(f"torch_xla is installed but unusable: {type(e).__name__}: {e}")
        return None


def _cudnn(torch: Any) -> int | None:
    try:
        return torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception:
        return None


# ---------------------------------------------------------------- small helpers


def _known(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in d.items() if k in names}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value

