"""Apply a perfpilot Plan to a PyTorch Lightning run.

Usage::

    import perfpilot
    from perfpilot.integrations.lightning import PlanCallback, trainer_kwargs

    plan = perfpilot.load_plan("perfpilot-out/plan.json")
    trainer = L.Trainer(max_epochs=3, callbacks=[PlanCallback(plan)], **trainer_kwargs(plan))
    trainer.fit(compile_module(model, plan))      # compile_module: only if plan.compile

What goes where:

* :func:`trainer_kwargs` - what Lightning's Trainer owns: ``accelerator``/``devices``
  (``device``), ``precision`` (bf16/fp16 autocast, fp32; TF32 is a process flag),
  ``accumulate_grad_batches`` (``grad_accum``) and ``benchmark`` (``cudnn_benchmark``).
* :class:`PlanCallback` - the rest, at ``setup``: intra/inter-op threads and TF32 flags,
  channels_last weights, the module's ``batch_size`` attribute or hparam (as Lightning's
  batch-size finder does) and the train DataLoader rebuilt with the plan's batch size,
  workers, prefetching, persistence and pinning (same dataset, collate and shuffling;
  whether it comes from the module, a datamodule or ``trainer.fit(train_dataloaders=...)``).
  At ``on_train_start`` the optimizers' learning rate becomes ``plan.lr`` (each param
  group keeps its ratio to the optimizer's default lr; LR schedulers' base lrs are scaled
  alike); while ``global_step < plan.warmup_steps`` it ramps linearly (perfpilot's
  :func:`~perfpilot.apply.lr_at`) unless the module has its own LR scheduler, which then
  owns the schedule (a warning says so).
* :func:`compile_module` - ``torch.compile`` with the plan's mode (Lightning fits a
  compiled module as is).

Input batches are not converted to channels_last (Lightning moves batches itself); conv
layers convert them on the fly. Requires ``pip install 'perfpilot[lightning]'``.
"""

from __future__ import annotations

from typing import Any

from perfpilot.errors import UserError
from perfpilot.plan import Plan

try:  # the unified package first, then the standalone one
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover - depends on what is installed
    try:
        import pytorch_lightning as pl  # type: ignore[no-redef]
    except ImportError:
        raise UserError(
            "perfpilot's Lightning integration needs Lightning: pip install 'perfpilot[lightning]'"
        ) from None

