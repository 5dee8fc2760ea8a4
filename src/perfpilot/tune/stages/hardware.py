"""The hardware stage: device, precision, memory format, cuDNN, threads and compile, each
chosen by measurement on the user's own workload.

How it decides (the loader stage shares this machinery,
:class:`~perfpilot.tune.tournament.Tournament`):

1. A *reference* trial trains the fp32 version of the incumbent for K steps from the seed
   (the losses parity is judged against; the step time sizes the A/B chunks).
2. Axes are visited in :data:`~perfpilot.tune.stages.candidates.HARDWARE_AXES` order. Each
   candidate is a change to the current incumbent; it is measured against it in one
   interleaved A/B trial (:func:`~perfpilot.tune.abtest.ab_test`), while its losses are
   checked for parity (:mod:`perfpilot.tune.parity`).
3. It replaces the incumbent only when the interval says it is faster by more than the
   minimum effect, its losses pass parity, and its extra start-up (compile, warm-up) is
   paid back within the expected run length (:func:`~perfpilot.tune.abtest.decide`).
   Otherwise the incumbent stays; ties keep the incumbent.
4. With budget left, a final A/B measures the chosen plan against the stage's start.

Candidates that cannot work, or that the budget does not reach, are kept in the evidence
with the reason. Decisions depend only on trial results, so a durable trial runner that
recalls finished trials replays the same decisions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from perfpilot.errors import UserError
from perfpilot.trial import Outcome, TrialLog
from perfpilot.tune import parity as par
from perfpilot.tune.abtest import TrainerFactory, probe
from perfpilot.tune.stage import StageContext, StageResult
from perfpilot.tune.stages.candidates import (
    HARDWARE_AXES,
    DeviceInfo,
    ModelTraits,
    device_infos,
    hardware_candidates,
    model_traits,
)
from perfpilot.tune.tournament import Horizon, Tournament, options_settings, settings_key

if TYPE_CHECKING:
    from perfpilot.plan import Plan
    from perfpilot.trial import Trial
    from perfpilot.workload import Workload

COMPILE_PRIOR_S = 30.0     # expected compile time before one is measured (digits, 2 cores)
Clock = Callable[[], float]


class HardwareStage:
    """Chooses device, precision, channels_last, cudnn.benchmark, CPU threads and compile.

    Every argument is for tests: ``trainer_factory`` replaces the engine's Trainer,
    ``clock`` the time source of A/B chunks and the budget, ``infos`` the device facts
    (default :func:`~perfpilot.tune.stages.candidates.device_infos`), ``traits`` the model facts.
    ``ctx.options``: ``axes`` (a subset of :data:`HARDWARE_AXES`), ``parity_steps``,
    ``parity_rtol``, ``parity_atol``, ``chunk_s``, ``pairs``, ``max_pairs``, ``min_effect``,
    ``confirm`` (default true).
    """

    name = "hardware"

    def __init__(self, *, trainer_factory: TrainerFactory | None = None,
                 clock: Clock = time.perf_counter,
                 infos: Callable[[], list[DeviceInfo]] | None = None,
                 traits: Callable[[Workload], ModelTraits] | None = None) -> None:
        self.trainer_factory, self.clock = trainer_factory, clock
        self.infos = infos or device_infos
        self.traits = traits or model_traits

    def run(self, ctx: StageContext) -> StageResult:
        with ctx.trials.observe(TrialLog()) as log:  # the stage's trials, run or recalled
            return self._run(ctx, log)

    def _run(self, ctx: StageContext, rec: TrialLog) -> StageResult:
        started = self.clock()
        start, o, tol = ctx.incumbent, ctx.options, _tolerance(ctx.options)
        ref = self._reference(ctx, tol)
        evidence: dict[str, Any] = {"tolerance": tol.to_dict(), "reference_trial": ref.number}
        if ref.state != "complete":
            return self._result(start, rec, {**evidence, "error": ref.reason},
                                f"the fp32 reference run failed ({ref.state}): {ref.reason}")
        m = ref.measurements
        horizon = Horizon(ctx, self.name, start)
        t = Tournament(ctx, self.name, options_settings(ctx, m["step_s"]), self.clock,
                       self.trainer_factory, horizon, m["step_s"], m["build_s"], started)
        infos, traits = self.infos(), self.traits(ctx.workload)
        self._challenge_all(t, _axes(o), infos, traits, m["losses"], tol)
        evidence.update(devices=[i.device for i in infos], traits=vars(traits),
                        settings=settings_key(t.settings), candidates=t.entries,
                        horizon=horizon.evidence())
        if o.get("confirm", True):
            evidence["final"] = t.confirm(start)
        return self._result(t.incumbent, rec, evidence, _summary(start, t))

    def _reference(self, ctx: StageContext, tol: par.Tolerance) -> Trial:
        """The fp32 reference run: parity's losses and the step time that sizes A/Bs."""
        ref_plan = par.reference_plan(ctx.incumbent)
        ctx.progress("hardware: fp32 reference run")
        # At most a sixth of the budget: on a slow, busy machine 20 steps can take minutes.
        cap = ctx.budget_s / 6
        key = {"check": "reference", "plan": ref_plan.to_dict(), "steps": tol.steps,
               "time_cap_s": cap}
        return ctx.trials.run(self.name, key, lambda: Outcome("complete", probe(
            ctx.workload, ref_plan, tol.steps, time_cap_s=cap,
            trainer_factory=self.trainer_factory, clock=self.clock)))

    @staticmethod
    def _challenge_all(t: Tournament, axes: tuple[str, ...], infos: list[DeviceInfo],
                       traits: ModelTraits, reference: list[float], tol: par.Tolerance) -> None:
        check = par.checker(reference, tol)
        for i, axis in enumerate(axes):
            cands = hardware_candidates(axis, t.incumbent, infos, traits)
            for j, cand in enumerate(cands):
                later = [c for a in axes[i + 1:]
                         for c in hardware_candidates(a, t.incumbent, infos, traits)]
                pending = sum(c.skip is None for c in [*cands[j:], *later])
                extra = COMPILE_PRIOR_S if axis == "compile" else 0.0
                t.challenge(cand, check, extra_cost_s=extra, reference=reference, tol=tol,
                            pending=pending)

    def _result(self, plan: Plan, rec: TrialLog, evidence: dict[str, Any],
                summary: str) -> StageResult:
        return StageResult(self.name, plan, rec.trials(), evidence, summary)


def _tolerance(o: dict[str, Any]) -> par.Tolerance:
    return par.Tolerance(steps=int(o.get("parity_steps", par.DEFAULT_STEPS)),
                         rtol=float(o.get("parity_rtol", par.DEFAULT_RTOL)),
                         atol=float(o.get("parity_atol", par.DEFAULT_ATOL)))


def _axes(options: dict[str, Any]) -> tuple[str, ...]:
    wanted = options.get("axes")
    if wanted is None:
        return HARDWARE_AXES
    unknown = sorted(set(wanted) - set(HARDWARE_AXES))
    if unknown:
        raise UserError(f"hardware stage: unknown axis {unknown[0]!r} (axes: "
                        f"{', '.join(HARDWARE_AXES)})")
    return tuple(a for a in HARDWARE_AXES if a in wanted)


def _summary(start: Plan, t: Tournament) -> str:
    changes = start.diff(t.incumbent)
    if not changes:
        return "kept the incumbent: no candidate was a measured gain"
    won = [e for e in t.entries if e["fate"] == "accepted"]
    parts = [f"{e['label']} ({e['speedup']:.2f}x [{e['ci_low']:.2f}, {e['ci_high']:.2f}])"
             for e in won]
    return "chose " + "; ".join(parts)
