"""Planted bottleneck: python-hotspot.

Every step recomputes running statistics of a 30k-value feature log with a pure-Python
loop; the model itself is cheap. The loop is the step's cost.

    perfpilot profile -- python examples/bottlenecks/python_hotspot.py
"""

import random

import torch
import torch.nn as nn


def running_stats(values):
    """Mean and variance with Welford's update, one Python iteration per value."""
    n, mean, m2 = 0, 0.0, 0.0
    for v in values:
        n += 1
        d = v - mean
        mean += d / n
        m2 += d * (v - mean)
    return mean, m2 / max(n - 1, 1)


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)  # steady timings on a shared machine; not the planted issue
    random.seed(0)
    feature_log = [random.gauss(0.0, 1.0) for _ in range(30000)]
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(200):
        x = torch.randn(64, 32)
        mean, var = running_stats(feature_log)  # the planted hot spot
        target = torch.full((64, 1), mean)
        opt.zero_grad()
        loss = ((model(x) - target) ** 2).mean() + 0.0 * var
        loss.backward()
        opt.step()
    print(f"final loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
