"""Planted bottleneck: inefficient-membership.

Every step filters its tokens against a stop list kept as a Python *list*: each ``in``
test scans up to 4000 entries. A set makes each test O(1).

    perfpilot profile -- python examples/bottlenecks/inefficient_membership.py
"""

import torch
import torch.nn as nn


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)  # steady timings on a shared machine; not the planted issue
    stop_ids = list(range(0, 8000, 2))  # 4000 "stop word" ids, kept as a list
    vocab = 8000
    model = nn.Sequential(nn.EmbeddingBag(vocab, 32), nn.Linear(32, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)
    for step in range(40):
        tokens = torch.randint(0, vocab, (400,), generator=gen).tolist()
        kept = []
        for t in tokens:
            if t not in stop_ids:  # the planted O(n) scan per token
                kept.append(t)
        ids = torch.tensor(kept).view(1, -1)
        label = torch.tensor([len(kept) % 2])
        opt.zero_grad()
        loss = loss_fn(model(ids), label)
        loss.backward()
        opt.step()
    print(f"final loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
