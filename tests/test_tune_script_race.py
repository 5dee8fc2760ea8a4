"""The script tuner's decisions, from runs faked as trial outcomes (no script is run).

What must hold: a candidate is kept only when its interval says faster; a failing run
rejects it with the run's reason and the race goes on; a loss that moves rejects it;
clear losers leave after the screening rounds; the joint grid respects the cores; the
winners of different knob groups are combined.
"""

from __future__ import annotations

import pytest

from perfpilot.script_tune_record import Candidate
from perfpilot.trial import Outcome
from perfpilot.tune.script.parity import RTOL_MATH, RTOL_SAME, judge_runs, window_diff
from perfpilot.tune.script.race import BASELINE, MAX_ROUNDS, Race
from perfpilot.tune.script.run import run_speedup
from perfpilot.tune.script.space import ScriptFacts, candidates, combine, window_steps
from perfpilot.tune.study import Study

LOSSES = [[float(i), 2.0 - 0.01 * i] for i in range(1, 41)]


def fake_run(speed: dict[str, float], *, fail: dict[str, str] | None = None,
             losses: dict[str, list[list[float]]] | None = None,
             steps: dict[str, int] | None = None):
    """A run function: seconds/sample by the changes' description, with a little
    round-to-round jitter that is the same for every arm of a round (drift)."""
    calls: dict[str, int] = {}

    def run(changes):
        from perfpilot.script_plan import describe

        name = describe(changes)
        calls[name] = calls.get(name, 0) + 1
        if fail and name in fail:
            return Outcome("failed", {"exit_code": 1}, fail[name])
        drift = 1.0 + 0.03 * ((calls[name] * 7) % 5)
        return Outcome("complete", {"seconds_per_sample": speed[name] * drift,
                                    "startup_s": 2.0, "steps": (steps or {}).get(name, 30),
                                    "losses": (losses or {}).get(name, LOSSES)})

    return run, calls


def race_until_done(race: Race, cands: list[Candidate]) -> list[Candidate]:
    for c in cands:
        race.add(c.name, c.changes)
    rnd = 0
    while any(c.fate == "pending" for c in cands) and rnd < MAX_ROUNDS:
        race.round(rnd, [c.name for c in cands if c.fate == "pending"])
        cands = [race.judge(c) if c.fate == "pending" else c for c in cands]
        rnd += 1
    return cands


def test_a_faster_candidate_is_kept_with_an_interval_above_one():
    run, _ = fake_run({"no change": 1.0, "num_workers=1": 0.7, "cpu_threads=1": 1.0})
    race = Race(Study(), run, window=30)
    out = race_until_done(race, [Candidate("num_workers=1", {"num_workers": 1}, "s"),
                                 Candidate("cpu_threads=1", {"cpu_threads": 1}, "s")])
    fast, same = out
    assert fast.fate == "kept" and fast.ci_low > 1.0 and fast.ratio == pytest.approx(1 / 0.7,
                                                                                     rel=0.05)
    assert same.fate == "same" and same.rounds == 3  # no gain in sight: left early
    assert "left the race after 3 rounds" in same.reason


def test_a_crashing_candidate_is_rejected_with_its_reason_and_the_race_goes_on():
    run, calls = fake_run({"no change": 1.0, "num_workers=2": 0.5, "cpu_threads=1": 0.6},
                          fail={"num_workers=2": "the script raised RuntimeError: boom"})
    race = Race(Study(), run, window=30)
    out = race_until_done(race, [Candidate("num_workers=2", {"num_workers": 2}, "s"),
                                 Candidate("cpu_threads=1", {"cpu_threads": 1}, "s")])
    crashed, other = out
    assert crashed.fate == "rejected" and "RuntimeError: boom" in crashed.reason
    assert calls["num_workers=2"] == 1  # not run again once it failed
    assert other.fate == "kept"


