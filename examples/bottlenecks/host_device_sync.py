"""Planted bottleneck (CUDA only): host-device-sync.

Every step reads values back to the host in the middle of the step (``.item()`` per
logged metric, a data-dependent ``nonzero``): each read waits for the GPU to finish
everything queued, so host and GPU take turns instead of overlapping.

    perfpilot profile -- python examples/bottlenecks/host_device_sync.py
"""

import torch
import torch.nn as nn

from _cuda_only import require_cuda


def main():
    device = require_cuda("host-device-sync")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1024, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(),
                          nn.Linear(2048, 10)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(2048, 1024, device=device)
    y = torch.randint(0, 10, (2048,), device=device)
    stats = []
    for step in range(300):
        idx = torch.randint(0, 2048, (256,), device=device)
        out = model(x[idx])
        loss = loss_fn(out, y[idx])
        confident = (out.softmax(1).max(1).values > 0.5).nonzero()  # sync: unknown size
        stats.append((loss.item(), len(confident), out.abs().max().item()))  # 2 more syncs
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"final loss {stats[-1][0]:.3f}")


if __name__ == "__main__":
    main()
