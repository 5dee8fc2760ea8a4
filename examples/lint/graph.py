"""Breadth-first search over a random graph and a join of orders with customers.

Planted: ``list.pop(0)`` as a queue (every pop shifts the whole list) and two nested
loops matching orders to customers by id (len(orders) x len(customers) comparisons).

Run: ``python examples/lint/graph.py``
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Customer:
    id: int
    name: str


@dataclass(frozen=True)
class Order:
    customer_id: int
    amount: float


def random_graph(n: int, degree: int = 4, seed: int = 0) -> dict[int, list[int]]:
    rng = random.Random(seed)
    return {v: [rng.randrange(n) for _ in range(degree)] for v in range(n)}


def distances(graph: dict[int, list[int]], start: int) -> dict[int, int]:
    dist = {start: 0}
    queue = [start]
    while queue:
        node = queue.pop(0)  # planted: O(len(queue)) per pop
        for nxt in graph[node]:
            if nxt not in dist:
                dist[nxt] = dist[node] + 1
                queue.append(nxt)
    return dist


def revenue_by_name(orders: list[Order], customers: list[Customer]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for order in orders:
        for customer in customers:
            if order.customer_id == customer.id:  # planted: nested-loop join
                totals[customer.name] = totals.get(customer.name, 0.0) + order.amount
    return totals


def main(n: int = 30_000, n_customers: int = 400, n_orders: int = 2_000) -> str:
    dist = distances(random_graph(n), 0)
    rng = random.Random(1)
    customers = [Customer(i, f"c{i}") for i in range(n_customers)]
    orders = [Order(rng.randrange(n_customers), rng.random()) for _ in range(n_orders)]
    totals = revenue_by_name(orders, customers)
    return f"{len(dist)} nodes reached, {len(totals)} customers with orders"


if __name__ == "__main__":
    print(main())
