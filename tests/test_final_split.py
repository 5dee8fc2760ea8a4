"""The final check's windows, separate processes and cross-check (issue 20).

The failure: a workload whose speed depends on a process-global thread setting that takes
effect only some steps after it is raised (a thread pool waking its threads). Alternating
1-step chunks of two plans in one process then times the baseline in the tuned plan's
state (simulated: the baseline measures 3,200 samples/s in the check, 800 alone, and the
4x gain reads 1.0x). A step's duration depends on the thread count *in effect*, which
follows a raised count after ``LAG`` steps; a fake clock advances by each step.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from perfpilot.plan import Plan
from perfpilot.trial import Trial
from perfpilot.tune import final_cross as fc
from perfpilot.tune import split_ab
from perfpilot.tune.abtest import ABSettings, ab_test
from perfpilot.tune.final import FinalCheck, FinalSettings
from perfpilot.tune.units import Portable, WorkloadRef
from perfpilot.tune_record import FinalResult, StageRecord

BATCH = 32
STEP_S = {2: 0.040, 1: 0.010}  # a loaded machine: 2 threads oversubscribe, 1 does not
LAG = 3  # steps before a new thread count is in effect
BASE = Plan(batch_size=BATCH, cpu_threads=2)
TUNED = BASE.replace(cpu_threads=1)
STANDALONE_BASE = BATCH / STEP_S[2]  # samples/s of the baseline run by itself


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SimProcess:
    """One process's thread pool: fewer threads are in effect at once (the others idle),
    more only after ``lag`` steps (the pool spawns and wakes them lazily)."""

    def __init__(self, lag: int = LAG, threads: int = 2) -> None:
        self.lag, self.effective, self.pending, self.count = lag, threads, threads, 0

    def step_s(self, threads: int) -> float:
        if threads != self.pending:
            self.pending, self.count = threads, 0
        self.count += 1
        if threads < self.effective or self.count > self.lag:
            self.effective = threads
        return STEP_S[self.effective]


@dataclass
class Step:
    total: float
    samples: int = BATCH
    data: float = 0.0
    loss: float = 1.0


class SimTrainer:
    """A Trainer whose steps take the simulated time (``wait``: advance a fake clock or
    really sleep)."""

    def __init__(self, proc: SimProcess, plan: Plan, wait: Callable[[float], None]) -> None:
        self.proc, self.plan, self.wait = proc, plan, wait

    def train_steps(self, n: int) -> list[Step]:
        out = []
        for _ in range(n):
            d = self.proc.step_s(self.plan.cpu_threads or 2)
            self.wait(d)
            out.append(Step(d))
        return out

    def close(self) -> None:
        pass


def advance(clock: FakeClock) -> Callable[[float], None]:
    def wait(d: float) -> None:
        clock.now += d
    return wait


def one_process_ab(settings: ABSettings, lag: int = LAG):
    clock, proc = FakeClock(), SimProcess(lag)
    return ab_test(object(), BASE, TUNED, settings, clock=clock,  # type: ignore[arg-type]
                   trainer_factory=lambda w, p: SimTrainer(proc, p, advance(clock)))


def split_ab_sim(settings: ABSettings, lag: int = LAG):
    clock = FakeClock()
    procs = {2: SimProcess(lag), 1: SimProcess(lag)}  # one per arm: its own thread pool
    return split_ab.split_ab_test(
        WorkloadRef(None, live=object()), BASE, TUNED, settings,  # type: ignore[arg-type]
        (split_ab.LocalRunner(), split_ab.LocalRunner()), clock=clock, arm_clock=clock,
        factory=lambda w, p: SimTrainer(procs[p.cpu_threads], p, advance(clock)))


def base_samples_per_s(result: Any) -> float:
    return 1.0 / statistics.median(result.a.s_per_sample)


def off(measured: float) -> float:
    return abs(measured / STANDALONE_BASE - 1.0)


OLD = ABSettings(chunk_steps=1, pairs=5, max_pairs=5)  # the 1-step alternation
NEW = split_ab.windowed(OLD)


def test_standalone_baseline_is_the_slow_one():
    clock, proc = FakeClock(), SimProcess()
    steps = SimTrainer(proc, BASE, advance(clock)).train_steps(20)
    assert BATCH / statistics.median(s.total for s in steps) == pytest.approx(STANDALONE_BASE)


def test_one_step_chunks_in_one_process_mismeasure_the_baseline():
    old = one_process_ab(OLD)
    assert off(base_samples_per_s(old)) > 0.30  # the baseline timed in the tuned plan's state
    assert old.ratio < 2.0  # and the 4x gain mostly hidden


def test_windows_measure_the_baseline_within_30_percent():
    new = one_process_ab(NEW)
    assert new.settle_steps >= split_ab.MIN_SETTLE_STEPS
    assert new.chunk_steps >= split_ab.MIN_CHUNK_STEPS
    assert off(base_samples_per_s(new)) <= 0.30
    assert new.ratio == pytest.approx(4.0, rel=0.3)


def test_separate_processes_measure_each_plan_as_alone_even_with_a_slow_pool():
    # A pool slower to resize than the settle period defeats windows in one process ...
    assert off(base_samples_per_s(one_process_ab(NEW, lag=6))) > 0.30
    # ... not separate processes: each arm keeps its own thread pool.
    for settings in (OLD, NEW):
        split = split_ab_sim(settings, lag=6)
        assert off(base_samples_per_s(split)) <= 0.01
        assert split.ratio == pytest.approx(4.0, rel=0.01)


def test_a_deadline_never_shrinks_chunks_below_the_floor():
    clock, proc = FakeClock(), SimProcess()
    r = ab_test(object(), BASE, TUNED, NEW, clock=clock, deadline=0.5,  # type: ignore[arg-type]
                trainer_factory=lambda w, p: SimTrainer(proc, p, advance(clock)))
    assert r.chunk_steps >= split_ab.MIN_CHUNK_STEPS


# ---------------------------------------------------------------- real worker processes

_PROC: dict[str, SimProcess] = {}  # in each worker process: its own simulated pool


def sleeping_trainer(workload: Any, plan: Plan) -> SimTrainer:
    proc = _PROC.setdefault("p", SimProcess(lag=6))
    return SimTrainer(proc, plan, time.sleep)


@dataclass(frozen=True)
class NoSpec:
    """Stands for a WorkloadRef in the workers: the simulated trainer needs no workload."""

    def load(self) -> None:
        return None


def test_worker_processes_keep_each_arms_state_apart():
    runners = (split_ab.ProcessRunner(timeout_s=60), split_ab.ProcessRunner(timeout_s=60))
    try:
        r = split_ab.split_ab_test(NoSpec(), BASE, TUNED,  # type: ignore[arg-type]
                                   ABSettings(chunk_steps=2, pairs=5, max_pairs=5,
                                              settle_steps=0),
                                   runners, factory=sleeping_trainer)
        pids = {runners[0].pool.pids()[0], runners[1].pool.pids()[0]}
    finally:
        for runner in runners:
            runner.close()
    assert len(pids) == 2
    assert base_samples_per_s(r) == pytest.approx(STANDALONE_BASE, rel=0.3)
    assert r.ratio > 2.5


# ---------------------------------------------------------------- the split decision


def test_split_when_a_process_wide_setting_differs():
    for knob, value in (("cpu_threads", 1), ("interop_threads", 1), ("num_workers", 2),
                        ("pin_memory", True)):
        assert knob in split_ab.split_reason(BASE, BASE.replace(**{knob: value}))
    assert split_ab.split_reason(BASE, BASE.replace(batch_size=64, lr=0.1)) == ""


def summary(ratio: float, lo: float, hi: float) -> dict[str, Any]:
    arm = {"s_per_sample": [0.002] * 5, "step_s": 0.03}
    fast = {"s_per_sample": [0.002 / ratio] * 5, "step_s": 0.03}
    return {"verdict": "faster", "ratio": ratio, "ci_low": lo, "ci_high": hi, "n": 5,
            "confidence": 0.95, "a": arm, "b": fast, "chunk_steps": 5, "settle_steps": 3}


class Scripted:
    """A TrialRunner answering throughput trials: ``answer(key)`` -> measurements."""

    def __init__(self, answer: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.answer, self.calls = answer, []

    def run(self, stage: str, key: dict[str, Any], fn: Any) -> Trial:
        assert isinstance(fn, Portable)
        self.calls.append((key, fn))
        return Trial(len(self.calls) - 1, stage, key, "complete", "", self.answer(key),
                     started_at=0.0, finished_at=1.0)


SETTINGS = FinalSettings(rounds=0, cap_s=0.0, seed=7, ab={"chunk_steps": 5},
                         ab_budget_s=10.0, estimate_s=10.0, skip_ttt="no target")


def test_the_final_check_splits_when_threads_differ_and_not_otherwise():
    runner = Scripted(lambda key: summary(1.5, 1.3, 1.7))
    out = FinalCheck(runner, WorkloadRef("x"), BASE, TUNED, SETTINGS).run()
    key, fn = runner.calls[0]
    assert key["split"] is True and fn.fn is split_ab.split_throughput_unit
    assert "cpu_threads" in out["throughput"]["arms"]
    runner = Scripted(lambda key: summary(1.5, 1.3, 1.7))
    FinalCheck(runner, WorkloadRef("x"), BASE, BASE.replace(batch_size=64), SETTINGS).run()
    assert "split" not in runner.calls[0][0]
    # A workload without a spec cannot be loaded elsewhere: windows in one process.
    runner = Scripted(lambda key: summary(1.5, 1.3, 1.7))
    out = FinalCheck(runner, WorkloadRef(None, live=object()), BASE, TUNED,  # type: ignore[arg-type]
                     SETTINGS).run()
    assert "split" not in runner.calls[0][0] and "no spec" in out["throughput"]["arms"]


# ---------------------------------------------------------------- the cross-check


def hardware(ratio: float, lo: float, hi: float, plan: Plan = TUNED) -> StageRecord:
    return StageRecord("hardware", "x", plan=plan, evidence={"final": {
        "verdict": "faster", "speedup": ratio, "ci_low": lo, "ci_high": hi}})


def test_cross_check_agrees_when_the_intervals_overlap():
    c = fc.compare(summary(1.5, 1.3, 1.7), [hardware(1.6, 1.4, 1.9)], BASE)
    assert c["agree"] is True and c["stage_ratio"] == pytest.approx(1.6)
    assert c["final_ci"] == [1.3, 1.7] and "agrees" in c["words"]


def test_cross_check_multiplies_the_stages_that_changed_the_plan():
    loader = BASE.replace(cpu_threads=1, num_workers=2)
    stages = [hardware(2.0, 1.8, 2.2),
              StageRecord("loader", "y", plan=loader, evidence={"candidates": [
                  {"fate": "accepted", "speedup": 1.5, "ci_low": 1.4, "ci_high": 1.6},
                  {"fate": "rejected", "speedup": 0.9, "ci_low": 0.8, "ci_high": 1.0}]}),
              StageRecord("batch", "kept", plan=loader, evidence={})]  # unchanged: no factor
    c = fc.compare(summary(3.0, 2.6, 3.4), stages, BASE)
    assert c["stage_ratio"] == pytest.approx(3.0)
    assert c["stage_ci"] == pytest.approx([1.8 * 1.4, 2.2 * 1.6]) and c["agree"] is True


def test_cross_check_reads_the_batch_stages_throughput_points():
    batch = BASE.replace(batch_size=64, lr=0.002)
    st = StageRecord("batch", "z", plan=batch, evidence={"throughput": {"points": [
        {"batch_size": 32, "samples_per_s": 100.0, "ci_low": 95.0, "ci_high": 105.0, "n": 5},
        {"batch_size": 64, "samples_per_s": 150.0, "ci_low": 140.0, "ci_high": 160.0, "n": 5},
    ]}})
    c = fc.compare(summary(1.5, 1.4, 1.6), [st], BASE)
    assert c["stage_ratio"] == pytest.approx(1.5) and c["agree"] is True


def test_missing_stage_data_means_no_cross_check():
    c = fc.compare(summary(1.5, 1.3, 1.7), [StageRecord("hardware", "x", plan=TUNED)], BASE)
    assert c["agree"] is None and c["missing"] == ["hardware"]
    assert "no cross-check" in c["words"]
    c = fc.compare({"skipped": "budget"}, [hardware(1.6, 1.4, 1.9)], BASE)
    assert c["agree"] is None and "not measured" in c["words"]


def test_disagreement_repeats_the_check_in_separate_processes_and_keeps_the_repeat():
    # The numbers: the stage said 15.6x, the one-process final check 1.22x.
    def answer(key: dict[str, Any]) -> dict[str, Any]:
        return summary(14.0, 12.0, 16.5) if key.get("repeat") else summary(1.22, 1.1, 1.35)

    runner = Scripted(answer)
    check = FinalCheck(runner, WorkloadRef("x"), BASE, BASE.replace(batch_size=64),
                       SETTINGS, stages=(hardware(15.6, 13.0, 18.0,
                                                  BASE.replace(batch_size=64)),))
    out = check.run()
    assert len(runner.calls) == 2
    key, fn = runner.calls[1]
    assert key["split"] is True and key["repeat"] == 1
    assert fn.fn is split_ab.split_throughput_unit
    cross = out["cross_check"]
    assert cross["agree"] is False and cross["repeated"] is True
    assert cross["final_ratio"] == pytest.approx(1.22) and cross["first"]["ratio"] == 1.22
    assert cross["repeat"]["agree"] is True
    assert out["throughput"]["ratio"] == pytest.approx(14.0)  # the repeat is kept
    assert "14.00x" in out["claim"] and "disagrees" in cross["words"]
    rt = FinalResult.from_dict(FinalResult.from_dict(out).to_dict())
    assert rt.cross_check["repeat"]["ratio"] == pytest.approx(14.0)


def test_no_repeat_without_budget_and_old_records_have_no_cross_check():
    runner = Scripted(lambda key: summary(1.22, 1.1, 1.35))
    tight = dataclasses.replace(SETTINGS, ab_min_s=5.0)  # the first took 1 s of 5.5
    batch = BASE.replace(batch_size=64)  # one process first: a repeat would split
    check = FinalCheck(runner, WorkloadRef("x"), BASE, batch, tight, allowed_s=5.5,
                       stages=(hardware(15.6, 13.0, 18.0, batch),))
    out = check.run()
    assert len(runner.calls) == 1 and out["cross_check"]["repeated"] is False
    assert "caution" in out["cross_check"]["words"]
    assert FinalResult.from_dict({"verdict": "faster"}).cross_check == {}


def test_a_check_that_already_split_is_not_repeated_the_same_way():
    runner = Scripted(lambda key: summary(1.22, 1.1, 1.35))
    check = FinalCheck(runner, WorkloadRef("x"), BASE, TUNED, SETTINGS,
                       stages=(hardware(15.6, 13.0, 18.0),))
    out = check.run()
    assert len(runner.calls) == 1 and runner.calls[0][0]["split"] is True
    cross = out["cross_check"]
    assert cross["agree"] is False and cross["repeated"] is False
    assert "already ran each plan in its own process" in cross["words"]


def test_a_nan_in_a_worker_arm_comes_back_as_a_parity_failure():
    from perfpilot.tune.parity import ParityFailure, ParityVerdict

    verdict = ParityVerdict(False, "nan", "non-finite loss at step 2")
    with pytest.raises(ParityFailure) as e:
        split_ab._raised({"parity": verdict.to_dict()})
    assert e.value.verdict == verdict
    assert split_ab._raised({"sample": 0.1}) == {"sample": 0.1}


# ---------------------------------------------------------------- the report


def test_console_and_html_show_the_cross_check_from_the_record():
    import io
    import json
    from pathlib import Path

    from rich.console import Console

    from perfpilot.render.tune_console import print_summary
    from perfpilot.render.tune_html import report_page
    from perfpilot.tune_record import TuneRecord

    d = json.loads((Path(__file__).parent / "fixtures" / "tune_record.json").read_text())
    words = "the final check's 1.22x (1.10-1.35) disagrees with the stages' measured gains"
    d["final"]["cross_check"] = {"agree": False, "words": words, "stage_ratio": 15.6}
    d["final"]["throughput"]["arms"] = "the plans differ in process-wide settings"
    rec = TuneRecord.from_dict(d)
    assert TuneRecord.from_dict(rec.to_dict()).final.cross_check["words"] == words
    con = Console(file=io.StringIO(), force_terminal=True, width=400, color_system=None)
    print_summary(rec, Path("out"), con)
    assert f"cross-check: {words}" in con.file.getvalue()
    page = report_page(rec)
    assert "Cross-check against the stages: the final check&#x27;s 1.22x" in page
    assert "Throughput arms: the plans differ in process-wide settings." in page
