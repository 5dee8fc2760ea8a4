"""The batch decision under a proxy target: re-checked at a later level, extrapolated.

When the baseline missed the real target (:mod:`perfpilot.tune.proxy`), the batch stage
decides on an early level its budget affords (the *decision level*). A larger batch that
wins early can lose later (short-horizon bias: the gradient noise scale grows as the loss
falls, and so does the benefit of a large batch, but an LR raised for it may also stall),
so :func:`recheck` runs the winner and the baseline again, paired by new seeds, to a later
level (:func:`later_level`: the proxy target itself when its rounds fit in what the stage
kept for them, else the latest level of the baseline's curve that fits, at least twice the
decision level's samples), and:

* **confirmed** (the winner's median time to the later level is no longer than the
  baseline's): the decision stands, with both levels' figures;
* **not confirmed**: the baseline is kept, and the record says why;
* **not re-checked** (no later level's rounds fit): the decision stands and says so.

Times are modelled like every batch-stage time (samples to the level / samples per second
measured at that batch), so the machine's load does not enter the comparison.
:func:`extrapolations` fits each configuration's pooled runs with a learning curve and
extrapolates its time to the real target (what was measured and what was extrapolated
stay separate in the evidence).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from perfpilot.tune.curve import level_at
from perfpilot.tune.proxy import ProxyTarget, extrapolate_config
from perfpilot.tune.stages.batch.validate import ConfigRuns, Decision, Validation

if TYPE_CHECKING:
    from perfpilot.tune.stages.batch.runs import RunConfig

RECHECK_SHARE = 0.3  # of the stage's validation budget, kept for the re-check
RECHECK_ROUNDS = 3
MIN_RECHECK_ROUNDS = 2  # a later level is chosen so that at least this many rounds fit
SEED_OFFSET = 1000  # re-check runs use seeds no decision run used
CUTOFF = 2.0  # a re-check run stops at this many times the baseline's time to the level
MIN_LATER = 2.0  # a re-check level is at least this many times the decision level's samples


def recheck(t: Any, val: Validation, decision: Decision, base: RunConfig
            ) -> tuple[Decision, dict[str, Any]]:
    """Re-check ``decision`` (made at ``t.level``) at a later level (:func:`later_level`);
    ``t`` is the stage's tuning (its ``trial``, ``ttt``, ``left_s``, ``proxy``,
    ``level``). Returns the decision to keep and the evidence of the re-check."""
    proxy: ProxyTarget = t.proxy
    ev: dict[str, Any] = {"level": proxy.level, "rounds": [], "done": False}
    if decision.config == base:
        ev["why"] = "the decision at the earlier level kept the baseline: nothing to re-check"
        return decision, ev
    win, ref = ConfigRuns(decision.config, "recheck"), ConfigRuns(base, "recheck")
    early = val.pool[decision.config].median() / max(val.pool[base].median(), 1e-12)
    level, base_s, cost = later_level(t, val, base, early)
    ev.update(level=level, baseline_s=base_s, round_cost_s=cost)
    for r in range(RECHECK_ROUNDS):
        if level is None or t.left_s() < cost:
            break
        for x in (ref, win) if r % 2 == 0 else (win, ref):
            t.ctx.progress(f"batch: re-check at the later level {level:.4g}, batch "
                           f"{x.config.batch_size} (run {r + 1})")
            trial = t.ttt(x.config, SEED_OFFSET + r, val.max_samples(
                x.config.batch_size, CUTOFF * base_s), level=level)
            x.add(r, trial, val.seconds)
    level = proxy.level if level is None else level
    ev["runs"] = {"baseline": ref.to_dict(), "chosen": win.to_dict()}
    n = len(set(ref.values()) & set(win.values()))
    if n == 0:
        ev["why"] = (f"not re-checked at a later level: a round to {level:.4g} needs about "
                     f"{cost:.0f} s, {max(t.left_s(), 0):.0f} s were left")
        return replace(decision, why=f"{decision.why}; {ev['why']}"), ev
    ev["done"] = True
    a, b = ref.median(), win.median()
    detail = (f"median {b:.3g} s vs the baseline's {a:.3g} s over {n} paired run(s)"
              + ("" if win.reached() else "; it did not reach the level"))
    ev.update(baseline_median_s=a, chosen_median_s=b, ratio=a / b if b else None)
    name = f"batch {decision.config.batch_size} (lr {decision.config.lr:.3g})"
    if win.reached() and b <= a:
        ev["verdict"] = "confirmed"
        return replace(decision, why=f"{decision.why}; re-checked at the later level "
                       f"{level:.4g}: {detail}"), ev
    ev["verdict"] = "not-confirmed"
    return Decision(base, f"{name} was faster to the decision level but not to the later "
                    f"level {level:.4g} ({detail}): a short-horizon gain, so the baseline is "
                    "kept", "not-confirmed", decision.comparison), ev


def later_level(t: Any, val: Validation, base: RunConfig, early: float
                ) -> tuple[float | None, float, float]:
    """``(level, baseline seconds to it, cost of a round)`` for the re-check: the proxy
    target when :data:`MIN_RECHECK_ROUNDS` rounds fit in the time left, else the latest level
    of the baseline's curve that lets them fit, at least :data:`MIN_LATER` times the
    decision level's samples (None, with the proxy target's figures, when none does).
    Times are the stage's model: the baseline's samples to the level (from its curve) at
    the throughput the stage measured for its batch; the winner's, ``early`` times that."""
    proxy: ProxyTarget = t.proxy
    rows = [[samples, v] for samples, _, v in proxy.curve]

    def samples_to(level: float) -> float:
        return proxy.samples_to(level) or rows[-1][0]  # levels of its own curve: held

    def figures(level: float) -> tuple[float, float]:
        base_s = val.seconds(base.batch_size, samples_to(level))
        return base_s, val.cost(base_s) + val.cost(early * base_s)

    top = figures(proxy.level)
    if MIN_RECHECK_ROUNDS * top[1] <= t.left_s():
        return proxy.level, *top
    for x, _ in reversed(rows):  # the latest level (a 3-point running median) that fits
        level = level_at(rows, x, proxy.direction)
        if level is None or samples_to(level) < MIN_LATER * t.level[2]:
            continue
        base_s, cost = figures(level)
        if MIN_RECHECK_ROUNDS * cost <= t.left_s():
            return level, base_s, cost
    return None, *top


