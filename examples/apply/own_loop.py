"""Use a perfpilot plan in your own PyTorch training loop.

    perfpilot tune my_workload.py:workload --out tuned   # writes tuned/plan.json
    python examples/apply/own_loop.py tuned/plan.json

The loop below is an ordinary PyTorch loop over scikit-learn's digits. Two lines use the
plan: ``perfpilot.apply`` (threads, device, precision, compile, channels_last, the
DataLoader with the plan's batch size and workers, the learning rate) and the ``pp.*``
calls inside the loop (device copies, warmup, autocast, the fp16 GradScaler on CUDA).
Without a plan file it uses ``Plan()`` (perfpilot's defaults).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

import perfpilot


def my_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(16 * 8 * 8, 10))


def my_dataset() -> TensorDataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return TensorDataset(x, torch.tensor(d.target))


def main(plan_path: str | None = None, steps: int = 300) -> list[float]:
    """Train ``steps`` optimizer steps under the plan; returns the losses."""
    model = my_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    plan = perfpilot.load_plan(plan_path) if plan_path else perfpilot.Plan()
    pp = perfpilot.apply(plan, model, optimizer, my_dataset())  # <- the plan, applied

    losses: list[float] = []
    while len(losses) < steps:
        for batch in pp.loader:  # the plan's batch size, workers, prefetching, pinning
            x, y = pp.to_device(batch)
            pp.update_lr(len(losses))  # the plan's lr, with its warmup
            with pp.autocast():
                loss = F.cross_entropy(pp.model(x), y)
            if pp.scaler is not None:  # fp16 on CUDA
                pp.scaler.scale(loss).backward()
                pp.scaler.step(optimizer)
                pp.scaler.update()
            else:
                loss.backward()
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            if len(losses) == steps:
                break
    return losses


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan", nargs="?", help="a plan.json written by perfpilot tune")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    losses = main(args.plan, args.steps)
    print(f"trained {len(losses)} steps; loss {losses[0]:.3f} -> {losses[-1]:.3f}")
