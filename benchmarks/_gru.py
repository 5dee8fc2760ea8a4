"""A GRU sequence regressor, as a new user writes one (issue 20's third workload): the
final-check benchmark's second workload (``benchmarks/final_check.py --workload
benchmarks/_gru.py:workload``). Synthetic data, seeded: no download."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from perfpilot.plan import Plan
from perfpilot.workload import Workload

SEQ, FEATURES, HIDDEN, N = 64, 16, 128, 4096


class GRURegressor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(FEATURES, HIDDEN, num_layers=2, batch_first=True)
        self.head = nn.Linear(HIDDEN, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.head(out[:, -1]).squeeze(-1)


def data() -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, SEQ, FEATURES, generator=g)
    y = x[:, :, 0].cumsum(1)[:, -1] / SEQ ** 0.5 + 0.1 * torch.randn(N, generator=g)
    return torch.utils.data.TensorDataset(x, y)


def mse(model: nn.Module, batch: Any) -> torch.Tensor:
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def adam(params: Any, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr)


def workload() -> Workload:
    return Workload(name="gru", model=GRURegressor, train_data=data, loss=mse, optimizer=adam,
                    baseline=Plan(batch_size=64, lr=1e-3),
                    description=f"2-layer GRU ({HIDDEN} hidden) regressing a running sum "
                                f"over {SEQ} steps of {FEATURES} features (synthetic)")
