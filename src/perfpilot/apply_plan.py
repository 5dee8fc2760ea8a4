"""Applying a :class:`~perfpilot.plan.Plan` at run time.

The engine and the user's own loop both go through these helpers, so a plan means the
same thing everywhere:

* :func:`setup_process` - process-wide settings: intra/inter-op threads, TF32, cuDNN benchmark
* :func:`resolve_device`, :func:`prepare_model` - placement, channels_last, ``torch.compile``
* :func:`autocast`, :func:`make_scaler` - mixed precision
* :func:`make_loader`, :func:`to_device`, :func:`batch_size_of` - data
* :func:`lr_at`, :func:`lr_scales`, :func:`set_lr` - learning-rate warmup
* :func:`apply` - all of the above for a user's own training loop, in one call

Whether the *device* can do a plan (bf16 support, compile backend...) is
:mod:`perfpilot.devices`'s business; :func:`check_plan` calls it when it is installed.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from perfpilot.errors import PlanError

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader

    from perfpilot.plan import Plan


# ---------------------------------------------------------------- process-wide settings


@functools.cache
def default_threads() -> int:
    """PyTorch's intra-op thread count before perfpilot touched it (first call wins)."""
    import torch

    return torch.get_num_threads()


_default_threads = default_threads  # kept for callers written before it was public


def check_plan(plan: Plan) -> None:
    """Ask :mod:`perfpilot.devices` whether this machine can run ``plan``.

    Raises :class:`PlanError` naming the key when it cannot. Does nothing while the
    hardware module is not installed (it is optional for the engine).
    """
    try:
        from perfpilot.devices import check_plan as hardware_check
    except ModuleNotFoundError as e:
        if e.name == "perfpilot.devices":
            return
        raise
    hardware_check(plan)


def setup_process(plan: Plan) -> None:
    """Apply the process-wide settings of ``plan``; idempotent and cheap to repeat.

    ``cpu_threads=None`` restores the thread count PyTorch had before perfpilot changed
    it, so plans measured one after the other in a process do not leak into each other.
    TF32 is on only for precision ``"tf32"`` (``"fp32"`` means true fp32 matmuls/convs).
    PyTorch lets the inter-op thread count be set once per process, before inter-op work
    starts: asking for the value it already has is fine, any other value raises a
    :class:`PlanError` that says to use a fresh process.
    """
    import torch

    threads = plan.cpu_threads or default_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if plan.interop_threads is not None:
        _set_interop_threads(plan.interop_threads)
    tf32 = plan.precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = plan.cudnn_benchmark


def _set_interop_threads(value: int) -> None:
    import torch

    current = torch.get_num_interop_threads()
    if current == value:
        return
    try:
        torch.set_num_interop_threads(value)
    except RuntimeError:
        raise PlanError(
            f"plan key 'interop_threads': cannot change PyTorch's inter-op threads to {value} "
            f"in this process (it is already {current}; PyTorch allows setting it once, before "
            "any inter-op work); run this plan in a fresh process"
        ) from None


# ---------------------------------------------------------------- device and model


