"""Planted bottleneck: thread-oversubscription.

The script asks torch for 8 intra-op threads per core. Threads beyond the cores this
process may use only add scheduling and synchronization overhead to every parallel op.

    perfpilot profile -- python examples/bottlenecks/thread_oversubscription.py
"""

import os

import torch
import torch.nn as nn


def main():
    torch.manual_seed(0)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(8 * cores)  # the planted oversubscription
    model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                          nn.Linear(512, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    for step in range(20):
        x, y = torch.randn(128, 256), torch.randint(0, 10, (128,))
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    print(f"final loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
