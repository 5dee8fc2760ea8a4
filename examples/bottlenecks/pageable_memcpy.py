"""Planted bottleneck (CUDA only): pageable-memcpy.

Batches live in ordinary (pageable) host memory and are copied with a blocking
``.to("cuda")``: the copy runs at reduced bandwidth through a staging buffer and cannot
overlap compute. Pinned memory and ``non_blocking=True`` fix both.

    perfpilot profile -- python examples/bottlenecks/pageable_memcpy.py
"""

import torch
import torch.nn as nn

from _cuda_only import require_cuda


def main():
    device = require_cuda("pageable-memcpy")
    torch.manual_seed(0)
    images = torch.randn(64, 3, 224, 224)  # ~38 MB per batch, in pageable memory
    labels = torch.randint(0, 10, (64,))
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 10)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    for step in range(100):
        x = images.to(device)  # planted: pageable source, blocking copy
        y = labels.to(device)
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    print(f"final loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