def test_a_clear_loser_leaves_after_the_screening_rounds():
    run, calls = fake_run({"no change": 1.0, "cpu_threads=2": 2.0})
    race = Race(Study(), run, window=30)
    (slow,) = race_until_done(race, [Candidate("cpu_threads=2", {"cpu_threads": 2}, "s")])
    assert slow.fate == "slower" and calls["cpu_threads=2"] == 3
    assert "left the race after 3 rounds" in slow.reason


def test_a_candidate_whose_loss_moves_is_rejected_even_when_faster():
    moved = [[s, v * 1.2] for s, v in LOSSES]
    run, _ = fake_run({"no change": 1.0, "precision=bf16": 0.5},
                      losses={"precision=bf16": moved})
    race = Race(Study(), run, window=30)
    (bf16,) = race_until_done(race, [Candidate("precision=bf16", {"precision": "bf16"}, "s")])
    assert bf16.fate == "rejected" and not bf16.parity.ok
    assert "differs from the baseline" in bf16.reason
    assert bf16.parity.tolerance == pytest.approx(RTOL_MATH * bf16.parity.baseline_loss)


def test_runs_are_recalled_from_the_study_on_resume(tmp_path):
    run, calls = fake_run({"no change": 1.0, "num_workers=1": 0.7})
    study = Study(tmp_path, fingerprint={"k": 1})
    race_until_done(Race(study, run, window=30),
                    [Candidate("num_workers=1", {"num_workers": 1}, "s")])
    n = dict(calls)
    again = Study(tmp_path, fingerprint={"k": 1}, resume=True)
    (c,) = race_until_done(Race(again, run, window=30),
                           [Candidate("num_workers=1", {"num_workers": 1}, "s")])
    assert calls == n and c.fate == "kept"  # nothing ran again, same decision


# ---------------------------------------------------------------- parity


def test_parity_same_math_is_strict_and_math_changes_get_more_room():
    near = [[s, v * 1.03] for s, v in LOSSES]
    same = judge_runs(LOSSES, near, changes_math=False)
    loose = judge_runs(LOSSES, near, changes_math=True)
    assert not same.ok and loose.ok
    assert same.tolerance == pytest.approx(RTOL_SAME * same.baseline_loss)
    assert "0.02 x baseline" in same.rule


def test_parity_noise_floor_and_nonfinite_and_nothing_to_compare():
    near = [[s, v + 0.1] for s, v in LOSSES]
    assert judge_runs(LOSSES, near, changes_math=False, noise=0.2).ok
    bad = [*LOSSES[:5], [6.0, float("nan")]]
    v = judge_runs(LOSSES, bad, changes_math=True)
    assert not v.ok and "nan" in v.rule
    assert judge_runs(LOSSES, [], changes_math=True) is None
    assert window_diff(LOSSES, LOSSES) == 0.0


# ---------------------------------------------------------------- candidates


def test_the_workers_threads_grid_fits_the_cores():
    facts = ScriptFacts(cores=2, threads=2, device="cpu", loader_workers=0, loader_iters=3)
    cands = candidates(facts, [], None, compile_ok="no compiler")
    grid = [c.changes for c in cands if c.source == "search:workers×threads"]
    assert {"num_workers": 1, "persistent_workers": True, "cpu_threads": 1} in grid
    assert {"cpu_threads": 1} in grid
    for ch in grid:
        assert ch.get("num_workers", 0) + ch.get("cpu_threads", 2) <= 3
    compile_ = next(c for c in cands if c.changes == {"compile": "default"})
    assert compile_.fate == "skipped" and compile_.reason == "no compiler"
    fp16 = next(c for c in cands if c.changes == {"precision": "fp16"})
    assert fp16.fate == "skipped" and "GradScaler" in fp16.reason


