"""Score predictions against labels element by element.

Planted: Python loops over tensor elements with ``.item()`` per element (a vectorized
expression does the same in one call) and ``sorted(...)[-1]`` to find the best score.

Run: ``python examples/lint/tensors.py``
"""

from __future__ import annotations

import torch


def accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    correct = 0
    for i in range(len(pred)):  # planted: one Python iteration per element
        if pred[i].item() == labels[i].item():
            correct += 1
    return correct / len(pred)


def squared_error(pred: torch.Tensor, target: torch.Tensor) -> float:
    total = 0.0
    for i in range(pred.shape[0]):  # planted: one Python iteration per element
        total += (pred[i] - target[i]).item() ** 2
    return total


def best_class(scores: list[float]) -> float:
    return sorted(scores)[-1]  # planted: sorts everything to read the maximum


def main(n: int = 20_000) -> str:
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (n,), generator=gen)
    pred = torch.where(torch.rand(n, generator=gen) < 0.8, labels, (labels + 1) % 10)
    err = squared_error(pred.float(), labels.float())
    best = best_class(torch.rand(1_000, generator=gen).tolist())
    return f"accuracy {accuracy(pred, labels):.3f}, squared error {err:.0f}, best {best:.3f}"


if __name__ == "__main__":
    print(main())
