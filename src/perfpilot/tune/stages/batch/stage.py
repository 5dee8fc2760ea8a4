"""The batch stage: the batch size and learning rate that reach the target soonest.

Peers pick the largest batch that fits or the highest throughput; neither changes the LR
or checks accuracy. This stage predicts with a model and decides with real runs:

1. **Fit limit** (:mod:`.fit`): doubling, bisection, safety margin; every
   probe a real step on a fresh model; on a CPU, a memory budget.
2. **Throughput curve**: samples/s on a geometric grid (``B0 * 2**k``) up to the fit limit,
   interleaved windows, median and interval per size, and its knee.
3. **Gradient noise scale** (:mod:`~perfpilot.tune.stages.batch.noise_scale`) at the start and along
   the baseline's run to the target (it grows as the loss falls).
4. **Goodput** (:mod:`~perfpilot.tune.stages.batch.goodput`): throughput x statistical efficiency
   relative to the baseline batch; LR per optimizer family (:mod:`~perfpilot.tune.stages.batch.lr`).
5. **Validation**: time-to-target runs of the baseline and the top candidates, the later
   ones stopped once they can no longer win; the finalists are repeated with new seeds and
   compared through :mod:`perfpilot.measure`. The measured winner is chosen (the baseline
   unless a candidate is shown faster); the evidence keeps prediction and measurement.

Every measurement is a trial of ``ctx.trials`` and every decision is computed from trial
results and trial durations (the budget), so a resumed run decides the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from perfpilot.errors import PlanError
from perfpilot.tune.proxy import ProxyTarget, decision_level, sign
from perfpilot.tune.stage import StageContext, StageResult
from perfpilot.tune.stages.batch import recheck as rc
from perfpilot.tune.stages.batch.fit import FitResult, NothingFits, Probe, find_fit_limit
from perfpilot.tune.stages.batch.goodput import (
    NoisePoint,
    ThroughputPoint,
    goodput_curve,
    knee,
    top_candidates,
)
from perfpilot.tune.stages.batch.lr import LrPolicy, optimizer_family, rule_for
from perfpilot.tune.stages.batch.options import BatchOptions
from perfpilot.tune.stages.batch.runs import BatchRuns, NoiseSpec, RunConfig, Runs
from perfpilot.tune.stages.batch.validate import Validation, decide

if TYPE_CHECKING:
    from perfpilot.plan import Plan
    from perfpilot.trial import Trial
    from perfpilot.workload import Workload

STAGE = "batch"
# Shares of the stage's budget: the throughput windows, the baseline's time box (of what is
# left after them), and the longest step the fit search doubles past.
THROUGHPUT_SHARE, BASELINE_BOX_SHARE, SLOW_STEP_SHARE = 0.15, 0.4, 0.01
# The noise-scale measurements (one at the start, up to NOISE_POINTS along the baseline run).
NOISE_SHARE, NOISE_POINTS = 0.1, 5
# A time-to-target run's first evaluation, as a share of the samples the baseline needed
# for the same level (its first run, or under a proxy its curve): a configuration 4x as
# sample-efficient is still timed no later than its first evaluation, and the early
# evaluations, which cannot find the level, are not paid for.
FIRST_EVAL_SHARE = 0.25


class BatchStage:
    """The ``batch`` stage (see the module docstring). ``runs`` builds the object that
    measures (default: real runs through the engine); tests inject fakes."""

    name = STAGE

    def __init__(self, runs: Callable[[Workload, Plan], Runs] | None = None) -> None:
        self._make_runs = runs or BatchRuns

    def run(self, ctx: StageContext) -> StageResult:
        opts = BatchOptions.from_options(ctx.options)
        proxy = ProxyTarget.from_dict(ctx.options["proxy"]) if ctx.options.get("proxy") \
            else None
        runs = self._make_runs(ctx.workload, ctx.incumbent)
        try:
            return _Tuning(ctx, opts, runs, proxy).run()
        finally:
            runs.close()


class _Tuning:
    """One run of the stage: holds the trials and the budget spent so far."""

    def __init__(self, ctx: StageContext, opts: BatchOptions, runs: Runs,
                 proxy: ProxyTarget | None = None) -> None:
        self.ctx, self.opts, self.runs = ctx, opts, runs
        # Under a proxy target (the baseline missed the real one): ``level`` is the
        # decision level ``(level, seconds, samples)``, set once the incumbent's
        # throughput is measured (:meth:`validate`).
        self.proxy: ProxyTarget | None = proxy
        self.level: tuple[float, float, float] | None = None
        # The baseline's samples to a level (None: the workload's target), once measured.
        self.reference: dict[float | None, float] = {}
        self.base: Plan = ctx.incumbent
        self.b0 = self.base.batch_size
        self.trials: list[Trial] = []
        self.spent_s = 0.0
        self.evidence: dict[str, Any] = {"options": opts.to_dict(), "budget_s": ctx.budget_s,
                                         "baseline": {"batch_size": self.b0,
                                                      "lr": self.base.lr}}

    def trial(self, step: str, key: dict[str, Any], fn: Callable[[], Any]) -> Trial:
        t = self.ctx.trials.run(STAGE, {"step": step, **key}, fn)
        self.trials.append(t)
        self.spent_s += max(t.finished_at - t.started_at, 0.0)
        return t

    def left_s(self) -> float:
        return self.ctx.budget_s - self.spent_s

    # ------------------------------------------------------------ the pipeline

    def run(self) -> StageResult:
        fit = self.fit_limit()
        points = self.throughput(fit)
        policy = self.lr_policy()
        spec = self.noise_spec(fit)
        start = self.trial("noise", {"samples": 0, **asdict(spec)},
                           lambda: self.runs.noise(spec, self.ctx.workload.seed))
        self.evidence["noise_scale"] = {"start": start.measurements.get("noise"),
                                        "spec": asdict(spec)}
        if self.ctx.workload.target is None:
            return self.unvalidated(points, start, policy)
        return self.validate(points, policy, spec, start)

    # ------------------------------------------------------------ 1. fit limit

    def fit_limit(self) -> FitResult:
        self.ctx.progress("batch: searching the largest batch that fits")
        cap = self.runs.dataset_size()
        if self.b0 > cap:
            raise PlanError(f"plan key 'batch_size': the baseline batch {self.b0} is larger "
                            f"than the training set ({cap} samples)")
        if self.opts.max_batch is not None:
            cap = min(cap, self.opts.max_batch)
        budget = None
        if not self.base.device.startswith("cuda"):
            t = self.trial("memory-budget", {"fraction": self.opts.memory_fraction},
                           lambda: self.runs.memory_budget(self.opts.memory_fraction))
            budget = int(t.measurements["budget_bytes"])
        try:
            fit = find_fit_limit(self._probe, start=min(self.b0, cap), cap=cap,
                                 margin=self.opts.margin, budget_bytes=budget,
                                 max_step_s=SLOW_STEP_SHARE * self.ctx.budget_s)
        except NothingFits as e:
            raise PlanError(f"plan key 'batch_size': {e}") from None
        if not any(p.batch_size == self.b0 and p.ok for p in fit.probes) and self.b0 <= cap:
            raise PlanError(f"plan key 'batch_size': the baseline batch {self.b0} does not "
                            f"run ({_reason_at(fit, self.b0)})")
        self.evidence["fit"] = {**fit.to_dict(), "device": self.base.device}
        return fit

    def _probe(self, size: int) -> Probe:
        t = self.trial("fit", {"batch_size": size}, lambda: self.runs.probe(size))
        m = t.measurements
        # A non-finite loss still means the step ran: it fits in memory.
        state = {"complete": "ok", "nan": "ok", "oom": "oom"}.get(t.state, "failed")
        return Probe(size, state, ran=True, peak_bytes=m.get("peak_bytes"),
                     step_s=m.get("step_s"), reason=t.reason)

    # ------------------------------------------------------------ 2. throughput

    def grid(self, fit: FitResult) -> list[int]:
        """``B0 * 2**k`` from ``min_batch`` (default ``B0 // 8``) to the fit limit, and
        the fit limit itself."""
        lo = max(1, self.opts.min_batch or self.b0 // 8)
        sizes = {fit.limit, min(self.b0, fit.limit)}
        b = self.b0
        while b >= lo:
            sizes.add(b)
            b //= 2
        b = self.b0
        while b <= fit.limit:
            sizes.add(b)
            b *= 2
        return sorted(s for s in sizes if lo <= s <= fit.limit or s == self.b0)

    def affordable(self, grid: list[int], fit: FitResult, reps: int,
                   window: float) -> tuple[list[int], list[dict[str, Any]]]:
        """The sizes whose windows fit the throughput share of the budget, smallest first
        (step times estimated from the fit probes); the baseline is always kept."""
        probed = {p.batch_size: p.step_s for p in fit.probes if p.ok and p.step_s}
        share, spent, keep, skipped = THROUGHPUT_SHARE * self.ctx.budget_s, 0.0, [], []
        for b in grid:
            near = min(probed, key=lambda p: abs(math.log(p / b)), default=None)
            step = probed[near] * b / near if near else 0.0
            cost = reps * max(window, 2 * step) + step
            if b == self.b0 or spent + cost <= share:
                keep.append(b)
                spent += cost
            else:
                skipped.append({"batch_size": b, "estimated_cost_s": cost,
                                "why": "its windows do not fit the throughput budget"})
        return keep, skipped

    def throughput(self, fit: FitResult) -> list[ThroughputPoint]:

        reps = max(2, self.opts.throughput_repeats)
        full = self.grid(fit)
        window = min(1.0, max(0.05, 0.5 * THROUGHPUT_SHARE * self.ctx.budget_s
                              / (reps * len(full))))
        grid, skipped = self.affordable(full, fit, reps, window)
        self.ctx.progress(f"batch: throughput at {len(grid)} sizes x {reps} windows")
        rates: dict[int, dict[int, float]] = {b: {} for b in grid}
        for r in range(reps):
            for b in grid if r % 2 == 0 else reversed(grid):  # interleaved, order alternating
                t = self.trial("throughput", {"batch_size": b, "repeat": r, "window_s": window},
                               lambda b=b: self.runs.throughput(b, window))
                if t.state == "complete":
                    rates[b][r] = float(t.measurements["samples_per_s"])
        self.runs.close()  # free the trainers kept for interleaving
        if len(rates[self.b0]) < 2:
            raise PlanError(f"plan key 'batch_size': throughput at the baseline batch "
                            f"{self.b0} could not be measured")
        points = [p for b in grid if (p := paired_point(b, rates[b], rates[self.b0]))]
        self.evidence["throughput"] = {"points": [p.to_dict() for p in points],
                                       "knee": knee(points), "window_s": window,
                                       "skipped": skipped}
        return points

    # ------------------------------------------------------------ 3-4. LR and noise

    def lr_policy(self, warmup_samples: int = 0) -> LrPolicy:
        from perfpilot.workload import build_model, build_optimizer

        w = self.ctx.workload
        opt = build_optimizer(w, build_model(w).parameters(), self.base.lr)
        family = optimizer_family(opt)
        rule = rule_for(opt) if self.opts.lr_rule == "auto" else self.opts.lr_rule
        return LrPolicy(rule=rule, base_lr=self.base.lr, base_batch=self.b0,
                        base_warmup_steps=self.base.warmup_steps, warmup_samples=warmup_samples,
                        family=family, source="auto" if self.opts.lr_rule == "auto" else "option")

    def noise_spec(self, fit: FitResult) -> NoiseSpec:
        """Small batch B0, large 8 x B0; the number of estimates sized so that all the
        measurements (at the start and along the baseline run) take about
        ``NOISE_SHARE`` of the budget, from the fit probe's step time at B0."""
        small = self.opts.noise_small_batch or self.b0
        large = self.opts.noise_large_batch or max(2 * small, min(8 * small,
                                                                   self.runs.dataset_size()))
        points = NOISE_POINTS
        step = next((p.step_s for p in fit.probes if p.batch_size == self.b0 and p.step_s), 0.0)
        per_estimate = step * large / small
        per_measure = NOISE_SHARE * self.ctx.budget_s / (2 + points)
        n = self.opts.noise_estimates
        if per_estimate > 0:
            n = min(n, math.floor(per_measure / per_estimate))
        return NoiseSpec(small, large, max(2, n), 8 * self.b0, points)

    # ------------------------------------------------------------ 5. validation

    def validate(self, points: list[ThroughputPoint], policy: LrPolicy, spec: NoiseSpec,
                 start: Trial) -> StageResult:
        box = BASELINE_BOX_SHARE * self.left_s()
        thr = {p.batch_size: p.samples_per_s for p in points}
        base_cfg = RunConfig(self.b0, self.base.lr, self.base.warmup_steps)
        goal = "the target"
        if self.proxy is not None:
            self.level = decision_level(self.proxy, self.ctx.budget_s, thr[self.b0])
            goal = (f"the decision level {self.proxy.metric} {sign(self.proxy.direction)} "
                    f"{self.level[0]:.4g}")
        self.ctx.progress(f"batch: baseline run to {goal} (measuring the noise scale)")
        first = self.ttt(base_cfg, 0, math.ceil(box * thr[self.b0]), spec)
        m = first.measurements
        if first.state == "complete" and (n := m.get("samples_to_target", m.get("samples"))):
            self.reference[self.level[0] if self.level else None] = float(n)
        profile, end = self.noise_profile(start, first)
        base_ttt = end / thr[self.b0] if first.state == "complete" and end else None
        policy = self.lr_policy(round(self.opts.warmup_fraction * (end or 0)))
        curve = goodput_curve(points, self.b0, profile, end_samples=end, base_ttt_s=base_ttt)
        # Under a proxy, part of the budget is kept for the re-check at the later level.
        kept = rc.RECHECK_SHARE * self.left_s() if self.proxy is not None else 0.0
        val = Validation(
            lambda cfg, r, max_samples: self.ttt(cfg, r, max_samples),
            lambda: self.left_s() - kept, box=box,
            slack=self.opts.prune_slack, throughput=thr,
            make=lambda b, lr: self.config(b, policy, lr), rescale=policy.rescale,
            lr_factor=self.opts.lr_factor, progress=self.ctx.progress)
        val.record(base_cfg, 0, first, "baseline")
        val.screen(*self.screening(curve, policy, base_cfg))
        val.refine(self.opts.refine_runs)
        val.repeat(base_cfg, self.opts.repeats, self.opts.finalists)
        decision = decide(list(val.pool.values()), base_cfg, goal)
        if self.proxy is not None:
            decision = self.under_proxy(val, decision, base_cfg)
        predicted = max(curve, key=lambda p: p.goodput)
        self.evidence["noise_scale"]["along_training"] = first.measurements.get(
            "noise_profile", [])
        self.evidence.update(
            lr_policy=policy.to_dict(),
            goodput=[p.to_dict() for p in curve],
            prediction={**self.config(predicted.batch_size, policy).key(),
                        "predicted_ttt_s": predicted.predicted_ttt_s},
            candidates=[r.to_dict(_predicted(curve, r.config.batch_size, policy, r.config))
                        for r in val.pool.values()],
            chosen=decision.to_dict(),
            spent_s=self.spent_s,
        )
        return self.result(decision.config, decision.why)

    def screening(self, curve: list[Any], policy: LrPolicy, base: RunConfig
                  ) -> tuple[list[RunConfig], dict[RunConfig, str]]:
        """The configurations to screen, first first, and the origins of those not
        ``predicted``: the predicted batch sizes at the rule's LR; under a proxy target,
        the baseline's batch at ``lr_factor`` x its LR before them. A baseline many budgets
        from its target is what a too-small LR makes, every prediction inherits that LR
        through the rule, and a proxy's budget may hold one candidate besides the
        baseline's repeats: then the LR step is the one measured."""
        preds = [self.config(b, policy) for b in
                 top_candidates(curve, self.b0, self.opts.candidates)]
        if self.proxy is None:
            return preds, {}
        up = self.config(self.b0, policy, base.lr * self.opts.lr_factor)
        return [up, *(c for c in preds if c != up)], {up: "lr-step"}

    def config(self, batch: int, policy: LrPolicy, lr: float | None = None) -> RunConfig:
        """The config at ``batch``: the rule's LR (or ``lr``) and the policy's warmup."""
        lr = canonical_lr(policy.lr(batch) if lr is None else lr, self.base.lr)
        warmup = (self.opts.warmup_steps if self.opts.warmup_steps is not None
                  else policy.warmup_steps(batch, lr))
        return RunConfig(batch, lr, warmup)

    def under_proxy(self, val: Validation, decision: Any, base: RunConfig) -> Any:
        """The decision made at the decision level, re-checked at the proxy target, and
        every configuration's extrapolated time to the real target (evidence)."""
        assert self.proxy is not None and self.level is not None
        decided = decision.config
        decision, ev = rc.recheck(self, val, decision, base)
        self.evidence["proxy"] = {
            "target": self.proxy.target, "level": self.proxy.level,
            "decision_level": self.level[0], "decision_level_s": self.level[1],
            "decision_level_samples": self.level[2],
            "recheck": ev, "extrapolations": rc.extrapolations(
                self, val, base, rc.recheck_rows(ev, base, decided))}
        return decision

    def ttt(self, cfg: RunConfig, seed_offset: int, max_samples: int,
            spec: NoiseSpec | None = None, level: float | None = None) -> Trial:
        seed = self.ctx.workload.seed + seed_offset
        key = {**cfg.key(), "seed": seed, "max_samples": max_samples,
               "noise": asdict(spec) if spec else None}
        if level is None and self.level is not None:
            level = self.level[0]  # under a proxy: the decision level
        if level is not None:  # a level of its own: part of the trial's key
            key["target"] = level
        first = math.floor(FIRST_EVAL_SHARE * (self.reference_samples(level) or 0.0))
        if first > 0:
            key["first_eval"] = first
        return self.trial("time-to-target", key, lambda: self.runs.time_to_target(
            cfg, seed=seed, max_samples=max_samples, eval_fraction=self.opts.eval_fraction,
            noise=spec, target=level, first_eval=first))

    def reference_samples(self, level: float | None) -> float | None:
        """The baseline's samples to ``level`` (None: the workload's target): its first
        run's, else, under a proxy, the first evaluation of its curve at the level."""
        if level in self.reference:
            return self.reference[level]
        if self.proxy is None or level is None:
            return None
        return self.proxy.samples_to(level)

    def noise_profile(self, start: Trial, first: Trial) -> tuple[list[NoisePoint], int | None]:
        along = first.measurements.get("noise_profile") or []
        pts = [NoisePoint(int(p["samples"]), _b(p)) for p in along]
        if not pts and start.state == "complete":
            pts = [NoisePoint(0, _b(start.measurements["noise"]))]
        if not pts:
            raise PlanError("the gradient noise scale could not be measured: "
                            f"{start.reason or first.reason}")
        m = first.measurements
        end = m.get("samples_to_target", m.get("samples"))
        return pts, round(end) if end is not None else None

    # ------------------------------------------------------------ no target

    def unvalidated(self, points: list[ThroughputPoint], start: Trial,
                    policy: LrPolicy) -> StageResult:
        """Without a target nothing can be validated: the goodput prediction at the start
        of training is recorded, and the baseline is kept."""
        profile = [NoisePoint(0, _b(start.measurements["noise"]))] \
            if start.state == "complete" else []
        curve = goodput_curve(points, self.b0, profile) if profile else []
        self.evidence.update(lr_policy=policy.to_dict(),
                             goodput=[p.to_dict() for p in curve], spent_s=self.spent_s)
        dropped = self.ctx.options.get("target_dropped")
        why = (f"{dropped}, so no batch size can be validated on time to target; the baseline "
               "is kept (see the goodput prediction)" if dropped else
               "the workload has no target, so no batch size can be validated on time to "
               "target; the baseline is kept (see the goodput prediction)")
        self.evidence["chosen"] = {**RunConfig(self.b0, self.base.lr,
                                               self.base.warmup_steps).key(), "why": why}
        return self.result(None, why)

    def result(self, cfg: RunConfig | None, why: str) -> StageResult:
        plan = self.base if cfg is None else self.base.replace(
            batch_size=cfg.batch_size, lr=cfg.lr, warmup_steps=cfg.warmup_steps)
        if plan == self.base:
            summary = f"batch size {self.b0} kept: {why}"
        else:
            summary = (f"batch size {self.b0} -> {plan.batch_size}, lr {self.base.lr:.3g} -> "
                       f"{plan.lr:.3g}: {why}")
        return StageResult(name=STAGE, plan=plan, trials=tuple(self.trials),
                           evidence=self.evidence, summary=summary)


def paired_point(batch: int, rates: Mapping[int, float],
                 base: Mapping[int, float]) -> ThroughputPoint | None:
    """Throughput at ``batch`` from windows paired by round with the baseline batch's.

    The baseline batch gets the median and interval of its own windows. Another size gets
    the baseline's median times the median of its per-round ratios to the baseline (and
    that ratio's interval): windows of one round are close in time, so load that changes
    from round to round cancels in the ratio, as in :func:`perfpilot.measure.compare`."""
    from perfpilot.measure import summarize

    if rates is base:
        s = summarize(list(base.values()))
        return ThroughputPoint(batch, s.median, s.ci_low, s.ci_high, s.n)
    ratios = [rates[r] / base[r] for r in rates if r in base]
    if len(ratios) < 2:
        return None
    ref = summarize(list(base.values())).median
    s = summarize(ratios)
    return ThroughputPoint(batch, ref * s.median, ref * s.ci_low, ref * s.ci_high, s.n)


def canonical_lr(lr: float, base_lr: float) -> float:
    """``lr`` snapped to ``base_lr * 2**(k/4)`` when within 0.01% of it, then rounded to 6
    significant digits: the search moves by factors of 2 and sqrt(2), and one LR reached
    along two paths (x2 then /sqrt(2)...) must be one configuration, not two that differ
    in the last digit."""
    k = round(4 * math.log2(lr / base_lr))
    snapped = base_lr * 2 ** (k / 4)
    return float(f"{(snapped if abs(snapped / lr - 1) < 1e-4 else lr):.6g}")


def _b(noise: Mapping[str, Any]) -> float:
    v = noise.get("b_simple")
    return math.inf if v is None else float(v)


def _predicted(curve: list[Any], batch: int, policy: LrPolicy, cfg: RunConfig) -> float | None:
    """The model's time to target for a config at the rule's LR (None for other LRs: the
    model assumes a well-tuned LR, and says nothing about an LR off the rule)."""
    if abs(cfg.lr - policy.lr(batch)) > 1e-5 * cfg.lr:
        return None
    return next((p.predicted_ttt_s for p in curve if p.batch_size == batch), None)


def _reason_at(fit: FitResult, size: int) -> str:
    return next((p.reason for p in fit.probes if p.batch_size == size), "not probed")