def test_no_dataloader_means_threads_only_and_no_duplicates():
    facts = ScriptFacts(cores=4, threads=4, device="cpu", loader_workers=None)
    cands = candidates(facts, [], None, compile_ok=None)
    grid = [c.changes for c in cands if c.source == "search:threads"]
    assert grid and all(set(ch) == {"cpu_threads"} for ch in grid)
    keys = [repr(sorted(c.changes.items())) for c in cands]
    assert len(keys) == len(set(keys))


def test_combine_takes_one_winner_per_knob_group():
    a = Candidate("w", {"num_workers": 1, "cpu_threads": 1}, "s")
    b = Candidate("t", {"cpu_threads": 2}, "s")
    c = Candidate("e", {"env": {"MALLOC_MMAP_MAX_": "0"}}, "s")
    assert combine([a, b]) is None
    assert combine([a, b, c]) == {"num_workers": 1, "cpu_threads": 1,
                                  "env": {"MALLOC_MMAP_MAX_": "0"}}


def test_window_and_whole_run_gain():
    assert window_steps(0.001) == 400 and window_steps(10.0) == 20
    assert window_steps(0.05) == 50
    assert run_speedup(2.0, 2.0, 2.0, 102.0) == pytest.approx(102 / 52)
    # a compile that adds 60 s of start-up does not pay back in a 100 s run at 1.2x
    assert run_speedup(2.0, 62.0, 1.2, 100.0) < 1.0
    assert run_speedup(None, 1.0, 2.0, 100.0) is None


def test_baseline_key_is_shared_by_every_round():
    run, calls = fake_run({"no change": 1.0})
    race = Race(Study(), run, window=30)
    race.run_once(BASELINE, 0)
    race.round(0, [])
    assert calls["no change"] == 1  # round 1's baseline run is the timing run


# ---------------------------------------------------------------- time to loss (batch)


def curve(steps: int, step_s: float, per_step_drop: float, batch: int) -> list[list[float]]:
    """[step, loss, t_s, samples] of a loss falling by ``per_step_drop`` per step."""
    return [[float(i), 3.0 - per_step_drop * i, round(i * step_s, 6), float(i * batch)]
            for i in range(1, steps + 1)]


def test_time_to_loss_reads_the_level_the_baseline_reached():
    from perfpilot.tune.script.ttl import candidate_span, target_level, time_to

    base = curve(40, 0.1, 0.01, 32)
    level, tb, span = target_level(base)
    assert span == 5 and level == pytest.approx(3.0 - 0.01 * 38)  # mean of steps 36-40
    assert tb == pytest.approx(4.0)
    # twice the batch, 1.6x the step time, twice the progress per step: 1.25x sooner
    big = curve(40, 0.16, 0.02, 64)
    tc = time_to(big, level, candidate_span(span, 2.0))
    assert tb / tc == pytest.approx(1.25, rel=0.06)
    assert time_to(curve(40, 0.1, 0.001, 64), level, 3) is None  # never gets there


def test_a_batch_candidate_is_judged_by_time_to_the_baselines_loss():
    def run(changes):
        if changes.get("batch_size"):  # faster per sample but learns too little per step
            return Outcome("complete", {"seconds_per_sample": 0.5,
                                        "losses": curve(40, 0.1, 0.004, 64)})
        return Outcome("complete", {"seconds_per_sample": 1.0,
                                    "losses": curve(40, 0.1, 0.01, 32)})

    race = Race(Study(), run, window=40)
    cand = Candidate("batch_size=64, lr_scale=2.0", {"batch_size": 64, "lr_scale": 2.0}, "s")
    race.add(cand.name, cand.changes, batch_ratio=2.0)
    race.round(0, [cand.name])
    out = race.judge(cand)
    assert out.fate == "rejected" and "did not reach the baseline's training loss" in out.reason


