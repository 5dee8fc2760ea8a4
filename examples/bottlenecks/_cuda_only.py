"""Shared by the CUDA-only examples: explain and exit cleanly on a machine without a GPU."""

import sys

import torch


def require_cuda(finding):
    if not torch.cuda.is_available():
        print(f"This example plants `{finding}`, which only exists on a CUDA GPU; no GPU "
              "is available here, so it exits without training. The rule is covered by "
              "unit tests on synthetic records (tests/test_diagnose_cuda.py).")
        sys.exit(0)
    return torch.device("cuda")
