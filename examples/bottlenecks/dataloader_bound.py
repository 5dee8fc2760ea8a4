"""Planted bottleneck: dataloader-bound.

Each sample is "read from storage" (a 1 ms sleep stands in for I/O latency) in
``__getitem__``, and the DataLoader loads in the main process (``num_workers=0``), so the
model waits for every batch. perfpilot names it and suggests worker processes.

    perfpilot profile -- python examples/bottlenecks/dataloader_bound.py
"""

import time

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset


class FileDataset(Dataset):
    """1024 samples, each "read" from storage then decoded."""

    def __len__(self):
        return 1024

    def __getitem__(self, i):
        time.sleep(0.001)  # waiting on storage: I/O-bound, so worker processes overlap it
        g = torch.Generator().manual_seed(i)
        return torch.randn(64, generator=g), i % 10


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)  # steady timings on a shared machine; not the planted issue
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss_fn = nn.CrossEntropyLoss()
    loader = DataLoader(FileDataset(), batch_size=32, shuffle=True)
    for x, y in loader:
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    print(f"final loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
