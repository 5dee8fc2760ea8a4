"""Planted bottleneck: eval-dominates.

After every 10 training steps the script evaluates on the whole validation set (30x the
data those steps saw). Evaluation is done right (eval mode, no_grad), just too often.

    perfpilot profile -- python examples/bottlenecks/eval_dominates.py
"""

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset


def evaluate(model, loader):
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in loader:
            correct += (model(x).argmax(1) == y).sum().item()
    model.train()
    return correct / len(loader.dataset)


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)  # steady timings on a shared machine; not the planted issue
    x = torch.randn(20000, 64)
    y = (x[:, 0] > 0).long()
    train = DataLoader(TensorDataset(x[:1280], y[:1280]), batch_size=64, shuffle=True,
                       drop_last=True)
    val = DataLoader(TensorDataset(x[1280:], y[1280:]), batch_size=512)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(2):
        for step, (xb, yb) in enumerate(train):
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            if step % 10 == 9:
                acc = evaluate(model, val)  # the planted: a full pass every 10 steps
    print(f"accuracy {acc:.3f}")


if __name__ == "__main__":
    main()
