"""Planted bottleneck: io-in-loop.

The loop writes a checkpoint after every optimizer step; the model is small, but the
save costs more than the step.

    perfpilot profile -- python examples/bottlenecks/io_in_loop.py
"""

import os
import tempfile

import torch
import torch.nn as nn


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)  # steady timings on a shared machine; not the planted issue
    model = nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 512),
                          nn.ReLU(), nn.Linear(512, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "checkpoint.pt")
        for step in range(50):
            x, y = torch.randn(32, 512), torch.randint(0, 10, (32,))
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            torch.save({"model": model.state_dict(), "step": step}, path)  # every step
    print(f"final loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