def extrapolations(t: Any, val: Validation, base: RunConfig,
                   extra: dict[RunConfig, list[list[float]]]) -> list[dict[str, Any]]:
    """Each reached configuration's time to the real target, extrapolated from its pooled
    runs (and, for the baseline, the tuning's baseline run, which went furthest)."""
    proxy: ProxyTarget = t.proxy
    out = []
    for cfg, runs in val.pool.items():
        if not runs.reached():
            continue
        rows = [row for x in runs.runs.values() for row in x.get("curve") or []]
        rows += extra.get(cfg, [])
        if cfg == base:
            rows += proxy.curve
        ext = extrapolate_config(rows, proxy, val.throughput[cfg.batch_size])
        out.append({**cfg.key(), "measured_median_s": runs.median(),
                    "extrapolation": ext.to_dict() if ext else None,
                    "words": ext.describe() if ext else "no learning curve fits its runs"})
    return sorted(out, key=lambda d: (d["batch_size"], d["lr"]))


def recheck_rows(ev: dict[str, Any], base: RunConfig, chosen: RunConfig
                 ) -> dict[RunConfig, list[list[float]]]:
    """The re-check runs' curves by configuration (they go further than the decision runs)."""
    runs = ev.get("runs") or {}
    out: dict[RunConfig, list[list[float]]] = {}
    for cfg, name in ((base, "baseline"), (chosen, "chosen")):
        out[cfg] = [row for r in (runs.get(name) or {}).get("runs", [])
                    for row in r.get("curve") or []]
    return out
