"""Candidate settings for the hardware and loader stages, from device facts and model traits.

Everything here is pure: candidates are computed from a :class:`DeviceInfo` (what one
device can do, read from :mod:`perfpilot.devices` or faked in tests), the workload's
:class:`ModelTraits` and the incumbent plan. A :class:`Candidate` is a change to the
incumbent along one *axis*. Candidates that cannot work are still returned, with the reason
in ``skip``, so that the evidence says why a knob was not tried instead of staying silent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from perfpilot.plan import COMPILE_MODES, PRECISIONS

if TYPE_CHECKING:
    from perfpilot.plan import Plan
    from perfpilot.workload import Workload

# Order of the hardware stage's axes. Device first (everything else depends on it); CPU
# threads next (every later comparison runs at the chosen count, and on a busy machine it is
# often the largest lever); compile last, the slowest to measure and dependent on the rest.
HARDWARE_AXES: tuple[str, ...] = (
    "device", "cpu_threads", "precision", "channels_last", "cudnn_benchmark",
    "interop_threads", "compile",
)
# A thread or worker count ladder stays exhaustive up to this many cores, then doubles, so a
# 64-core machine costs 8 measurements instead of 64.
FULL_LADDER_UP_TO = 8
LARGER_PREFETCH = 4  # PyTorch's default prefetch_factor is 2


@dataclass(frozen=True)
class DeviceInfo:
    """What one device can do.

    ``precisions`` maps each precision to ``None`` (supported) or the reason it is not;
    ``compile_reason`` is ``None`` when ``torch.compile`` can work there; ``cores`` is the
    number of CPU cores this process may use (affinity and cgroup quota aware);
    ``native_bf16`` is whether bf16 runs in hardware there (on a CPU without AVX512_BF16 or
    AMX, autocast emulates it and is slower than fp32); ``default_threads`` is PyTorch's
    intra-op thread count when a plan leaves it unset (``cpu_threads=None``).
    """

    device: str
    precisions: Mapping[str, str | None]
    compile_reason: str | None
    cores: int
    native_bf16: bool = True
    default_threads: int | None = None

    @property
    def kind(self) -> str:
        return self.device.split(":")[0]


@dataclass(frozen=True)
class ModelTraits:
    """What matters about the model and data: 2-D convolutions (channels_last, cuDNN) and
    whether input shapes are fixed (cudnn.benchmark re-tunes on every new shape)."""

    conv2d: bool
    fixed_shapes: bool


@dataclass(frozen=True)
class Candidate:
    """A change to the incumbent along one axis; ``skip`` says why it is not tried."""

    axis: str
    changes: Mapping[str, Any] = field(default_factory=dict)
    skip: str | None = None

    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.changes.items()) or self.axis

    def apply(self, plan: Plan) -> Plan:
        return plan.replace(**self.changes)

    def to_dict(self) -> dict[str, Any]:
        return {"axis": self.axis, "changes": dict(self.changes), "skip": self.skip}


# ------------------------------------------------------------------ device facts


def device_infos(machine: Any = None, default_threads: int | None = None) -> list[DeviceInfo]:
    """One :class:`DeviceInfo` per device of ``machine`` (a :class:`perfpilot.devices.Machine`;
    default: the discovered one; tests pass hand-made machines). ``default_threads``
    defaults to this process's (:func:`process_default_threads`)."""
    from perfpilot import devices

    machine = devices.discover() if machine is None else machine
    if default_threads is None:
        default_threads = process_default_threads()
    return [
        DeviceInfo(
            device=d,
            precisions=dict(devices.precision_support(d, machine)),
            compile_reason=devices.compile_support(d, machine),
            cores=max(1, int(machine.cpu.usable_cores)),
            # CUDA without native bf16 already carries a reason in precisions.
            native_bf16=machine.cpu.native_bf16 if d == "cpu" else True,
            default_threads=default_threads,
        )
        for d in devices.device_options(machine)
    ]


def process_default_threads() -> int:
    """PyTorch's intra-op thread count before perfpilot changed it (see perfpilot.apply_plan)."""
    from perfpilot.apply_plan import default_threads

    return default_threads()


def info_for(device: str, infos: Sequence[DeviceInfo]) -> DeviceInfo:
    """The info of ``device``; ``cuda`` and ``cuda:0`` name the same device."""
    norm = "cuda:0" if device == "cuda" else device
    for info in infos:
        if info.device == norm or (info.device == "cuda" and norm == "cuda:0"):
            return info
    known = ", ".join(i.device for i in infos)
    raise ValueError(f"device {device!r} is not on this machine (devices: {known})")


