"""Planted bottleneck: small-batch.

Batches of 4 samples: every step pays the optimizer and PyTorch's per-operator dispatch
cost for only 4 samples, so most of a step is overhead that a larger batch would
amortize.

    perfpilot profile -- python examples/bottlenecks/small_batch.py
"""

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)  # steady timings on a shared machine; not the planted issue
    x = torch.randn(3000, 128)
    y = (x[:, :10].sum(1) > 0).long()
    model = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                          nn.Linear(256, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True)
    for xb, yb in loader:
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
    print(f"final loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
