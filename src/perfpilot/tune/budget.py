"""How a tuning's budget is split between its stages (the one place that decides it).

Each stage gets its weight's share of the time left when it starts, over the weights of
the stages still to run, so time a stage leaves unused carries over to the next ones.
Stages without a weight here (a stage object passed by a test or a plug-in) weigh 1.
"""

from __future__ import annotations

from collections.abc import Sequence

STAGE_WEIGHTS: dict[str, float] = {"hardware": 2.0, "loader": 1.0, "batch": 2.0}


def stage_share(stages: Sequence[str], index: int, left_s: float) -> float:
    """Seconds for ``stages[index]`` out of ``left_s`` seconds left for it and the rest."""
    weights = [STAGE_WEIGHTS.get(s, 1.0) for s in stages[index:]]
    return max(0.0, left_s) * weights[0] / sum(weights)
