"""The tournament: candidates challenge the incumbent one at a time, winners stay.

Shared by the hardware and loader stages (:mod:`perfpilot.tune.stages`):

- :class:`Tournament` measures each candidate against the incumbent in one interleaved
  A/B trial (:func:`~perfpilot.tune.abtest.ab_test`), checks its losses for parity
  (:mod:`perfpilot.tune.parity`), and keeps it only when the interval says it is faster
  by more than the minimum effect and its extra start-up pays back within the expected
  run length (:func:`~perfpilot.tune.abtest.decide`); ties keep the incumbent. With
  budget left, :meth:`Tournament.confirm` measures the chosen plan against the start.
- :class:`Horizon` is that expected run length, resolved on first use.

Decisions depend only on trial results, so the study, which recalls finished trials,
replays the same decisions on a resumed tuning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from perfpilot.errors import PlanError
from perfpilot.trial import Outcome
from perfpilot.tune import abtest as ab
from perfpilot.tune import parity as par
from perfpilot.tune.abtest import (
    MIN_PAIRS,
    ABResult,
    ABSettings,
    LossCheck,
    TrainerFactory,
    ab_test,
    cost_estimate,
    decide,
    size_settings,
)

if TYPE_CHECKING:
    from perfpilot.plan import Plan
    from perfpilot.trial import Trial
    from perfpilot.tune.stage import StageContext
    from perfpilot.tune.stages.candidates import Candidate
    from perfpilot.workload import Workload

DEFAULT_HORIZON_S = 600.0  # assumed run length without --horizon or a target (stated as such)
HORIZON_CAP_S = 120.0      # at most this much training to measure the time to target
Clock = Callable[[], float]


@dataclass
class Tournament:
    """Candidates challenge the incumbent one at a time, each as one trial; winners stay.

    ``entries`` is the evidence: one dict per candidate with its fate (``accepted``,
    ``rejected`` or ``skipped``), the reason and the measured comparison.
    """

    ctx: StageContext
    stage: str
    settings: ABSettings
    clock: Clock
    trainer_factory: TrainerFactory | None
    horizon: Callable[[], float]
    step_s: float
    build_s: float
    started: float = 0.0
    incumbent: Plan = field(init=False)
    entries: list[dict[str, Any]] = field(default_factory=list)
    # Measured / estimated duration of the trials so far (>= 1): a loaded machine or extra
    # looks make A/Bs longer than the quiet-machine estimate, and the budget must know.
    slowdown: float = 1.0

    def __post_init__(self) -> None:
        self.incumbent = self.ctx.incumbent

    def remaining(self) -> float:
        return self.ctx.budget_s - (self.clock() - self.started)

    def deadline(self) -> float:
        return self.started + self.ctx.budget_s

    def skip(self, cand: Candidate, reason: str) -> dict[str, Any]:
        return self._note(cand, "skipped", reason)

    def challenge(self, cand: Candidate, check: LossCheck, *, extra_cost_s: float = 0.0,
                  reference: Sequence[float] | None = None, tol: par.Tolerance | None = None,
                  pending: int = 1) -> dict[str, Any]:
        """Measure ``cand`` against the incumbent (unless skipped) and keep it if it wins.

        ``pending`` counts the candidates still to measure, this one included: a trial may
        use its fair share of the remaining budget (at least :data:`MIN_PAIRS` pairs), so
        the first candidate cannot starve the others on a slow, busy machine."""
        if cand.skip:
            return self.skip(cand, cand.skip)
        try:
            plan = cand.apply(self.incumbent)
        except PlanError as e:
            return self.skip(cand, str(e))
        least = self.estimate(self.incumbent, plan, MIN_PAIRS) + extra_cost_s
        left = self.remaining()
        if left < least:
            return self.skip(cand, f"budget: needs at least {least:.0f} s, "
                             f"{max(left, 0):.0f} s left")
        allowed = max(least, left / max(1, pending))
        self.ctx.progress(f"{self.stage}: {cand.label()} vs incumbent")
        key = {"check": "ab", "candidate": plan.to_dict(), "incumbent": self.incumbent.to_dict(),
               "settings": settings_key(self.settings),
               "parity": tol.to_dict() if tol else "finite"}
        deadline = min(self.deadline(), self.clock() + allowed)
        expected = min(self.estimate(self.incumbent, plan), allowed - extra_cost_s)
        trial = self._run(key, lambda: self._measure(plan, check, deadline), expected)
        return self._judge(cand, plan, trial, reference, tol)

    def estimate(self, a: Plan, b: Plan, pairs: int | None = None) -> float:
        """Expected seconds of an A/B of ``a`` and ``b``, scaled by the observed slowdown."""
        return self.slowdown * cost_estimate(self.settings, a, b, self.step_s, self.build_s,
                                             pairs)

    def _run(self, key: dict[str, Any], fn: Callable[[], Outcome], expected: float) -> Trial:
        t0 = self.clock()
        trial = self.ctx.trials.run(self.stage, key, fn)
        took = self.clock() - t0
        if took > 0.1 * expected:  # measured now (a recalled trial takes no time)
            ratio = took / max(expected / self.slowdown, 1e-9)
            self.slowdown = max(1.0, (self.slowdown + ratio) / 2)
        return trial

    def _measure(self, plan: Plan, check: LossCheck, deadline: float) -> Outcome:
        try:
            result = ab_test(self.ctx.workload, self.incumbent, plan, self.settings,
                             check_a=par.finite_checker(), check_b=check,
                             deadline=deadline, clock=self.clock,
                             trainer_factory=self.trainer_factory)
        except par.ParityFailure as e:
            return Outcome(e.verdict.state, {"parity": e.verdict.to_dict()}, e.verdict.reason)
        return Outcome("complete", result.to_measurements())

    def _judge(self, cand: Candidate, plan: Plan, trial: Trial,
               reference: Sequence[float] | None, tol: par.Tolerance | None) -> dict[str, Any]:
        if trial.state != "complete":
            return self._note(cand, "rejected", f"{trial.state}: {trial.reason}", trial=trial)
        result = ABResult.from_measurements(trial.measurements)
        extra: dict[str, Any] = {}
        if reference is not None and tol is not None:
            verdict = par.judge(reference, result.b.losses, tol)
            extra["parity"] = verdict.to_dict()
            if not verdict.ok:
                return self._note(cand, "rejected", verdict.reason, trial=trial,
                                  result=result, **extra)
        decision = decide(result, self.horizon)
        if decision.accept:
            self.incumbent = plan
        fate = "accepted" if decision.accept else "rejected"
        return self._note(cand, fate, decision.reason, trial=trial, result=result,
                          net_gain_s=decision.net_gain_s, **extra)

    def _note(self, cand: Candidate, fate: str, reason: str, *, trial: Trial | None = None,
              result: ABResult | None = None, **extra: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {"axis": cand.axis, "label": cand.label(),
                                 "changes": dict(cand.changes), "fate": fate, "reason": reason,
                                 "trial": trial.number if trial else None}
        if result is not None:
            entry.update(result_summary(result))
        entry.update(extra)
        self.entries.append(entry)
        if fate != "skipped":
            self.ctx.progress(f"{self.stage}: {cand.label()} {fate}")
        return entry

    def confirm(self, start: Plan) -> dict[str, Any]:
        """A final A/B of the chosen plan against ``start`` (evidence only), if budget allows."""
        plan = self.incumbent
        if plan == start:
            return {"skipped": "the plan did not change"}
        won = [e for e in self.entries if e["fate"] == "accepted"]
        if len(won) == 1:  # its own A/B was against the start: that is the confirmation
            return {"trial": won[0]["trial"], "same_as": won[0]["label"],
                    **{k: won[0][k] for k in ("verdict", "speedup", "ci_low", "ci_high",
                                              "confidence", "rounds")}}
        cost = self.estimate(start, plan)
        if self.remaining() < cost:
            return {"skipped": f"budget: needs about {cost:.0f} s, "
                               f"{max(self.remaining(), 0):.0f} s left"}
        self.ctx.progress(f"{self.stage}: confirming the chosen plan against the start")
        key = {"check": "final", "candidate": plan.to_dict(), "incumbent": start.to_dict(),
               "settings": settings_key(self.settings)}

        def measure() -> Outcome:
            result = ab_test(self.ctx.workload, start, plan, self.settings,
                             check_a=par.finite_checker(), check_b=par.finite_checker(),
                             deadline=self.deadline(), clock=self.clock,
                             trainer_factory=self.trainer_factory)
            return Outcome("complete", result.to_measurements())

        trial = self.ctx.trials.run(self.stage, key, measure)
        if trial.state != "complete":
            return {"trial": trial.number, "state": trial.state, "reason": trial.reason}
        return {"trial": trial.number, **result_summary(
            ABResult.from_measurements(trial.measurements))}


def settings_key(s: ABSettings) -> dict[str, Any]:
    return {"chunk_steps": s.chunk_steps, "pairs": s.pairs, "max_pairs": s.max_pairs,
            "warmup_steps": s.warmup_steps,
            "settle_steps": s.settle_steps, "min_effect": s.min_effect,
            "confidence": s.confidence}


def result_summary(r: ABResult) -> dict[str, Any]:
    return {"verdict": r.verdict, "speedup": r.ratio, "ci_low": r.ci_low, "ci_high": r.ci_high,
            "confidence": r.confidence, "rounds": r.n,
            "startup_extra_s": r.b.startup_s - r.a.startup_s,
            "data_share": {"incumbent": r.a.data_share, "candidate": r.b.data_share},
            "step_s": {"incumbent": r.a.step_s, "candidate": r.b.step_s}}




def options_settings(ctx: StageContext, step_s: float) -> ABSettings:
    """A/B settings from the measured step time and ``ctx.options`` (chunk_s, pairs,
    max_pairs, min_effect)."""
    o = ctx.options
    return size_settings(step_s, chunk_s=float(o.get("chunk_s", ab.CHUNK_S)),
                         pairs=int(o.get("pairs", ab.PAIRS)),
                         max_pairs=int(o.get("max_pairs", ab.MAX_PAIRS)),
                         min_effect=float(o.get("min_effect", ab.MIN_EFFECT)))




class Horizon:
    """The expected run length, resolved on first use: ``ctx.horizon_s``, else the
    incumbent's measured time to the workload's target (a trial, capped), else
    :data:`DEFAULT_HORIZON_S` (assumed, and said so in the evidence)."""

    def __init__(self, ctx: StageContext, stage: str, plan: Plan) -> None:
        self.ctx, self.stage, self.plan = ctx, stage, plan
        self.value: float | None = None
        self.source = ""

    def __call__(self) -> float:
        if self.value is None:
            self.value, self.source = self._resolve()
        return self.value

    def evidence(self) -> dict[str, Any]:
        return {"horizon_s": self.value, "source": self.source or "not needed"}

    def _resolve(self) -> tuple[float, str]:
        ctx = self.ctx
        if ctx.horizon_s is not None:
            return float(ctx.horizon_s), "given (--horizon)"
        if ctx.workload.target is None:
            return DEFAULT_HORIZON_S, "assumed: no --horizon and the workload has no target"
        # Measuring it must not eat the stage (and the cap, part of the trial's key, must
        # not depend on the clock, so a resumed run recalls the trial).
        cap = max(5.0, min(HORIZON_CAP_S, ctx.budget_s / 4))
        ctx.progress(f"{self.stage}: measuring the time to target (at most {cap:.0f} s)")
        trial = ctx.trials.run(self.stage, {"check": "horizon", "plan": self.plan.to_dict(),
                                            "cap_s": cap},
                               lambda: _time_to_target(ctx.workload, self.plan, cap))
        if trial.state != "complete":
            return DEFAULT_HORIZON_S, f"assumed: measuring the time to target failed " \
                                      f"({trial.reason})"
        m = trial.measurements
        if m["reached"]:
            return m["train_s"], f"measured: the incumbent reached the target in " \
                                 f"{m['train_s']:.1f} s of training (trial {trial.number})"
        return m["train_s"], f"lower bound: target not reached in {m['train_s']:.0f} s " \
                             f"of training (trial {trial.number})"


def _time_to_target(workload: Workload, plan: Plan, cap: float) -> Outcome:
    from perfpilot.engine import run

    record = run(workload, plan, until_target=True, time_s=cap, progress=False)
    if record.time_to_target_s is None:
        return Outcome("complete", {"reached": False, "train_s": cap})
    return Outcome("complete", {"reached": True, "train_s": float(record.time_to_target_s)})
