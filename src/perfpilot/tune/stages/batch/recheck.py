"""The batch decision under a proxy target: re-checked at a later level, extrapolated.

When the baseline missed the real target (:mod:`perfpilot.tune.proxy`), the batch stage
decides on an early level its budget affords (the *decision level*). A larger batch that
wins early can lose later (short-horizon bias: the gradient noise scale grows as the loss
falls, and so does the benefit of a large batch, but an LR raised for it may also stall),
so :func:`recheck` runs the winner and the baseline again, paired by seed, to the proxy
target itself (a later level) while whole rounds fit in what the stage kept for it, and:

* **confirmed** (the winner's median time to the later level is no longer than the
  baseline's): the decision stands, with both levels' figures;
* **not confirmed**: the baseline is kept, and the record says why;
* **not re-checked** (no round fits): the decision stands and says it was not re-checked.

Times are modelled like every batch-stage time (samples to the level / samples per second
measured at that batch), so the machine's load does not enter the comparison.
:func:`extrapolations` fits each configuration's pooled runs with a learning curve and
extrapolates its time to the real target (what was measured and what was extrapolated
stay separate in the evidence).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from perfpilot.tune.proxy import ProxyTarget, extrapolate_config
from perfpilot.tune.stages.batch.validate import ConfigRuns, Decision, Validation

if TYPE_CHECKING:
    from perfpilot.tune.stages.batch.runs import RunConfig

RECHECK_SHARE = 0.3  # of the stage's validation budget, kept for the re-check
RECHECK_ROUNDS = 3
SEED_OFFSET = 1000  # re-check runs use seeds no decision run used
CUTOFF = 2.0  # a re-check run stops at this many times the baseline's time to the level


def recheck(t: Any, val: Validation, decision: Decision, base: RunConfig
            ) -> tuple[Decision, dict[str, Any]]:
    """Re-check ``decision`` (made at ``t.level``) at ``t.proxy.level``; ``t`` is the
    stage's tuning (its ``trial``, ``ttt``, ``left_s``, ``proxy``, ``level``). Returns
    the decision to keep and the evidence of the re-check."""
    proxy: ProxyTarget = t.proxy
    ev: dict[str, Any] = {"level": proxy.level, "rounds": [], "done": False}
    if decision.config == base:
        ev["why"] = "the decision at the earlier level kept the baseline: nothing to re-check"
        return decision, ev
    win, ref = ConfigRuns(decision.config, "recheck"), ConfigRuns(base, "recheck")
    # The baseline's time to the level on the stage's clock: its samples to the level (from
    # the baseline run's curve) at the throughput the stage measured for its batch size.
    base_samples = next(s for s, _, v in proxy.curve
                        if (v >= proxy.level if proxy.direction == "max" else v <= proxy.level))
    base_s = val.seconds(base.batch_size, base_samples)
    early = val.pool[decision.config].median() / max(val.pool[base].median(), 1e-12)
    cost = val.cost(base_s) + val.cost(early * base_s)
    ev.update(baseline_s=base_s, round_cost_s=cost)
    for r in range(RECHECK_ROUNDS):
        if t.left_s() < cost:
            break
        for x in (ref, win) if r % 2 == 0 else (win, ref):
            t.ctx.progress(f"batch: re-check at the proxy target {proxy.level:.4g}, batch "
                           f"{x.config.batch_size} (run {r + 1})")
            trial = t.ttt(x.config, SEED_OFFSET + r, val.max_samples(
                x.config.batch_size, CUTOFF * base_s), level=proxy.level)
            x.add(r, trial, val.seconds)
    ev["runs"] = {"baseline": ref.to_dict(), "chosen": win.to_dict()}
    n = len(set(ref.values()) & set(win.values()))
    if n == 0:
        ev["why"] = (f"not re-checked at the later level {proxy.level:.4g}: a round needs about "
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
        return replace(decision, why=f"{decision.why}; re-checked at the later proxy level "
                       f"{proxy.level:.4g}: {detail}"), ev
    ev["verdict"] = "not-confirmed"
    return Decision(base, f"{name} was faster to the decision level but not to the later "
                    f"proxy level {proxy.level:.4g} ({detail}): a short-horizon gain, so the "
                    "baseline is kept", "not-confirmed", decision.comparison), ev


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
