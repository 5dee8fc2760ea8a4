"""Planted bottleneck (CUDA only): fp32-on-tensor-cores.

Large matmuls in full fp32 on a GPU with tensor cores (compute capability 8.0+), with
TF32 explicitly off: the tensor cores sit unused. On an older GPU the rule stays silent.

    perfpilot profile -- python examples/bottlenecks/fp32_on_tensor_cores.py
"""

import torch
import torch.nn as nn

from _cuda_only import require_cuda


def main():
    device = require_cuda("fp32-on-tensor-cores")
    torch.backends.cuda.matmul.allow_tf32 = False  # planted (also PyTorch's default)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(),
                          nn.Linear(4096, 1000)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(1024, 4096, device=device)
    y = torch.randint(0, 1000, (1024,), device=device)
    for step in range(60):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    print(f"final loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