def model_traits(workload: Workload, probe_items: int = 3) -> ModelTraits:
    """Build the model and look at a few training items: conv layers, fixed shapes."""
    from perfpilot.apply_plan import is_conv_model
    from perfpilot.workload import build_dataset, build_model

    conv2d = is_conv_model(build_model(workload))
    data = build_dataset(workload, "train_data")
    n = len(data)
    idx = sorted({0, n // 2, n - 1})[:probe_items]
    shapes = {_shapes(data[i]) for i in idx}
    return ModelTraits(conv2d=conv2d, fixed_shapes=len(shapes) == 1)


def _shapes(item: Any) -> tuple[Any, ...]:
    import torch

    if isinstance(item, torch.Tensor):
        return (tuple(item.shape),)
    if isinstance(item, Mapping):
        return tuple((k, _shapes(v)) for k, v in sorted(item.items()))
    if isinstance(item, (list, tuple)):
        return tuple(_shapes(v) for v in item)
    return ()


# ------------------------------------------------------------------ hardware axes


def hardware_candidates(axis: str, incumbent: Plan, infos: Sequence[DeviceInfo],
                        traits: ModelTraits) -> list[Candidate]:
    """Candidates along ``axis`` for the incumbent's device (see :data:`HARDWARE_AXES`)."""
    info = info_for(incumbent.device, infos)
    make = {
        "device": lambda: _device(incumbent, infos),
        "precision": lambda: _precision(incumbent, info),
        "channels_last": lambda: _channels_last(incumbent, traits),
        "cudnn_benchmark": lambda: _cudnn_benchmark(incumbent, info, traits),
        "cpu_threads": lambda: _cpu_threads(incumbent, info),
        "interop_threads": lambda: _interop_threads(incumbent, info),
        "compile": lambda: _compile(incumbent, info),
    }
    if axis not in make:
        raise ValueError(f"unknown hardware axis {axis!r} (axes: {', '.join(HARDWARE_AXES)})")
    return make[axis]()


def fit_to_device(plan: Plan, info: DeviceInfo) -> dict[str, Any]:
    """Changes that make ``plan``'s device-specific knobs valid on ``info``'s device."""
    changes: dict[str, Any] = {"device": info.device}
    if info.precisions.get(plan.precision) is not None:
        changes["precision"] = "fp32"
    if plan.compile != "off" and info.compile_reason is not None:
        changes["compile"] = "off"
    if info.kind != "cuda":
        if plan.cudnn_benchmark:
            changes["cudnn_benchmark"] = False
        if plan.pin_memory:
            changes["pin_memory"] = False
    return changes


def _device(incumbent: Plan, infos: Sequence[DeviceInfo]) -> list[Candidate]:
    current = info_for(incumbent.device, infos).device
    return [Candidate("device", fit_to_device(incumbent, i)) for i in infos if i.device != current]


def _precision(incumbent: Plan, info: DeviceInfo) -> list[Candidate]:
    out = []
    for p in PRECISIONS:
        if p == incumbent.precision:
            continue
        reason = info.precisions.get(p, f"{p} support on {info.device} is unknown")
        if reason is None and p == "bf16" and not info.native_bf16:
            reason = (f"{info.device} has no native bf16 instructions (AVX512_BF16, AMX); "
                      "autocast would emulate bf16, slower than fp32")
        if reason is None and p == "fp16" and info.kind != "cuda":
            # Without a GradScaler fp16 gradients underflow; perfpilot scales on CUDA only.
            reason = "fp16 training needs a GradScaler, which perfpilot uses on CUDA only"
        out.append(Candidate("precision", {"precision": p}, skip=reason))
    return out


def _channels_last(incumbent: Plan, traits: ModelTraits) -> list[Candidate]:
    flip = {"channels_last": not incumbent.channels_last}
    if not traits.conv2d:
        return [Candidate("channels_last", flip, skip="the model has no 2-D convolutions")]
    return [Candidate("channels_last", flip)]


def _cudnn_benchmark(incumbent: Plan, info: DeviceInfo, traits: ModelTraits) -> list[Candidate]:
    flip = {"cudnn_benchmark": not incumbent.cudnn_benchmark}
    if info.kind != "cuda":
        return [Candidate("cudnn_benchmark", flip, skip=f"cuDNN runs on CUDA; device is "
                          f"{info.device}")]
    if not traits.conv2d:
        return [Candidate("cudnn_benchmark", flip, skip="the model has no 2-D convolutions")]
    if not traits.fixed_shapes:
        return [Candidate("cudnn_benchmark", flip, skip="input shapes vary between items, so "
                          "cudnn.benchmark would re-tune on every new shape")]
    return [Candidate("cudnn_benchmark", flip)]


def thread_ladder(cores: int) -> list[int]:
    """1..cores, exhaustive up to :data:`FULL_LADDER_UP_TO`, then powers of two and ``cores``."""
    if cores <= FULL_LADDER_UP_TO:
        return list(range(1, cores + 1))
    ladder = [1 << i for i in range(cores.bit_length()) if (1 << i) <= cores]
    return sorted(set(ladder) | {cores})


def _cpu_threads(incumbent: Plan, info: DeviceInfo) -> list[Candidate]:
    if info.kind != "cpu":
        return [Candidate("cpu_threads", {}, skip=f"the model runs on {info.device}; intra-op "
                          "threads only run CPU kernels")]
    # Most threads first: on a tie the incumbent stays, and the next candidate is the smaller.
    # An explicit count equal to what the incumbent runs with is the same plan: not a candidate.
    # Loader workers keep their cores: workers x threads stays within the usable cores.
    current = incumbent.cpu_threads or info.default_threads
    limit = max(1, info.cores // max(1, incumbent.num_workers))
    counts = [n for n in reversed(thread_ladder(limit)) if n != current]
    return [Candidate("cpu_threads", {"cpu_threads": n}) for n in counts]


def _interop_threads(incumbent: Plan, info: DeviceInfo) -> list[Candidate]:
    counts = [n for n in (1, info.cores) if n != incumbent.interop_threads]
    reason = ("PyTorch sizes the inter-op pool once per process, so two settings cannot be "
              "compared live in one process; not measured")
    return [Candidate("interop_threads", {"interop_threads": n}, skip=reason)
            for n in dict.fromkeys(counts)]


def _compile(incumbent: Plan, info: DeviceInfo) -> list[Candidate]:
    out = []
    for mode in COMPILE_MODES:
        if mode in ("off", incumbent.compile):
            continue
        reason = info.compile_reason
        if reason is None and mode == "reduce-overhead" and info.kind != "cuda":
            reason = "reduce-overhead adds CUDA graphs; without CUDA it is the same as 'default'"
        out.append(Candidate("compile", {"compile": mode}, skip=reason))
    return out


# ------------------------------------------------------------------ loader axes


def effective_threads(plan: Plan, cores: int) -> int:
    """Intra-op threads a plan runs with (``None`` leaves PyTorch's default, about ``cores``)."""
    return plan.cpu_threads if plan.cpu_threads is not None else cores


def fitted_threads(workers: int, plan: Plan, cores: int) -> int:
    """Threads for ``workers`` loader processes so that workers x threads <= cores."""
    return max(1, min(effective_threads(plan, cores), cores // max(1, workers)))


def worker_candidates(incumbent: Plan, cores: int) -> list[Candidate]:
    """More loader workers, in increasing order, each with threads fitted to the cores.

    When the incumbent itself oversubscribes (workers x threads > cores), the first
    candidate is the incumbent's worker count with fitted threads.
    """
    out = []
    w0 = incumbent.num_workers
    if w0 > 0 and w0 * effective_threads(incumbent, cores) > cores:
        out.append(_workers(incumbent, min(w0, cores), cores))
    for w in thread_ladder(cores):
        if w > w0:
            out.append(_workers(incumbent, w, cores))
    return out


def _workers(incumbent: Plan, workers: int, cores: int) -> Candidate:
    changes: dict[str, Any] = {"num_workers": workers}
    threads = fitted_threads(workers, incumbent, cores)
    if threads != effective_threads(incumbent, cores) or incumbent.cpu_threads is not None:
        changes["cpu_threads"] = threads
    return Candidate("num_workers", changes)


def loader_extras(incumbent: Plan, info: DeviceInfo) -> list[Candidate]:
    """persistent_workers, a larger prefetch_factor and pin_memory, given the workers chosen."""
    out = []
    no_workers = "needs num_workers > 0 (the loader runs in the training process)"
    if not incumbent.persistent_workers:
        out.append(Candidate("persistent_workers", {"persistent_workers": True},
                             skip=None if incumbent.num_workers else no_workers))
    if (incumbent.prefetch_factor or 2) < LARGER_PREFETCH:
        out.append(Candidate("prefetch_factor", {"prefetch_factor": LARGER_PREFETCH},
                             skip=None if incumbent.num_workers else no_workers))
    if not incumbent.pin_memory:
        skip = None if info.kind == "cuda" else (
            f"pinned memory speeds host-to-CUDA copies; device is {info.device}")
        out.append(Candidate("pin_memory", {"pin_memory": True}, skip=skip))
    return out
