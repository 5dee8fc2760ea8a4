"""The final check: interleaving, pairing, censoring and the claims it allows (no timing:
trial results are scripted through a fake TrialRunner)."""

from __future__ import annotations

from typing import Any

import pytest

from perfpilot.plan import Plan
from perfpilot.trial import Trial
from perfpilot.tune.final import (
    FinalCheck,
    FinalSettings,
    keeps_tuned,
    plan_final,
    ttt_cost_s,
    ttt_summary,
    verdict_of_final,
)
from perfpilot.tune.units import Portable, WorkloadRef

BASE, TUNED = Plan(batch_size=16), Plan(batch_size=64, lr=0.1)


class Scripted:
    """A TrialRunner that never calls the trial function: results come from ``answer``."""

    def __init__(self, answer: Any) -> None:
        self.answer, self.calls = answer, []

    def run(self, stage: str, key: dict[str, Any], fn: Any) -> Trial:
        assert isinstance(fn, Portable)  # the final check's trials can leave the process
        self.calls.append(key)
        state, m = self.answer(key)
        return Trial(number=len(self.calls) - 1, stage=stage, plan=key, state=state,
                     reason="" if state == "complete" else "boom", measurements=m)

    def trials(self) -> list[Trial]:
        return []


def settings(rounds: int = 5) -> FinalSettings:
    return FinalSettings(rounds=rounds, cap_s=10.0, seed=7, ab={"chunk_steps": 5},
                         ab_budget_s=5.0, estimate_s=30.0, eval_every_s=0.05)


def ab_measurements(ratio: float, lo: float, hi: float, verdict: str) -> dict[str, Any]:
    arm = {"s_per_sample": [0.002] * 5, "step_s": 0.03}
    fast = {"s_per_sample": [0.002 / ratio] * 5, "step_s": 0.03}
    return {"verdict": verdict, "ratio": ratio, "ci_low": lo, "ci_high": hi, "n": 5,
            "confidence": 0.95, "a": arm, "b": fast, "chunk_steps": 5}


