"""Stages run alone, in memory: no baseline run, no study on disk, no final check.

``benchmarks/hardware.py`` times the stages with :func:`run_stages`; ``perfpilot tune``
runs the whole pipeline (:func:`perfpilot.tune.pipeline.tune`). Budgets are split by
:mod:`perfpilot.tune.budget`, as in the pipeline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from perfpilot.tune.budget import stage_share


def run_stages(workload: Any, stages: Sequence[str], budget_s: float, *,
               horizon_s: float | None = None, trials: Any = None,
               on_message: Callable[[str], None] = lambda m: None,
               on_stage: Callable[[str, float], None] = lambda s, b: None,
               clock: Callable[[], float] = time.monotonic) -> list[dict[str, Any]]:
    """Run ``stages`` in order from the workload's baseline, in memory: no baseline run,
    no study, no final check, no files (benchmarks/hardware.py times the stages with it;
    ``perfpilot tune`` runs :func:`perfpilot.tune.pipeline.tune`). One dict per stage with
    its ``result`` (a StageResult), ``budget_s`` and ``elapsed_s``."""
    from perfpilot.devices import discover
    from perfpilot.tune.stage import StageContext, load_stage
    from perfpilot.tune.study import Study

    trials = trials if trials is not None else Study()
    machine = discover().to_dict()
    plan, start, out = workload.baseline, clock(), []
    for i, name in enumerate(stages):
        share = stage_share(stages, i, budget_s - (clock() - start))
        on_stage(name, share)
        ctx = StageContext(workload=workload, incumbent=plan, trials=trials, budget_s=share,
                           horizon_s=horizon_s, machine=machine, progress=on_message)
        t0 = clock()
        result = load_stage(name).run(ctx)
        out.append({"result": result, "budget_s": share, "elapsed_s": clock() - t0})
        plan = result.plan
    return out
