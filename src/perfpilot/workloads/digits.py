"""Built-in workload ``digits``: a small CNN on scikit-learn's 8x8 handwritten digits.

The data ships with scikit-learn (1797 images, no download). A fixed seeded split keeps 20%
(359 images) for validation. The metric is validation accuracy; the target, 0.97, is reached
by the baseline (Adam, lr 1e-3, batch 32, fp32) within a few epochs.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
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
    """All 1797 digits as ``(N,1,8,8) float32 in [0,1]``, ``(N,) int64``; cached because
    train_data() and val_data() both need them."""
    table = _read_digits_csv()
    x = torch.tensor(table[:, :-1], dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(table[:, -1], dtype=torch.int64)
    return x, y


def _read_digits_csv() -> np.ndarray:
    """The digits table (64 pixels then the label per row) as scikit-learn ships it.

    Read straight from scikit-learn's data file when it is where scikit-learn keeps it:
    importing ``sklearn.datasets`` costs 1-2 s (SciPy), the file itself 0.1 s.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            path = Path(root) / "datasets" / "data" / "digits.csv.gz"
            if path.is_file():
                return np.loadtxt(path, delimiter=",")
    from sklearn.datasets import load_digits

    digits = load_digits()
    return np.column_stack([digits.data, digits.target])


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
