"""Planted bottleneck: system-time (allocator churn).

A feature-gating model on a large batch: each step's activations and gradients are
36 MiB tensors, above glibc malloc's largest mmap threshold (32 MiB), so every one is
mapped fresh and unmapped on free and the kernel faults (and zeroes) its pages in again
on every step. The arithmetic per element is cheap, so most of the step's CPU time is
the kernel's.

    perfpilot profile --verify -- python examples/bottlenecks/alloc_churn.py
"""

import torch


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)  # steady timings on a shared machine; not the planted issue
    gate = torch.nn.Parameter(torch.ones(1024))
    opt = torch.optim.SGD([gate], lr=1e-3)
    x = torch.randn(9216, 1024)  # 36 MiB batch, reused: only the activations churn
    for _ in range(30):
        h = torch.tanh(x * gate)  # 36 MiB, fresh every step
        loss = (h * h).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"final loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
