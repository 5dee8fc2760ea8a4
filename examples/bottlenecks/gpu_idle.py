"""Planted bottleneck (CUDA only): gpu-idle.

Each step prepares its batch on the CPU in the training loop (per-step augmentation
with CPU tensor ops) before a short GPU step: the GPU waits for the host most of the
time, and no single data-loading, sync or copy problem explains it.

    perfpilot profile -- python examples/bottlenecks/gpu_idle.py
"""

import torch
import torch.nn as nn

from _cuda_only import require_cuda


def augment(batch):
    """CPU work in the loop body: noise, random flips and a normalization."""
    batch = batch + 0.05 * torch.randn_like(batch)
    flip = torch.rand(batch.shape[0]) < 0.5
    batch[flip] = batch[flip].flip(-1)
    return (batch - batch.mean()) / (batch.std() + 1e-6)


def main():
    device = require_cuda("gpu-idle")
    torch.manual_seed(0)
    data = torch.randn(4096, 3, 64, 64)
    labels = torch.randint(0, 10, (4096,))
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                          nn.Flatten(), nn.Linear(256, 10)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    for step in range(120):
        idx = torch.randint(0, 4096, (256,))
        x = augment(data[idx]).pin_memory().to(device, non_blocking=True)
        y = labels[idx].pin_memory().to(device, non_blocking=True)
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    print(f"final loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
