"""Pieces shared by the built-in workloads: a tensor-pair dataset, loss, metric, optimizers.

Everything here is module-level (no lambdas, no closures) so that workloads and datasets
pickle by reference for DataLoader workers and process executors.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


class TensorPairs(Dataset):
    """A map-style dataset of ``(x[i], y[i])`` pairs over two tensors of equal length."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


def classification_loss(model: torch.nn.Module, batch: Any) -> torch.Tensor:
    """Mean cross-entropy of ``model(x)`` against integer labels ``y``."""
    x, y = batch
    return F.cross_entropy(model(x), y)


def accuracy(model: torch.nn.Module, batch: Any) -> float:
    """Fraction of the batch whose arg-max class equals the label."""
    x, y = batch
    return (model(x).argmax(dim=1) == y).float().mean().item()


def adam(params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random train/val split of ``range(n)``; the same for a given seed everywhere."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    n_val = round(n * val_fraction)
    return perm[n_val:], perm[:n_val]
