"""Apply a perfpilot Plan to a PyTorch Lightning run.

Usage::

    from perfpilot.integrations.lightning import PlanCallback, trainer_kwargs
    plan = perfpilot.load_plan("perfpilot-out/plan.json")
    trainer = L.Trainer(max_epochs=3, callbacks=[PlanCallback(plan)], **trainer_kwargs(plan))

``trainer_kwargs`` maps what Lightning owns (accelerator, devices, precision, gradient
accumulation) to Trainer arguments; :class:`PlanCallback` applies the rest: threads,
TF32 and cuDNN flags, channels_last, the batch size (through the module's ``batch_size``
attribute or hparam, as Lightning's own batch-size finder does), the DataLoader knobs
(by rebuilding the module's train DataLoader with the plan's workers, prefetch and
pinning), and LR warmup. Requires ``pip install perfpilot[lightning]``.
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


def trainer_kwargs(plan: Plan) -> dict[str, Any]:
    """Arguments for ``lightning.Trainer`` that carry the plan's device and precision."""
    device = plan.device.split(":")
    accelerator = {"cuda": "gpu", "xla": "tpu"}.get(device[0], device[0])
    devices: Any = [int(device[1])] if len(device) == 2 else 1
    return {
        "accelerator": accelerator,
        "devices": devices,
        "precision": _PRECISION[plan.precision],
        "accumulate_grad_batches": plan.grad_accum,
    }


class PlanCallback(pl.Callback):
    """Applies the parts of a plan that Lightning's Trainer arguments do not cover."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        import importlib

        from perfpilot.apply import setup_process

        parsing = importlib.import_module(pl.__name__ + ".utilities.parsing")

        setup_process(self.plan)
        if self.plan.channels_last:
            import torch

            pl_module.to(memory_format=torch.channels_last)
        if parsing.lightning_hasattr(pl_module, "batch_size"):
            parsing.lightning_setattr(pl_module, "batch_size", self.plan.batch_size)
        if stage == "fit":
            self._wrap_train_dataloader(trainer, pl_module)

    def _wrap_train_dataloader(self, trainer: Any, pl_module: Any) -> None:
        owner = trainer.datamodule if getattr(trainer, "datamodule", None) else pl_module
        original = owner.train_dataloader
        plan = self.plan

        def train_dataloader() -> Any:
            return rebuild_loader(original(), plan)

        owner.train_dataloader = train_dataloader

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.plan.warmup_steps <= 0:
            return
        from perfpilot.apply import lr_at

        step = trainer.global_step
        if step <= self.plan.warmup_steps:
            for opt in trainer.optimizers:
                for group in opt.param_groups:
                    group["lr"] = lr_at(step, self.plan)


def rebuild_loader(loader: Any, plan: Plan) -> Any:
    """The same dataset, collate and shuffling, with the plan's batch size and loader knobs."""
    import torch.utils.data as tud

    from perfpilot.apply import make_loader

    if not isinstance(loader, tud.DataLoader) or isinstance(loader.dataset, tud.IterableDataset):
        return loader  # nothing safe to rebuild: leave the user's loader as it is
    shuffle = isinstance(loader.sampler, tud.RandomSampler)
    return make_loader(loader.dataset, plan, shuffle=shuffle, collate_fn=loader.collate_fn,
                       drop_last=loader.drop_last)
