"""A clean, well-tuned training script: perfpilot should report nothing above 1.1x.

In-memory data indexed a whole batch at a time, a batch large enough to amortize
per-step overhead, one thread per core at most, no I/O in the loop, and a short
evaluation under no_grad at the end.

    perfpilot profile -- python examples/bottlenecks/clean.py
"""

import sys

import torch
import torch.nn as nn


def main(epochs=1):
    torch.manual_seed(0)
    torch.set_num_threads(1)  # a small model on a shared machine: one thread is fastest
    x = torch.randn(16384, 128)
    y = (x[:, :8].sum(1) > 0).long()
    x_val, y_val = torch.randn(2048, 128), None
    y_val = (x_val[:, :8].sum(1) > 0).long()
    model = nn.Sequential(nn.Linear(128, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                          nn.Linear(512, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    batch = 256
    for epoch in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    model.eval()
    with torch.inference_mode():
        acc = (model(x_val).argmax(1) == y_val).float().mean().item()
    print(f"loss {loss.item():.3f} accuracy {acc:.3f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)  # more epochs: a longer run
