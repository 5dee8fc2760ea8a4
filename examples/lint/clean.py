"""The same work as the other examples in examples/lint, written without their slow
patterns: ``perfpilot lint`` reports nothing here (ruff's speed rules included).

Run: ``python examples/lint/clean.py``
"""

from __future__ import annotations

import random
from collections import deque

import torch


def build_vocab(tokens: list[str]) -> list[str]:
    return list(dict.fromkeys(tokens))  # keeps first-seen order, O(1) per token


def collect(parts: list[torch.Tensor]) -> tuple[torch.Tensor, str]:
    features = torch.cat([p.relu() for p in parts])  # one concatenation
    log = "".join(f"batch {i}: mean {p.mean():.3f}\n" for i, p in enumerate(parts))
    return features, log


def distances(graph: dict[int, list[int]], start: int) -> dict[int, int]:
    dist = {start: 0}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in graph[node]:
            if nxt not in dist:
                dist[nxt] = dist[node] + 1
                queue.append(nxt)
    return dist


def revenue_by_customer(orders: list[tuple[int, float]], names: dict[int, str]) -> dict:
    totals: dict[str, float] = {}
    for customer_id, amount in orders:
        name = names[customer_id]  # a dict index instead of an inner loop
        totals[name] = totals.get(name, 0.0) + amount
    return totals


def accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    return (pred == labels).float().mean().item()


def main() -> str:
    rng = random.Random(0)
    tokens = [f"w{rng.randrange(500)}" for _ in range(5_000)]
    vocab = build_vocab(tokens)
    gen = torch.Generator().manual_seed(0)
    features, log = collect([torch.randn(8, 4, generator=gen) for _ in range(10)])
    graph = {v: [rng.randrange(1_000) for _ in range(3)] for v in range(1_000)}
    dist = distances(graph, 0)
    orders = [(rng.randrange(50), rng.random()) for _ in range(500)]
    totals = revenue_by_customer(orders, {i: f"c{i}" for i in range(50)})
    labels = torch.randint(0, 10, (100,), generator=gen)
    best = max(rng.random() for _ in range(100))
    return (f"{len(vocab)} words, {tuple(features.shape)}, {len(log)} chars, {len(dist)} "
            f"reached, {len(totals)} customers, accuracy {accuracy(labels, labels):.2f}, "
            f"best {best:.2f}")


if __name__ == "__main__":
    print(main())
