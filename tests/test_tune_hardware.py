"""Hardware stage: the decision rule, compile cost against the horizon, budget, replay.

Trainers are faked: each step advances an injected clock by the plan's step time times
seeded noise, so decisions are exercised on known truths without sleeping or training.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

import pytest

from perfpilot.engine import StepTiming
from perfpilot.plan import Plan
from perfpilot.tune.abtest import ABResult, Arm, decide
from perfpilot.tune.stage import StageContext
from perfpilot.tune.stages.candidates import DeviceInfo, ModelTraits
from perfpilot.tune.stages.hardware import HardwareStage
from perfpilot.tune.study import Study
from perfpilot.workload import Workload

CPU = DeviceInfo("cpu", {"fp32": None, "tf32": "CUDA only", "bf16": None, "fp16": "CUDA only"},
                 compile_reason=None, cores=2)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Behaviour:
    """How a fake plan trains: seconds per step, start-up, noise, losses."""

    step_s: float = 0.01
    startup_s: float = 0.0
    step_noise: float = 0.05    # uniform +-, per step
    chunk_noise: float = 0.0    # uniform +-, per train_steps call (machine drift)
    nan_at: int | None = None
    data_share: float = 0.0
    loss_scale: float = 1.0


@dataclass
class FakeTrainer:
    clock: FakeClock
    b: Behaviour
    rng: random.Random
    step: int = 0
    started: bool = False
    closed: list[bool] = field(default_factory=list)

    def train_steps(self, n: int) -> list[StepTiming]:
        if not self.started:
            self.clock.t += self.b.startup_s
            self.started = True
        drift = 1 + self.b.chunk_noise * (2 * self.rng.random() - 1)
        out = []
        for _ in range(n):
            dt = self.b.step_s * drift * (1 + self.b.step_noise * (2 * self.rng.random() - 1))
            self.clock.t += dt
            loss = 2.0 * 0.97 ** self.step * self.b.loss_scale
            if self.b.nan_at is not None and self.step >= self.b.nan_at:
                loss = float("nan")
            self.step += 1
            out.append(StepTiming(data=dt * self.b.data_share, h2d=0.0,
                                  forward=dt * (1 - self.b.data_share), backward=0.0,
                                  optimizer=0.0, other=0.0, total=dt, samples=32, loss=loss))
        return out

    def close(self) -> None:
        self.closed.append(True)


def factory(clock: FakeClock, behave, seed: int = 0):
    """A trainer factory: ``behave(plan) -> Behaviour``; noise seeded per trainer."""
    counter = iter(range(10**6))

    def make(workload: Workload, plan: Plan) -> FakeTrainer:
        return FakeTrainer(clock, behave(plan), random.Random(seed * 7919 + next(counter)))

    return make


def fake_workload(**kw) -> Workload:
    return Workload(name="fake", model=lambda: None, train_data=lambda: None,
                    loss=lambda m, b: None, optimizer=lambda p, lr: None, **kw)


def run_stage(behave, *, axes=("precision",), budget_s=600.0, horizon_s=3600.0, seed=0,
              trials=None, clock=None, conv=False, options=None, info=CPU):
    clock = clock or FakeClock()
    stage = HardwareStage(trainer_factory=factory(clock, behave, seed), clock=clock,
                          infos=lambda: [info], traits=lambda w: ModelTraits(conv, True))
    ctx = StageContext(workload=fake_workload(), incumbent=Plan(), trials=trials or Study(),
                       budget_s=budget_s, horizon_s=horizon_s,
                       options={"axes": list(axes), **(options or {})})
    return stage.run(ctx)


def by_label(result, label):
    return next(e for e in result.evidence["candidates"] if e["label"] == label)


# ---------------------------------------------------------------- decisions


def test_real_gain_is_kept_with_its_interval():
    result = run_stage(lambda p: Behaviour(step_s=0.006 if p.precision == "bf16" else 0.01))
    assert result.plan.precision == "bf16"
    entry = by_label(result, "precision=bf16")
    assert entry["fate"] == "accepted"
    assert entry["ci_low"] > 1.03 and entry["ci_low"] <= entry["speedup"] <= entry["ci_high"]
    assert entry["parity"]["ok"]
    assert by_label(result, "precision=fp16")["fate"] == "skipped"
    assert result.evidence["final"]["verdict"] == "faster"


@pytest.mark.parametrize("seed", range(5))
def test_no_switch_on_noise(seed):
    # Same true speed, strong drift between chunks: the interval straddles 1, keep fp32.
    result = run_stage(lambda p: Behaviour(step_s=0.01, chunk_noise=0.3, step_noise=0.2),
                       seed=seed)
    entry = by_label(result, "precision=bf16")
    assert entry["fate"] == "rejected" and entry["reason"].startswith("not faster")
    assert result.plan == Plan()


def test_small_true_gain_below_min_effect_is_not_taken():
    result = run_stage(lambda p: Behaviour(step_s=0.0099 if p.precision == "bf16" else 0.01,
                                           step_noise=0.01))
    assert result.plan.precision == "fp32"


def test_nan_candidate_is_refused_with_reason():
    result = run_stage(lambda p: Behaviour(nan_at=3 if p.precision == "bf16" else None,
                                           step_s=0.005 if p.precision == "bf16" else 0.01))
    entry = by_label(result, "precision=bf16")
    assert entry["fate"] == "rejected"
    assert entry["reason"].startswith("nan:") and "step 4" in entry["reason"]
    assert result.plan.precision == "fp32"
    assert [t.state for t in result.trials if t.plan.get("check") == "ab"] == ["nan"]


def test_loss_off_the_reference_is_refused():
    result = run_stage(lambda p: Behaviour(loss_scale=1.3 if p.precision == "bf16" else 1.0,
                                           step_s=0.005 if p.precision == "bf16" else 0.01))
    entry = by_label(result, "precision=bf16")
    assert entry["fate"] == "rejected" and "fp32 reference" in entry["reason"]


def test_compile_must_pay_back_its_start_up_within_the_horizon():
    def behave(p):
        fast = p.compile != "off"
        return Behaviour(step_s=0.008 if fast else 0.01, startup_s=60.0 if fast else 0.0,
                         step_noise=0.02)

    short = run_stage(behave, axes=("compile",), horizon_s=120.0)
    entry = by_label(short, "compile=default")
    assert short.plan.compile == "off"
    assert entry["verdict"] == "faster" and "not paid back" in entry["reason"]
    assert entry["startup_extra_s"] == pytest.approx(60.0, abs=1.0)
    long = run_stage(behave, axes=("compile",), horizon_s=3 * 3600.0)
    assert long.plan.compile in ("default", "max-autotune")
    assert by_label(long, "compile=default")["net_gain_s"] > 0
    assert by_label(long, "compile=reduce-overhead")["fate"] == "skipped"


def test_compile_failure_is_recorded():
    def boom(workload, plan):
        raise RuntimeError("inductor: C++ compile failed")

    clock = FakeClock()
    normal = factory(clock, lambda p: Behaviour())

    def make(workload, plan):
        return boom(workload, plan) if plan.compile != "off" else normal(workload, plan)

    stage = HardwareStage(trainer_factory=make, clock=clock, infos=lambda: [CPU],
                          traits=lambda w: ModelTraits(False, True))
    ctx = StageContext(workload=fake_workload(), incumbent=Plan(), trials=Study(),
                       budget_s=600, horizon_s=600, options={"axes": ["compile"]})
    result = stage.run(ctx)
    entry = by_label(result, "compile=default")
    assert entry["fate"] == "rejected" and "C++ compile failed" in entry["reason"]
    assert result.plan.compile == "off"


def test_budget_skips_candidates_with_reason():
    result = run_stage(lambda p: Behaviour(step_s=0.01), axes=("precision", "cpu_threads"),
                       budget_s=3.0)
    fates = {e["label"]: (e["fate"], e["reason"]) for e in result.evidence["candidates"]}
    skipped = [r for f, r in fates.values() if f == "skipped" and r.startswith("budget")]
    assert skipped, fates


def test_first_candidate_cannot_starve_the_others():
    # Undecidable noise would run every A/B to its last look (14 pairs, ~7 s each); with
    # 8 s for two candidates each gets its fair share and stops after at least 5 pairs.
    result = run_stage(lambda p: Behaviour(step_s=0.01, chunk_noise=0.4),
                       axes=("cpu_threads",), budget_s=8.0, options={"confirm": False})
    entries = result.evidence["candidates"]
    assert [e["fate"] for e in entries] == ["rejected", "rejected"]
    assert all(5 <= e["rounds"] < 14 for e in entries)


def test_threads_candidates_and_axes_in_order():
    result = run_stage(lambda p: Behaviour(step_s=0.005 if p.cpu_threads == 1 else 0.01),
                       axes=("cpu_threads", "channels_last", "cudnn_benchmark"))
    assert result.plan.cpu_threads == 1
    labels = [e["label"] for e in result.evidence["candidates"]]
    assert labels == ["cpu_threads=2", "cpu_threads=1", "channels_last=True",
                      "cudnn_benchmark=True"]
    assert by_label(result, "channels_last=True")["reason"] == "the model has no 2-D convolutions"


def test_replay_from_stored_trials_makes_the_same_decisions():
    trials = Study()
    behave = lambda p: Behaviour(step_s=0.006 if p.precision == "bf16" else 0.01)  # noqa: E731
    first = run_stage(behave, trials=trials, axes=("precision", "cpu_threads"))

    def never(workload, plan):
        raise AssertionError("a stored trial was measured again")

    stage = HardwareStage(trainer_factory=never, clock=FakeClock(), infos=lambda: [CPU],
                          traits=lambda w: ModelTraits(False, True))
    ctx = StageContext(workload=fake_workload(), incumbent=Plan(), trials=trials,
                       budget_s=600, horizon_s=3600,
                       options={"axes": ["precision", "cpu_threads"]})
    again = stage.run(ctx)
    assert again.plan == first.plan
    assert again.evidence["candidates"] == first.evidence["candidates"]
    assert again.trials == first.trials  # recalled, reported as this stage's trials
    assert len(trials.trials()) == len(first.trials)


def test_unknown_axis_is_a_user_error():
    from perfpilot.errors import UserError

    with pytest.raises(UserError, match="unknown axis 'warp'"):
        run_stage(lambda p: Behaviour(), axes=("warp",))


# ---------------------------------------------------------------- decide() directly


def _result(verdict="faster", lo=1.2, hi=1.4, ratio=1.3, startup_a=0.0, startup_b=0.0):
    arm = Arm(s_per_sample=(1.0,) * 5, startup_s=0.0, step_s=0.01, data_share=0.0,
              data_s_per_step=0.0)
    return ABResult(verdict=verdict, ratio=ratio, ci_low=lo, ci_high=hi, n=7, confidence=0.95,
                    a=replace(arm, startup_s=startup_a), b=replace(arm, startup_s=startup_b),
                    chunk_steps=10, settle_steps=1)


def test_decide_needs_the_verdict():
    assert not decide(_result("same", 0.9, 1.5), 3600).accept
    assert not decide(_result("slower", 0.5, 0.8, 0.6), 3600).accept
    assert decide(_result(), 3600).accept


def test_decide_weighs_start_up_at_the_interval_low_end():
    # 60 s of compile; low end 1.05x: a 600 s run saves 600*(1-1/1.05) = 28.6 s < 60 s.
    r = _result(lo=1.05, ratio=1.2, hi=1.3, startup_b=60.0)
    assert not decide(r, 600).accept
    assert decide(r, 3600).accept
    called = []
    assert decide(_result(startup_b=0.1), lambda: called.append(1) or 10.0).accept
    assert not called  # start-up within resolution: the horizon is not even needed


def test_an_ab_whose_arm_is_far_slower_than_sized_shortens_its_chunks_to_end_in_time():
    # Sized for 10 ms steps, but B (an arm slowed by contention, say) takes 1 s a step:
    # with 20-step chunks the fewest pairs would take 100 s; the deadline is 12 s away.
    from perfpilot.tune.abtest import MIN_PAIRS, ABSettings, ab_test

    clock = FakeClock()
    make = factory(clock, lambda p: Behaviour(step_s=1.0 if p.precision == "bf16" else 0.01,
                                              step_noise=0.0))
    settings = ABSettings(chunk_steps=20, pairs=MIN_PAIRS, max_pairs=MIN_PAIRS,
                          warmup_steps=1, settle_steps=0)
    res = ab_test(fake_workload(), Plan(), Plan(precision="bf16"), settings,
                  deadline=12.0, clock=clock, trainer_factory=make)
    assert res.n == MIN_PAIRS and res.chunk_steps < 20
    assert clock.t <= 12.0  # the warm-up step sized the first chunks
    assert res.ratio == pytest.approx(0.01, rel=0.05)  # per-sample costs stay comparable


def test_fitting_steps():
    from perfpilot.tune.abtest import _fitting_steps

    assert _fitting_steps(20, pair_s=1.0, left_s=10.0, pairs_needed=4) == 20  # fits
    assert _fitting_steps(20, pair_s=20.0, left_s=10.0, pairs_needed=4) == 2
    assert _fitting_steps(20, pair_s=20.0, left_s=0.0, pairs_needed=4) == 1
    assert _fitting_steps(20, pair_s=20.0, left_s=1.0, pairs_needed=0) == 20  # enough pairs