_PRECISION = {"fp32": "32-true", "tf32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}
_MARK = "perfpilot_lr_applied"  # set on param groups already scaled (survives checkpoints)


def trainer_kwargs(plan: Plan) -> dict[str, Any]:
    """Arguments for ``lightning.Trainer`` that carry the plan's device, precision,
    gradient accumulation and cuDNN benchmark setting."""
    device = plan.device.split(":")
    accelerator = {"cuda": "gpu", "xla": "tpu"}.get(device[0], device[0])
    devices: Any = [int(device[1])] if len(device) == 2 else 1
    return {
        "accelerator": accelerator,
        "devices": devices,
        "precision": _PRECISION[plan.precision],
        "accumulate_grad_batches": plan.grad_accum,
        "benchmark": plan.cudnn_benchmark,
    }


def compile_module(module: Any, plan: Plan) -> Any:
    """``torch.compile(module)`` with the plan's mode, or the module when compile is off."""
    if plan.compile == "off":
        return module
    import torch

    return torch.compile(module) if plan.compile == "default" else torch.compile(
        module, mode=plan.compile)


class PlanCallback(pl.Callback):
    """Applies the parts of a plan that Lightning's Trainer arguments do not cover (see the
    module docstring). ``apply_lr=False`` leaves the learning rate and warmup alone."""

    def __init__(self, plan: Plan, *, apply_lr: bool = True) -> None:
        self.plan, self.apply_lr = plan, apply_lr
        self._base: list[list[float]] = []  # per optimizer, per group: lr after warmup
        self._warmup = False

    # ------------------------------------------------------------ setup

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        import importlib

        from perfpilot.apply_plan import setup_process

        setup_process(self.plan)
        if self.plan.channels_last:
            import torch

            pl_module.to(memory_format=torch.channels_last)
        parsing = importlib.import_module(pl.__name__ + ".utilities.parsing")
        if parsing.lightning_hasattr(pl_module, "batch_size"):
            parsing.lightning_setattr(pl_module, "batch_size", self.plan.batch_size)
        if stage == "fit":
            self._plan_train_loader(trainer, pl_module)

    def _plan_train_loader(self, trainer: Any, pl_module: Any) -> None:
        plan = self.plan
        source = getattr(getattr(trainer, "fit_loop", None), "_data_source", None)
        instance = getattr(source, "instance", None)
        if source is not None and not isinstance(instance, (pl.LightningModule,
                                                             pl.LightningDataModule)):
            # trainer.fit(model, train_dataloaders=loader): the loader already exists.
            if instance is not None:
                source.instance = rebuild_loader(instance, plan)
            return
        owner = trainer.datamodule if getattr(trainer, "datamodule", None) else pl_module
        original = owner.train_dataloader

        def train_dataloader() -> Any:
            return rebuild_loader(original(), plan)

        # Lightning calls the hook lazily, after the datamodule's and module's own setup.
        owner.train_dataloader = train_dataloader

    # ------------------------------------------------------------ learning rate

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if not self.apply_lr:
            return
        schedulers = list(getattr(trainer, "lr_scheduler_configs", None) or [])
        self._base = [self._scale(opt, schedulers) for opt in trainer.optimizers]
        self._warmup = self.plan.warmup_steps > 0
        if self._warmup and schedulers:
            from lightning_utilities.core.rank_zero import rank_zero_warn

            rank_zero_warn(f"perfpilot: the plan's {self.plan.warmup_steps} warmup steps are "
                           "not applied because the module has its own LR scheduler")
            self._warmup = False

    def _scale(self, opt: Any, schedulers: list[Any]) -> list[float]:
        """Set the optimizer's lr to plan.lr, keeping each group's ratio to the default."""
        default = opt.defaults.get("lr")
        if not isinstance(default, (int, float)) or default <= 0:
            return [g["lr"] for g in opt.param_groups]
        ratio = self.plan.lr / default
        for group in opt.param_groups:
            if not group.get(_MARK):  # a restored checkpoint is already scaled
                group["lr"] *= ratio
                if "initial_lr" in group:
                    group["initial_lr"] *= ratio
                group[_MARK] = True
        for config in schedulers:
            sched = getattr(config, "scheduler", None)
            if getattr(sched, "optimizer", None) is opt and hasattr(sched, "base_lrs") \
                    and not getattr(sched, _MARK, False):
                sched.base_lrs = [b * ratio for b in sched.base_lrs]
                setattr(sched, _MARK, True)
        return [g["lr"] for g in opt.param_groups]

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any,
                             batch_idx: int) -> None:
        if not self._warmup:
            return
        step, warmup = trainer.global_step, self.plan.warmup_steps
        factor = (step + 1) / warmup if step < warmup else 1.0
        for opt, base in zip(trainer.optimizers, self._base, strict=False):
            for group, lr in zip(opt.param_groups, base, strict=False):
                group["lr"] = lr * factor
        if step >= warmup:
            self._warmup = False


def rebuild_loader(loader: Any, plan: Plan) -> Any:
    """The same dataset, collate, shuffling and drop_last, with the plan's batch size and
    loader knobs. Anything else (an iterable dataset, a custom sampler or batch sampler)
    is returned unchanged: rebuilding it could change what the user trains on."""
    import torch.utils.data as tud

    from perfpilot.apply_plan import make_loader

    if not isinstance(loader, tud.DataLoader) or isinstance(loader.dataset, tud.IterableDataset):
        return loader
    if not isinstance(loader.sampler, (tud.RandomSampler, tud.SequentialSampler)) or \
            type(loader.batch_sampler) is not tud.BatchSampler:
        return loader
    shuffle = isinstance(loader.sampler, tud.RandomSampler)
    return make_loader(loader.dataset, plan, shuffle=shuffle, collate_fn=loader.collate_fn,
                       drop_last=loader.drop_last)
