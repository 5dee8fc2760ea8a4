"""Planted bottleneck: repeated-concat.

The loop keeps every batch's embeddings by regrowing one tensor with ``torch.cat``: each
call copies everything gathered so far, so the copying grows quadratically with the
number of steps.

    perfpilot profile -- python examples/bottlenecks/repeated_concat.py
"""

import torch
import torch.nn as nn


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)  # steady timings on a shared machine; not the planted issue
    encoder = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128))
    head = nn.Linear(128, 10)
    opt = torch.optim.SGD([*encoder.parameters(), *head.parameters()], lr=0.05)
    loss_fn = nn.CrossEntropyLoss()
    embeddings = torch.empty(0, 128)
    for step in range(300):
        x, y = torch.randn(64, 64), torch.randint(0, 10, (64,))
        z = encoder(x)
        opt.zero_grad()
        loss = loss_fn(head(z), y)
        loss.backward()
        opt.step()
        embeddings = torch.cat([embeddings, z.detach()])  # the planted O(n^2) regrowth
    print(f"kept {embeddings.shape[0]} embeddings, final loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
