"""How a tuning's budget is split between its stages (the one place that decides it).

Each stage gets its weight's share of the time left when it starts, over the weights of
the stages still to run, so time a stage leaves unused carries over to the next ones.
Stages without a weight here (a stage object passed by a test or a plug-in) weigh 1.
"""

from __future__ import annotations

from collections.abc import Sequence

STAGE_WEIGHTS: dict[str, float] = {"hardware": 2.0, "loader": 1.0, "batch": 2.0}
# The least share a stage is started with. Chosen, not measured per workload: meant to
# hold a reference run and one A/B of the fewest pairs (or a few short runs to the
# target) of a small workload (benchmarks/tune_budget.py shows what the stages used on
# digits at 30-120 s budgets). Below it the stage is skipped and says so: its own floors
# (fewest pairs, shortest runs) would overrun a smaller share. Stages without an entry
# here (plug-ins, tests) have none.
STAGE_MIN_S: dict[str, float] = {"hardware": 6.0, "loader": 4.0, "batch": 6.0}


def too_small(stage: str, share_s: float) -> str | None:
    """Why ``stage`` cannot run in ``share_s`` seconds, or None when it can."""
    least = STAGE_MIN_S.get(stage, 0.0)
    if share_s >= least:
        return None
    return (f"skipped: budget: {max(share_s, 0):.1f} s were left for this stage, it needs "
            f"at least {least:.0f} s")


def stage_share(stages: Sequence[str], index: int, left_s: float) -> float:
    """Seconds for ``stages[index]`` out of ``left_s`` seconds left for it and the rest."""
    weights = [STAGE_WEIGHTS.get(s, 1.0) for s in stages[index:]]
    return max(0.0, left_s) * weights[0] / sum(weights)
