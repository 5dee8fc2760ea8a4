"""Collect per-batch features into one tensor and one report.

Planted: three accumulators regrown by concatenation on every iteration
(``torch.cat``, ``np.append`` and ``str +=``), each copying everything so far.

Run: ``python examples/lint/features.py``
"""

from __future__ import annotations

import numpy as np
import torch


def batches(n: int, size: int = 32, dim: int = 16) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(size, dim, generator=gen) for _ in range(n)]


def collect(parts: list[torch.Tensor]) -> tuple[torch.Tensor, np.ndarray, str]:
    features = torch.empty(0, parts[0].shape[1])
    norms = np.zeros(0)
    log = ""
    for i, batch in enumerate(parts):
        features = torch.cat([features, batch.relu()])  # planted: regrows the tensor
        norms = np.append(norms, batch.norm(dim=1).numpy())  # planted: regrows the array
        log += f"batch {i}: mean {batch.mean():.3f}\n"  # planted: regrows the str
    return features, norms, log


def main(n: int = 400) -> str:
    features, norms, log = collect(batches(n))
    return f"{tuple(features.shape)} features, {norms.size} norms, {len(log)} log chars"


if __name__ == "__main__":
    print(main())
