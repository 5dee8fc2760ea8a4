"""PlanCallback and trainer_kwargs on real (tiny, CPU) Lightning runs."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("lightning")

import lightning.pytorch as L  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from perfpilot.apply_plan import default_threads  # noqa: E402
from perfpilot.integrations.lightning import (  # noqa: E402
    PlanCallback,
    compile_module,
    rebuild_loader,
    trainer_kwargs,
)
from perfpilot.plan import Plan  # noqa: E402


def data(n: int = 256) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 4, generator=g), torch.randint(0, 2, (n,), generator=g))


class Tiny(L.LightningModule):
    def __init__(self, batch_size: int = 8, lr: float = 0.01, scheduler: bool = False,
                 groups: bool = False) -> None:
        super().__init__()
        self.batch_size, self.lr, self.scheduler, self.groups = batch_size, lr, scheduler, groups
        self.a, self.b = torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)
        self.seen: list[int] = []
        self.lrs: list[list[float]] = []
        self.loaders: list[DataLoader] = []

    def training_step(self, batch: Any, i: int) -> torch.Tensor:
        x, y = batch
        self.seen.append(len(x))
        self.lrs.append([g["lr"] for g in self.optimizers().param_groups])
        return F.cross_entropy(self.b(torch.relu(self.a(x))), y)

    def configure_optimizers(self) -> Any:
        params = ([{"params": self.a.parameters(), "lr": self.lr / 10},
                   {"params": self.b.parameters()}] if self.groups else self.parameters())
        opt = torch.optim.SGD(params, lr=self.lr)
        if not self.scheduler:
            return opt
        return [opt], [torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(data(), batch_size=self.batch_size, shuffle=True)


def fit(module: L.LightningModule, plan: Plan, steps: int = 4, **kw: Any) -> L.Trainer:
    trainer = L.Trainer(max_steps=steps, callbacks=[PlanCallback(plan)], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, **trainer_kwargs(plan))
    trainer.fit(module, **kw)
    return trainer


def loader_of(trainer: L.Trainer) -> DataLoader:
    loader = trainer.train_dataloader
    return loader if isinstance(loader, DataLoader) else loader.iterables  # CombinedLoader


def test_trainer_kwargs_carry_device_precision_accumulation_and_benchmark() -> None:
    kw = trainer_kwargs(Plan(device="cuda:1", precision="bf16", grad_accum=4,
                             cudnn_benchmark=True))
    assert kw == {"accelerator": "gpu", "devices": [1], "precision": "bf16-mixed",
                  "accumulate_grad_batches": 4, "benchmark": True}
    assert trainer_kwargs(Plan(precision="tf32"))["precision"] == "32-true"
    assert trainer_kwargs(Plan())["accelerator"] == "cpu"


def test_plan_reaches_batch_size_loader_threads_and_lr() -> None:
    plan = Plan(batch_size=32, lr=0.2, num_workers=1, prefetch_factor=3, cpu_threads=1)
    m = Tiny(groups=True)
    try:
        trainer = fit(m, plan)
        assert m.batch_size == 32 and m.seen == [32] * 4
        loader = loader_of(trainer)
        assert loader.num_workers == 1 and loader.prefetch_factor == 3
        assert torch.get_num_threads() == 1
        # plan.lr replaces the optimizer's lr; the 1/10 group keeps its ratio.
        assert m.lrs[0] == pytest.approx([0.02, 0.2]) and m.lrs[-1] == pytest.approx([0.02, 0.2])
    finally:
        torch.set_num_threads(default_threads())


def test_warmup_ramps_then_holds() -> None:
    m = Tiny()
    fit(m, Plan(batch_size=16, lr=0.4, warmup_steps=4), steps=6)
    assert [x[0] for x in m.lrs] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.4])


def test_a_module_scheduler_owns_warmup_but_is_rescaled() -> None:
    m = Tiny(scheduler=True)
    with pytest.warns(UserWarning, match="warmup steps are not applied"):
        trainer = fit(m, Plan(batch_size=16, lr=0.05, warmup_steps=4))
    assert trainer.lr_scheduler_configs[0].scheduler.base_lrs == pytest.approx([0.05])
    assert [x[0] for x in m.lrs] == pytest.approx([0.05] * 4)


def test_loaders_given_to_fit_and_datamodules_are_rebuilt_too() -> None:
    plan = Plan(batch_size=64)
    m = Tiny()
    trainer = fit(m, plan, train_dataloaders=DataLoader(data(), batch_size=4))
    assert m.seen == [64] * 4 and loader_of(trainer).batch_size == 64

    class DM(L.LightningDataModule):
        def train_dataloader(self) -> DataLoader:
            return DataLoader(data(), batch_size=4, shuffle=True)

    m2 = Tiny()
    fit(m2, plan, datamodule=DM())
    assert m2.seen == [64] * 4


def test_rebuild_keeps_what_it_cannot_reproduce() -> None:
    plan = Plan(batch_size=64, num_workers=1)
    custom = DataLoader(data(), batch_size=4,
                        sampler=torch.utils.data.WeightedRandomSampler([1.0] * 256, 256))
    assert rebuild_loader(custom, plan) is custom
    plain = DataLoader(data(), batch_size=4, shuffle=False, drop_last=True)
    rebuilt = rebuild_loader(plain, plan)
    assert rebuilt.batch_size == 64 and rebuilt.num_workers == 1 and rebuilt.drop_last
    assert isinstance(rebuilt.sampler, torch.utils.data.SequentialSampler)


def test_compile_module_follows_the_plan() -> None:
    net = torch.nn.Linear(2, 2)
    assert compile_module(net, Plan()) is net
    assert compile_module(net, Plan(compile="default")) is not net
