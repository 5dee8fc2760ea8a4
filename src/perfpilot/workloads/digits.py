"""Built-in workload ``digits``: a small CNN on scikit-learn's 8x8 handwritten digits.

The data ships with scikit-learn (1797 images, no download). A fixed seeded split keeps 20%
(359 images) for validation. The metric is validation accuracy; the target, 0.97, is reached
by the baseline (Adam, lr 1e-3, batch 32, fp32) within a few epochs.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from perfpilot.plan import Plan
from perfpilot.workload import Workload
from perfpilot.workloads._common import (
    TensorPairs,
    accuracy,
    adam,
    classification_loss,
    split_indices,
)

SPLIT_SEED = 0
VAL_FRACTION = 0.2


@lru_cache(maxsize=1)
def _tensors() -> tuple[torch.Tensor, torch.Tensor]:
    # Cached: train_data() and val_data() both need it and sklearn parses a CSV each call.
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # N,1,8,8 in [0,1]
    y = torch.tensor(digits.target, dtype=torch.int64)
    return x, y


def _subset(part: int) -> TensorPairs:
    x, y = _tensors()
    idx = split_indices(len(y), VAL_FRACTION, SPLIT_SEED)[part]
    return TensorPairs(x[idx].clone(), y[idx].clone())


def train_data() -> TensorPairs:
    """80% of the digits, ``(image[1,8,8] float32 in [0,1], label int64)`` pairs."""
    return _subset(0)


def val_data() -> TensorPairs:
    """The held-out 20% of the digits."""
    return _subset(1)


def model() -> nn.Module:
    """Two 3x3 convolutions, a max-pool and two linear layers (~150k parameters)."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def workload() -> Workload:
    return Workload(
        name="digits",
        model=model,
        train_data=train_data,
        val_data=val_data,
        loss=classification_loss,
        optimizer=adam,
        metric=accuracy,
        metric_name="val_accuracy",
        direction="max",
        target=0.97,
        baseline=Plan(batch_size=32, lr=1e-3),
        description="small CNN on scikit-learn's 8x8 digits (offline); target 97% val accuracy",
    )
