"""The runs of ``long_runs.py``: a plan trained to the target, the baseline run that sets
a target some budgets away (``--target-after``), and the log and load lines."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from typing import Any


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---------------------------------------------------------------- measuring


def run_to_target(w: Any, plan: Any, seed: int, cap_s: float) -> dict[str, Any]:
    """One run of ``plan`` to ``w.target``, capped at ``cap_s`` s of training."""
    from perfpilot.engine import NonFiniteError, run

    load0 = loadavg()
    try:
        r = run(w, plan, until_target=True, time_s=cap_s, seed=seed)
    except NonFiniteError as e:
        return {"seed": seed, "reached": False, "diverged": str(e), "load": load0}
    hist = (r.metric or {}).get("history") or []
    per_step = plan.batch_size * plan.grad_accum
    hit = next((h for h in hist if w.reached(h[2])), None)
    out = {"seed": seed, "reached": r.time_to_target_s is not None,
           "ttt_s": r.time_to_target_s, "samples": hit[0] * per_step if hit else None,
           "trained_s": hist[-1][1] if hist else None, "samples_per_s": r.samples_per_s,
           "last_value": hist[-1][2] if hist else None, "evaluations": len(hist),
           "load": load0, "load_after": loadavg()}
    return out


def target_after(w: Any, seed: int, seconds: float) -> tuple[float, dict[str, Any]]:
    """The target the baseline (seed ``seed``) reaches after about ``seconds`` of training:
    the best 3-point running median of its evaluations (``tune.curve.level_at``), rounded
    to 4 digits on the reachable side; and that run as the pre-check to it (its time: the
    first evaluation at the target). A target some budgets away, by construction."""
    from perfpilot.engine import run
    from perfpilot.tune.curve import level_at

    load0, lo = loadavg(), w.direction == "min"
    # until an unreachable target: the evaluation schedule of the runs to the target
    never = dataclasses.replace(w, target=-1e30 if lo else 1e30)
    r = run(never, w.baseline, until_target=True, time_s=seconds, seed=seed)
    hist = (r.metric or {}).get("history") or []
    level = level_at([[t, v] for _, t, v in hist], math.inf, w.direction)
    if level is None:
        raise SystemExit(f"--target-after: the baseline made no evaluation in {seconds:.0f} s")
    target = (math.ceil if lo else math.floor)(level * 1e4) / 1e4
    hit = next(h for h in hist if (h[2] <= target if lo else h[2] >= target))
    return target, {"seed": seed, "reached": True, "ttt_s": hit[1],
                    "samples": hit[0] * w.baseline.batch_size * w.baseline.grad_accum,
                    "trained_s": hist[-1][1], "samples_per_s": r.samples_per_s,
                    "last_value": hist[-1][2], "evaluations": len(hist), "load": load0,
                    "load_after": loadavg(), "target_after_s": seconds}
