"""The loader stage: DataLoader workers, persistence, prefetching and pinning, by measurement.

1. A *probe* trial trains the incumbent for a few steps and measures the data wait per
   step (the share of each step spent waiting for the next batch).
2. Below :data:`DATA_BOUND_SHARE` the loader is not the bottleneck and no worker count is
   tried (the evidence says so with the measured share). Otherwise worker counts are tried
   in increasing order, each with intra-op threads lowered so that workers x threads stays
   within the usable cores (oversubscription is slower, not faster). Each is one
   interleaved A/B trial against the incumbent (:class:`~perfpilot.tune.tournament.Tournament`);
   a count that is not a measured gain is not kept, and the next one is still tried (one
   worker often only moves the work; two run it in parallel). Adding workers stops once the
   kept plan's data wait is no longer the bottleneck.
3. ``persistent_workers``, a larger ``prefetch_factor`` and (CUDA only) ``pin_memory`` are
   then measured the same way.

Loader knobs do not change the model's math, so parity here only refuses non-finite
losses (with workers, random augmentations draw from per-worker RNG streams, so losses
are not expected to match the single-process run step for step).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from perfpilot.trial import Outcome, TrialLog
from perfpilot.tune import parity as par
from perfpilot.tune.abtest import TrainerFactory, probe
from perfpilot.tune.stage import StageContext, StageResult
from perfpilot.tune.stages.candidates import (
    Candidate,
    DeviceInfo,
    device_infos,
    info_for,
    loader_extras,
    worker_candidates,
)
from perfpilot.tune.tournament import Horizon, Tournament, options_settings, settings_key

if TYPE_CHECKING:
    from perfpilot.plan import Plan
    from perfpilot.trial import Trial

DATA_BOUND_SHARE = 0.05  # below 5% data wait, even removing all of it gains less than 5.3%
PROBE_STEPS = 12
Clock = Callable[[], float]


class LoaderStage:
    """Chooses num_workers (with cpu_threads fitted), persistent_workers, prefetch_factor
    and pin_memory. Arguments are for tests (see :class:`.HardwareStage`).
    ``ctx.options``: ``probe_steps``, ``data_bound_share``, ``chunk_s``, ``pairs``,
    ``min_effect``, ``confirm`` (default true)."""

    name = "loader"

    def __init__(self, *, trainer_factory: TrainerFactory | None = None,
                 clock: Clock = time.perf_counter,
                 infos: Callable[[], list[DeviceInfo]] | None = None) -> None:
        self.trainer_factory, self.clock = trainer_factory, clock
        self.infos = infos or device_infos

    def run(self, ctx: StageContext) -> StageResult:
        with ctx.trials.observe(TrialLog()) as log:  # the stage's trials, run or recalled
            return self._run(ctx, log)

    def _run(self, ctx: StageContext, rec: TrialLog) -> StageResult:
        started = self.clock()
        start, o = ctx.incumbent, ctx.options
        threshold = float(o.get("data_bound_share", DATA_BOUND_SHARE))
        pr = self._probe(ctx, int(o.get("probe_steps", PROBE_STEPS)))
        if pr.state != "complete":
            return StageResult(self.name, start, rec.trials(),
                               {"probe_trial": pr.number, "error": pr.reason},
                               f"probing the incumbent failed ({pr.state}): {pr.reason}")
        m = pr.measurements
        horizon = Horizon(ctx, self.name, start)
        t = Tournament(ctx, self.name, options_settings(ctx, m["step_s"]), self.clock,
                       self.trainer_factory, horizon, m["step_s"], m["build_s"], started)
        info = info_for(start.device, self.infos())
        stop = self._workers(t, info, m["data_share"], threshold)
        extras = loader_extras(t.incumbent, info)
        for i, cand in enumerate(extras):
            t.challenge(cand, par.finite_checker(), pending=_live(extras[i:]))
        evidence: dict[str, Any] = {
            "probe_trial": pr.number, "data_share": m["data_share"], "step_s": m["step_s"],
            "data_bound_share": threshold, "cores": info.cores, "workers_stopped": stop,
            "settings": settings_key(t.settings), "candidates": t.entries,
            "horizon": horizon.evidence(),
        }
        if o.get("confirm", True):
            evidence["final"] = t.confirm(start)
        return StageResult(self.name, t.incumbent, rec.trials(),
                           evidence, _summary(start, t, m["data_share"], threshold))

    def _probe(self, ctx: StageContext, steps: int) -> Trial:
        """The incumbent's data wait per step (and the step time that sizes A/Bs)."""
        ctx.progress("loader: measuring the data wait per step")
        cap = ctx.budget_s / 8
        key = {"check": "probe", "plan": ctx.incumbent.to_dict(), "steps": steps,
               "time_cap_s": cap}
        return ctx.trials.run(self.name, key, lambda: Outcome("complete", probe(
            ctx.workload, ctx.incumbent, steps, time_cap_s=cap,
            trainer_factory=self.trainer_factory, clock=self.clock)))

    def _workers(self, t: Tournament, info: DeviceInfo, share: float, threshold: float) -> str:
        """Try more workers while data wait is the bottleneck; returns why it stopped."""
        cores = info.cores
        if share < threshold:
            why = (f"data wait is {share:.1%} of a step (< {threshold:.0%}): the loader is "
                   "not the bottleneck")
            for cand in worker_candidates(t.incumbent, cores):
                t.skip(cand, why)
            return why
        tried: set[tuple[Any, ...]] = set()
        while True:
            todo = [c for c in worker_candidates(t.incumbent, cores) if _ident(c) not in tried]
            if not todo:
                return "tried every worker count up to the usable cores"
            cand = todo[0]
            tried.add(_ident(cand))
            # Budget shares: the worker counts left, and the extras a worker count enables.
            pending = len(todo) + _live(loader_extras(cand.apply(t.incumbent), info))
            entry = t.challenge(cand, par.finite_checker(), pending=pending)
            new_share = entry.get("data_share", {}).get("candidate")
            if entry["fate"] == "accepted" and new_share is not None and new_share < threshold:
                why = (f"data wait fell to {new_share:.1%} of a step with {cand.label()}: no "
                       "longer the bottleneck")
                for rest in todo[1:]:
                    t.skip(rest, why)
                return why
            if entry["fate"] == "skipped" and entry["reason"].startswith("budget"):
                for rest in todo[1:]:
                    t.skip(rest, entry["reason"])
                return "budget"


def _live(cands: list[Candidate]) -> int:
    return sum(c.skip is None for c in cands)


def _ident(c: Candidate) -> tuple[Any, ...]:
    return tuple(sorted(c.changes.items()))


def _summary(start: Plan, t: Tournament, share: float, threshold: float) -> str:
    changes = start.diff(t.incumbent)
    if not changes:
        if share < threshold:
            return f"kept the loader: data wait is {share:.1%} of a step"
        return f"kept the loader: data wait is {share:.1%} of a step, but no change was a " \
               "measured gain"
    won = [f"{e['label']} ({e['speedup']:.2f}x [{e['ci_low']:.2f}, {e['ci_high']:.2f}])"
           for e in t.entries if e["fate"] == "accepted"]
    return f"data wait was {share:.1%} of a step; chose " + "; ".join(won)
