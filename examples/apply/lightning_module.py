"""Apply a perfpilot plan to a PyTorch Lightning run with ``PlanCallback``.

    pip install 'perfpilot[lightning]'
    perfpilot tune my_workload.py:workload --out tuned   # writes tuned/plan.json
    python examples/apply/lightning_module.py tuned/plan.json

``trainer_kwargs(plan)`` gives the Trainer the plan's device, precision, gradient
accumulation and cuDNN setting; ``PlanCallback(plan)`` applies the rest (threads, batch
size, DataLoader workers/prefetch/pinning, learning rate and warmup, channels_last), and
``compile_module`` compiles the module when the plan says so.
"""

from __future__ import annotations

import argparse

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import perfpilot
from perfpilot.integrations.lightning import PlanCallback, compile_module, trainer_kwargs


class DigitsModule(L.LightningModule):
    def __init__(self, batch_size: int = 32, lr: float = 1e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(16 * 8 * 8, 10))
        self.losses: list[float] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.losses.append(loss.item())
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    def train_dataloader(self) -> DataLoader:
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
        data = TensorDataset(x, torch.tensor(d.target))
        return DataLoader(data, batch_size=self.hparams.batch_size, shuffle=True)


def main(plan_path: str | None = None, steps: int = 300) -> DigitsModule:
    plan = perfpilot.load_plan(plan_path) if plan_path else perfpilot.Plan()
    module = DigitsModule()
    trainer = L.Trainer(max_steps=steps, callbacks=[PlanCallback(plan)],  # <- the plan
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, **trainer_kwargs(plan))
    trainer.fit(compile_module(module, plan))
    return module


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan", nargs="?", help="a plan.json written by perfpilot tune")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    m = main(args.plan, args.steps)
    print(f"trained {len(m.losses)} steps; loss {m.losses[0]:.3f} -> {m.losses[-1]:.3f}")