def resolve_device(plan: Plan) -> torch.device:
    """The ``torch.device`` of the plan; a :class:`PlanError` if it is not usable here."""
    import torch

    device = torch.device(plan.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PlanError(f"plan key 'device': {plan.device!r} but CUDA is not available here")
    if device.type == "cuda" and device.index is not None:
        if device.index >= torch.cuda.device_count():
            raise PlanError(
                f"plan key 'device': {plan.device!r} but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise PlanError(f"plan key 'device': {plan.device!r} but MPS is not available here")
    return device


def is_conv_model(model: torch.nn.Module) -> bool:
    """Whether the model has 2-D convolutions, the only case channels_last helps."""
    import torch

    kinds = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    return any(isinstance(m, kinds) for m in model.modules())


def uses_channels_last(model: torch.nn.Module, plan: Plan) -> bool:
    """Whether ``plan.channels_last`` takes effect for this model (conv models only)."""
    return plan.channels_last and is_conv_model(model)


def prepare_model(model: torch.nn.Module, plan: Plan) -> torch.nn.Module:
    """Move to the plan's device, convert to channels_last (conv models), then compile.

    The parameters are moved in place, so an optimizer built on ``model.parameters()``
    before or after this call trains the returned module. Compile mode ``"default"`` is
    ``torch.compile(model)``; other modes are passed as ``mode=``.
    """
    import torch

    model = model.to(resolve_device(plan))
    if uses_channels_last(model, plan):
        model = _to_channels_last(model)
    if plan.compile == "default":
        model = torch.compile(model)
    elif plan.compile != "off":
        model = torch.compile(model, mode=plan.compile)
    return model


def _to_channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """Convert the model's 4-D weights; with lazy (uninitialized) parameters, which
    cannot be converted, convert the initialized conv layers only."""
    import torch
    from torch.nn.parameter import is_lazy

    if not any(is_lazy(p) for p in model.parameters()):
        return model.to(memory_format=torch.channels_last)
    kinds = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    for m in model.modules():
        if isinstance(m, kinds) and not any(is_lazy(p) for p in m.parameters(recurse=False)):
            m.to(memory_format=torch.channels_last)
    return model


# ---------------------------------------------------------------- precision


def autocast(plan: Plan) -> contextlib.AbstractContextManager[Any]:
    """A fresh autocast context for the plan: bf16 on any device, fp16 on CUDA/MPS.

    fp32 and tf32 get a ``nullcontext`` (TF32 is a process flag, see :func:`setup_process`).
    A new object per call: autocast contexts must not be entered twice at once.
    """
    import torch

    if plan.precision in ("fp32", "tf32"):
        return contextlib.nullcontext()
    device = torch.device(plan.device)  # not resolve_device: this runs every step
    if plan.precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if plan.precision == "fp16":
        if device.type not in ("cuda", "mps"):
            raise PlanError(
                f"plan key 'precision': 'fp16' needs a CUDA or MPS device (device is "
                f"{plan.device!r}); use 'bf16' instead"
            )
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def make_scaler(plan: Plan) -> torch.amp.GradScaler | None:
    """A GradScaler for fp16 on CUDA (fp16 gradients underflow without it); else None."""
    import torch

    if plan.precision == "fp16" and resolve_device(plan).type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None


# ---------------------------------------------------------------- data


def _seed_worker(worker_id: int) -> None:
    """Seed numpy in each loader worker from torch's per-worker seed (torch and random
    are seeded by the DataLoader itself)."""
    import numpy as np
    import torch

    np.random.seed(torch.initial_seed() % 2**32)


def make_loader(dataset: Any, plan: Plan, *, shuffle: bool = True,
                collate_fn: Callable[[list[Any]], Any] | None = None, seed: int = 0,
                drop_last: bool = True) -> DataLoader:
    """A DataLoader with the plan's batch size and loader knobs, shuffled reproducibly.

    ``pin_memory`` only takes effect when the plan's device is CUDA (pinning helps only
    host-to-GPU copies). ``drop_last`` is ignored when the dataset is smaller than one
    batch, so a loader is never empty.
    """
    import torch
    from torch.utils.data import DataLoader

    kw: dict[str, Any] = {}
    if plan.num_workers > 0:
        kw["persistent_workers"] = plan.persistent_workers
        kw["worker_init_fn"] = _seed_worker
        if plan.prefetch_factor is not None:
            kw["prefetch_factor"] = plan.prefetch_factor
    return DataLoader(
        dataset,
        batch_size=plan.batch_size,
        shuffle=shuffle,
        num_workers=plan.num_workers,
        pin_memory=plan.pin_memory and torch.device(plan.device).type == "cuda",
        collate_fn=collate_fn,
        drop_last=drop_last and len(dataset) >= plan.batch_size,
        generator=torch.Generator().manual_seed(seed),
        **kw,
    )


def to_device(batch: Any, device: torch.device | str, non_blocking: bool = False, *,
              channels_last: bool = False) -> Any:
    """Move every tensor inside (nested) tuples, lists, dicts and namedtuples to ``device``.

    Other leaves are returned unchanged. With ``channels_last``, 4-D tensors (images) are
    also converted to the channels_last memory format, in the same copy.
    """
    import torch

    if isinstance(batch, torch.Tensor):
        if channels_last and batch.dim() == 4:
            return batch.to(device, non_blocking=non_blocking, memory_format=torch.channels_last)
        return batch.to(device, non_blocking=non_blocking)

    def move(x: Any) -> Any:
        return to_device(x, device, non_blocking, channels_last=channels_last)

    if isinstance(batch, Mapping):
        moved = {k: move(v) for k, v in batch.items()}
        try:  # keep the user's mapping type (OrderedDict, UserDict...) when it allows it
            return type(batch)(moved)
        except TypeError:
            return moved
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(move(x) for x in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(move(x) for x in batch)
    return batch


def batch_size_of(batch: Any) -> int:
    """Samples in a collated batch: the first dimension of the first tensor found
    (depth-first through tuples, lists and dicts); ``len`` of a list without tensors."""
    import torch

    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() > 0 else 1
    items = list(batch.values()) if isinstance(batch, Mapping) else batch
    if isinstance(items, (tuple, list)):
        for x in items:
            if isinstance(x, (torch.Tensor, Mapping, tuple, list)):
                return batch_size_of(x)
        return len(items)
    return 1


# ---------------------------------------------------------------- learning rate


def lr_at(step: int, plan: Plan) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warmup from
    ``lr / warmup_steps`` to ``lr`` over the first ``plan.warmup_steps`` steps, then ``lr``."""
    if plan.warmup_steps > 0 and step < plan.warmup_steps:
        return plan.lr * (step + 1) / plan.warmup_steps
    return plan.lr


def lr_scales(optimizer: torch.optim.Optimizer) -> list[float]:
    """Each param group's lr relative to the optimizer's default lr, so that setting a
    new base lr keeps the user's per-group ratios (e.g. a 0.1x group for a backbone)."""
    base = optimizer.defaults.get("lr")
    if not isinstance(base, (int, float)) or base <= 0:
        return [1.0] * len(optimizer.param_groups)
    return [float(g["lr"]) / base for g in optimizer.param_groups]


def set_lr(optimizer: torch.optim.Optimizer, lr: float, scales: list[float]) -> None:
    """Set every group's lr to ``lr`` times its scale (see :func:`lr_scales`)."""
    for group, scale in zip(optimizer.param_groups, scales, strict=True):
        group["lr"] = lr * scale


# ---------------------------------------------------------------- one call for user loops


@dataclass(frozen=True)
class Applied:
    """A plan applied to a user's model (and optionally optimizer and dataset).

    Typical loop::

        pp = perfpilot.apply(plan, model, optimizer, dataset)
        for step, batch in enumerate(pp.loader):
            batch = pp.to_device(batch)
            pp.update_lr(step)
            with pp.autocast():
                loss = loss_fn(pp.model, batch)
            if pp.scaler:
                pp.scaler.scale(loss).backward()
                pp.scaler.step(optimizer)
                pp.scaler.update()
            else:
                loss.backward()
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    ``plan.grad_accum`` is not applied for you: call ``optimizer.step()`` every
    ``plan.grad_accum`` batches and divide the loss by it.
    """

    plan: Plan
    device: torch.device
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer | None
    loader: DataLoader | None
    scaler: torch.amp.GradScaler | None
    channels_last: bool
    _scales: tuple[float, ...] = ()

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """A fresh autocast context for one forward pass (and loss)."""
        return autocast(self.plan)

    def to_device(self, batch: Any) -> Any:
        """Move a batch to the plan's device (non-blocking when pinned; channels_last)."""
        non_blocking = self.plan.pin_memory and self.device.type == "cuda"
        return to_device(batch, self.device, non_blocking, channels_last=self.channels_last)

    def update_lr(self, step: int) -> float:
        """Set the optimizer's lr for optimizer step ``step`` (warmup); returns it."""
        lr = lr_at(step, self.plan)
        if self.optimizer is not None:
            set_lr(self.optimizer, lr, list(self._scales))
        return lr


def apply(plan: Plan, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
          dataset: Any = None, **loader_kw: Any) -> Applied:
    """Apply ``plan`` to a user's own training objects; see :class:`Applied` for the loop.

    Checks the plan against the machine (when :mod:`perfpilot.devices` is installed),
    sets the process-wide knobs, places/converts/compiles the model, makes the GradScaler
    and, with a ``dataset``, the DataLoader (``loader_kw`` go to :func:`make_loader`:
    ``shuffle``, ``collate_fn``, ``seed``, ``drop_last``). The optimizer's lr becomes
    ``plan.lr`` (per-group ratios kept); call ``update_lr(step)`` for warmup.
    """
    check_plan(plan)
    setup_process(plan)
    device = resolve_device(plan)
    channels_last = uses_channels_last(model, plan)
    prepared = prepare_model(model, plan)
    scales: tuple[float, ...] = ()
    if optimizer is not None:
        scales = tuple(lr_scales(optimizer))
        set_lr(optimizer, lr_at(0, plan), list(scales))
    loader = make_loader(dataset, plan, **loader_kw) if dataset is not None else None
    return Applied(plan=plan, device=device, model=prepared, optimizer=optimizer, loader=loader,
                   scaler=make_scaler(plan), channels_last=channels_last, _scales=scales)
