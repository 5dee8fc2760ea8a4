"""Planted bottleneck (CUDA only): memory-headroom.

A small CNN trained with batches of 16 on a GPU with tens of GB: peak memory is a few
percent of the device, the GPU is mostly waiting on kernel launches, and the batch
could grow many times over.

    perfpilot profile -- python examples/bottlenecks/memory_headroom.py
"""

import torch
import torch.nn as nn

from _cuda_only import require_cuda


def main():
    device = require_cuda("memory-headroom")
    torch.manual_seed(0)
    data = torch.randn(8192, 3, 32, 32, device=device)
    labels = torch.randint(0, 10, (8192,), device=device)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    for step in range(400):
        idx = torch.randint(0, 8192, (16,), device=device)  # planted: batch of 16
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(data[idx]), labels[idx])
        loss.backward()
        opt.step()
    print(f"final loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