def scripted(base_s: list[float], tuned_s: list[float], *, tuned_reached: bool = True,
             fail_tuned: bool = False):
    def answer(key: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if key["check"] == "throughput":
            return "complete", ab_measurements(1.5, 1.3, 1.7, "faster")
        r = key["seed"] - 7
        if key["arm"] == "tuned":
            if fail_tuned:
                return "nan", {}
            return "complete", {"reached": tuned_reached, "time_to_target_s": tuned_s[r],
                                "train_s": tuned_s[r], "record": {"r": r}}
        return "complete", {"reached": True, "time_to_target_s": base_s[r],
                            "train_s": base_s[r], "record": {"r": r}}
    return answer


def test_runs_are_interleaved_and_paired_by_seed():
    runner = Scripted(scripted([2.0] * 5, [1.0] * 5))
    out = FinalCheck(runner, WorkloadRef("x"), BASE, TUNED, settings()).run()
    arms = [(c["arm"], c["seed"]) for c in runner.calls if c["check"] == "time-to-target"]
    assert arms == [("baseline", 7), ("tuned", 7), ("tuned", 8), ("baseline", 8),
                    ("baseline", 9), ("tuned", 9), ("tuned", 10), ("baseline", 10),
                    ("baseline", 11), ("tuned", 11)]
    assert runner.calls[0]["check"] == "throughput"
    ttt = out["time_to_target"]
    assert ttt["ratio"] == pytest.approx(2.0) and ttt["n"] == 5
    assert out["primary"] == "time_to_target" and out["verdict"] == "faster"
    assert "2.00x" in out["claim"] and "faster" in out["claim"]


def test_tuned_plan_missing_the_target_allows_no_claim_and_keeps_the_baseline():
    runner = Scripted(scripted([2.0] * 5, [1.0] * 5, tuned_reached=False))
    out = FinalCheck(runner, WorkloadRef("x"), BASE, TUNED, settings()).run()
    assert out["verdict"] == "not-reached" and "no gain is claimed" in out["claim"]
    keep, why = keeps_tuned(out)
    assert not keep and "baseline is kept" in why


def test_a_failing_tuned_run_stops_the_check_and_reverts():
    runner = Scripted(scripted([2.0] * 5, [1.0] * 5, fail_tuned=True))
    out = FinalCheck(runner, WorkloadRef("x"), BASE, TUNED, settings()).run()
    assert out["time_to_target"]["state"] == "nan" and out["verdict"] == "failed"
    assert len([c for c in runner.calls if c["check"] == "time-to-target"]) == 2
    assert keeps_tuned(out)[0] is False


def test_noise_gives_same_not_a_gain():
    base = [2.0, 1.0, 2.2, 0.9, 2.1]
    tuned = [1.0, 2.0, 0.9, 2.2, 1.9]
    out = ttt_summary(*_trials(base, tuned))
    assert out["verdict"] == "same"
    final = verdict_of_final({"time_to_target": out, "throughput": {"skipped": "x"}})
    assert "not significantly faster" in final["claim"]
    assert keeps_tuned(final)[0] is True  # stage-level gains stand; no overall claim


def test_slower_tuned_plan_is_rejected():
    out = ttt_summary(*_trials([1.0] * 5, [2.0, 2.1, 1.9, 2.2, 2.0]))
    final = verdict_of_final({"time_to_target": out, "throughput": {"skipped": "x"}})
    assert final["verdict"] == "slower" and keeps_tuned(final)[0] is False


def test_throughput_is_primary_without_time_to_target():
    final = verdict_of_final({"time_to_target": {"skipped": "the workload has no target"},
                              "throughput": {"verdict": "faster", "ratio": 1.5, "ci_low": 1.3,
                                             "ci_high": 1.7, "n": 10}})
    assert final["primary"] == "throughput" and final["verdict"] == "faster"
    none = verdict_of_final({"time_to_target": {"skipped": "no target"},
                             "throughput": {"skipped": "budget"}})
    assert none["verdict"] == "unmeasured" and "no gain is claimed" in none["claim"]


def test_nan_in_the_throughput_check_blocks_a_time_to_target_claim():
    ttt = ttt_summary(*_trials([2.0] * 5, [1.0] * 5))
    final = verdict_of_final({"time_to_target": ttt,
                              "throughput": {"state": "nan", "reason": "loss is nan"}})
    assert final["verdict"] == "failed" and keeps_tuned(final)[0] is False


def test_plan_final_sizes_from_the_baseline_and_skips_what_does_not_fit():
    base = {"reached": True, "time_to_target_s": 4.0, "wall_s": 5.0, "setup_s": 0.2,
            "record": {"step_time_s": {"median": 0.01}}}
    s = plan_final(base, has_target=True, seed=0, budget_left_s=1000)
    assert s.rounds == 5 and s.cap_s == pytest.approx(9.0) and s.eval_every_s == 0.2
    assert s.estimate_s > 5 * 2 * 5.0
    tight = plan_final(base, has_target=True, seed=0, budget_left_s=10)
    assert tight.rounds == 0 and tight.skip_ttt.startswith("budget")
    free = plan_final(base, has_target=False, seed=0, budget_left_s=1000)
    assert free.rounds == 0 and "no target" in free.skip_ttt
    assert FinalSettings.from_dict(s.to_dict()) == s
    assert s.ab["pairs"] == 10
    small = plan_final(base, has_target=True, seed=0, budget_left_s=1000, ab_max_s=0.1)
    assert small.ab["pairs"] == 5 and small.estimate_s < s.estimate_s  # shrunk, not below 5


def _trials(base: list[float], tuned: list[float]) -> tuple[list[Trial], list[Trial]]:
    def t(v: float, n: int) -> Trial:
        return Trial(number=n, stage="final", plan={}, state="complete",
                     measurements={"reached": True, "time_to_target_s": v, "train_s": v})
    return [t(v, i) for i, v in enumerate(base)], [t(v, 10 + i) for i, v in enumerate(tuned)]


def test_runs_to_the_target_can_be_decided_after_the_throughput_check():
    runner = Scripted(scripted([2.0] * 5, [1.0] * 5))
    skipped = FinalSettings(rounds=0, cap_s=10.0, seed=7, ab={}, ab_budget_s=5.0,
                            estimate_s=5.0, skip_ttt="budget: too long")
    seen = []

    def rounds(thr):
        seen.append(thr["ratio"])
        return 5, ""

    out = FinalCheck(runner, WorkloadRef("x"), BASE, TUNED, skipped).run(rounds=rounds)
    assert seen == [1.5] and out["time_to_target"]["n"] == 5
    assert ttt_cost_s({"wall_s": 10.0}, {"ratio": 2.0}, 5) == pytest.approx(5 * 15 * 1.3)
    assert ttt_cost_s({"wall_s": 10.0}, {}, 5) == pytest.approx(5 * 20 * 1.3)


def test_a_batch_size_won_on_time_to_target_survives_the_throughput_it_traded():
    thr = {"ratio": 0.45, "ci_low": 0.42, "ci_high": 0.48, "n": 10, "verdict": "slower"}
    final = {**verdict_of_final({"throughput": thr, "time_to_target": {"skipped": "budget"}}),
             "cross_check": {"agree": True, "words": "the final check's 0.45x agrees with "
                                                    "the stages' measured gains (batch)"}}
    assert final["verdict"] == "slower" and final["primary"] == "throughput"
    win = "batch 8 (lr 0.001) reached the decision level val_loss <= 2.8 faster"
    keep, why = keeps_tuned(final, win)
    assert keep and win in why and "agrees with the stages" in why
    assert keeps_tuned(final)[0] is False  # no batch-stage win: slower is slower
    against = {**final, "cross_check": {"agree": False, "words": "disagrees"}}
    assert keeps_tuned(against, win)[0] is False  # a loss the stage did not measure
    ttt = ttt_summary(*_trials([1.0] * 5, [2.0, 2.1, 1.9, 2.2, 2.0]))
    slower_ttt = {**verdict_of_final({"time_to_target": ttt, "throughput": thr}),
                  "cross_check": {"agree": True}}
    assert keeps_tuned(slower_ttt, win)[0] is False  # measured slower to the target