def test_a_batch_candidate_that_gets_there_sooner_is_kept():
    def run(changes):
        if changes.get("batch_size"):
            return Outcome("complete", {"seconds_per_sample": 0.5,
                                        "losses": curve(40, 0.12, 0.02, 64)})
        return Outcome("complete", {"seconds_per_sample": 1.0,
                                    "losses": curve(40, 0.1, 0.01, 32)})

    race = Race(Study(), run, window=40)
    cand = Candidate("b", {"batch_size": 64, "lr_scale": 2.0}, "s")
    out = race_until_done_ttl(race, cand)
    assert out.fate == "kept" and "sooner to the baseline's training loss" in out.reason
    assert out.ratio == pytest.approx(4.0 / 2.28, rel=0.08)


def race_until_done_ttl(race: Race, cand: Candidate) -> Candidate:
    race.add(cand.name, cand.changes, batch_ratio=2.0)
    for rnd in range(MAX_ROUNDS):
        race.round(rnd, [cand.name])
        cand = race.judge(cand)
        if cand.fate != "pending":
            break
    return cand


def test_batch_candidates_follow_the_optimizer_rule():
    sgd = ScriptFacts(cores=2, threads=2, device="cpu", loader_workers=0, optimizer="SGD",
                      batch_size=32)
    adam = ScriptFacts(cores=2, threads=2, device="cpu", loader_workers=0, optimizer="AdamW",
                       batch_size=32)
    (b_sgd,) = [c for c in candidates(sgd, [], None, compile_ok="x")
                if "batch_size" in c.changes]
    (b_adam,) = [c for c in candidates(adam, [], None, compile_ok="x")
                 if "batch_size" in c.changes]
    assert b_sgd.changes == {"batch_size": 64, "lr_scale": 2.0}
    assert b_adam.changes == {"batch_size": 64, "lr_scale": pytest.approx(1.4142)}


def test_candidates_that_fit_the_cores_and_add_workers_come_first():
    from perfpilot.record import Finding

    facts = ScriptFacts(cores=2, threads=2, device="cpu", loader_workers=0, loader_iters=1,
                        data_share=0.4)
    finding = Finding(id="dataloader-bound", title="t", evidence="e", fix="f",
                      estimated_speedup=1.3, plan_change={"num_workers": 2})
    cands = candidates(facts, [finding], None, compile_ok="x")
    assert cands[0].changes == {"num_workers": 1, "cpu_threads": 1}
    # the finding's own fix is still tried, after what fits in the 2 cores
    names = [c.changes for c in cands]
    assert {"num_workers": 2} in names
    assert names.index({"num_workers": 2}) > names.index({"cpu_threads": 1})


def test_a_candidate_under_which_the_script_ends_early_is_rejected():
    run, _ = fake_run({"no change": 1.0, "num_workers=1": 0.5}, steps={"num_workers=1": 5})
    race = Race(Study(), run, window=30)
    (c,) = race_until_done(race, [Candidate("num_workers=1", {"num_workers": 1}, "s")])
    assert c.fate == "rejected"
    assert "ended early: 5 steady steps, the baseline ran 30" in c.reason


def test_a_batch_change_is_never_patched_without_its_learning_rate(tmp_path):
    from perfpilot.probes.launch import parse_target
    from perfpilot.script_tune_record import Result, ScriptTuneRecord
    from perfpilot.tune.script.outputs import write_outputs

    script = tmp_path / "train.py"
    script.write_text("import torch\nfrom torch.utils.data import DataLoader\n"
                      "loader = DataLoader([1, 2, 3], batch_size=32)\n")
    rec = ScriptTuneRecord(command=("python", str(script)), result=Result(
        changes={"batch_size": 64, "lr_scale": 2.0, "num_workers": 1}))
    out = write_outputs(rec, parse_target(["python", str(script)]), tmp_path)
    assert "batch_size" in out.patch.launcher and "lr_scale" in out.patch.launcher
    diff = (tmp_path / "train.patch").read_text()
    assert "num_workers=1" in diff and "batch_size=64" not in diff
    assert out.patch.launcher_command and "run-script" in out.patch.launcher_command
