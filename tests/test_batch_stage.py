"""The batch stage end to end: fake measurements (decisions, evidence, resume) and one
short run through the real engine on a tiny workload."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from perfpilot.errors import UserError
from perfpilot.plan import Plan
from perfpilot.trial import Outcome
from perfpilot.tune.stage import STAGES, StageContext, load_stage
from perfpilot.tune.stages.batch.stage import BatchStage
from perfpilot.tune.study import Study
from perfpilot.workload import Workload

# ---------------------------------------------------------------- a tiny real workload


def _blobs(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 8, generator=g) + 1.5 * (2 * y.unsqueeze(1) - 1).float()
    return torch.utils.data.TensorDataset(x, y)


def _loss(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def _acc(model, batch):
    x, y = batch
    return (model(x).argmax(1) == y).float().mean().item()


def tiny(**kw) -> Workload:
    return Workload(
        name="blobs", model=lambda: nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2)),
        train_data=lambda: _blobs(512, 0), val_data=lambda: _blobs(256, 1), loss=_loss,
        optimizer=lambda p, lr: torch.optim.SGD(p, lr=lr), metric=_acc, direction="max",
        target=0.97, baseline=Plan(batch_size=16, lr=0.02, cpu_threads=1), **kw)


# ---------------------------------------------------------------- fake measurements


class FakeRuns:
    """Synthetic, deterministic measurements: OOM above 300, throughput saturating at
    4000 samples/s, samples to target a bowl with its optimum at batch 64, lr 0.16."""

    def __init__(self, workload, plan) -> None:
        self.calls = 0
        self.first_evals: list[tuple[int, int]] = []

    def dataset_size(self) -> int:
        return 512

    def memory_budget(self, fraction: float) -> Outcome:
        return Outcome("complete", {"budget_bytes": 10**12})

    def probe(self, b: int) -> Outcome:
        self.calls += 1
        if b > 300:
            return Outcome("oom", reason="CUDA out of memory")
        return Outcome("complete", {"peak_bytes": 1000 * b, "step_s": 0.01})

    def throughput(self, b: int, window_s: float) -> Outcome:
        self.calls += 1
        return Outcome("complete", {"samples_per_s": 4000 * b / (b + 32)})

    def noise(self, spec, seed) -> Outcome:
        self.calls += 1
        return Outcome("complete", {"noise": {"b_simple": 50.0, "ci_low": 40.0, "ci_high": 60.0,
                                              "grad_sq": 1.0, "trace_sigma": 50.0}})

    def samples_needed(self, cfg, seed: int) -> int:
        db, dl = math.log2(cfg.batch_size / 64), math.log2(cfg.lr / 0.16)
        return round(2000 * (1 + 0.3 * db * db + 0.15 * dl * dl) * (1 + 0.02 * (seed % 3)))

    def time_to_target(self, cfg, *, seed, max_samples, eval_fraction, noise,
                       target=None, first_eval=0) -> Outcome:
        self.calls += 1
        self.first_evals.append((cfg.batch_size, first_eval))
        need = self.samples_needed(cfg, seed)
        data = {"samples": min(need, max_samples), "steps": 10, "train_time_s": 1.0,
                "curve": [[min(need, max_samples), 1.0, 0.5]]}
        if noise is not None:
            data["noise_profile"] = [{"samples": 0, "b_simple": 50.0},
                                     {"samples": 1000, "b_simple": 80.0}]
        if need > max_samples:
            return Outcome("pruned", data, reason="cut off")
        return Outcome("complete", {**data, "ttt_s": 1.0, "reached": True})

    def close(self) -> None:
        pass


def _ctx(trials=None, options=None, workload=None) -> StageContext:
    w = workload or tiny()
    return StageContext(workload=w, incumbent=w.baseline, trials=trials or Study(),
                        budget_s=600.0, options={"batch": options or {}})


def test_registered_and_loadable() -> None:
    assert STAGES["batch"] == "perfpilot.tune.stages.batch.stage:BatchStage"
    assert isinstance(load_stage("batch"), BatchStage)


def test_measured_winner_with_evidence() -> None:
    res = BatchStage(FakeRuns).run(_ctx())
    assert res.name == "batch"
    assert res.plan.batch_size == 64
    assert res.plan.lr == pytest.approx(0.16, rel=0.3)
    ev = json.loads(json.dumps(res.evidence))  # JSON-able
    assert ev["fit"]["limit"] <= 300 and ev["fit"]["cause"] == "memory"
    assert ev["throughput"]["knee"] in [p["batch_size"] for p in ev["throughput"]["points"]]
    assert ev["noise_scale"]["start"]["b_simple"] == 50.0
    assert len(ev["noise_scale"]["along_training"]) == 2
    assert {g["batch_size"] for g in ev["goodput"]} == {p["batch_size"]
                                                         for p in ev["throughput"]["points"]}
    assert ev["lr_policy"]["rule"] == "linear" and ev["lr_policy"]["family"] == "sgd"
    chosen = ev["chosen"]
    assert chosen["verdict"] == "faster" and chosen["comparison"]["method"] == "compare_samples"
    assert ev["prediction"]["batch_size"] in {g["batch_size"] for g in ev["goodput"]}
    cands = {(c["batch_size"], c["lr"]): c for c in ev["candidates"]}
    assert cands[(16, 0.02)]["origin"] == "baseline"
    assert any(c["origin"] == "predicted" and c["predicted_ttt_s"] is not None
               for c in cands.values())
    winner = cands[(res.plan.batch_size, chosen["lr"])]
    assert winner["measured_ttt_s"]["n"] == 5
    assert all(t.stage == "batch" for t in res.trials)
    assert "->" in res.summary


def test_resume_repeats_no_trial_and_decides_the_same() -> None:
    trials = Study()
    first = BatchStage(FakeRuns).run(_ctx(trials))
    runs = []

    def counting(w, p):
        runs.append(FakeRuns(w, p))
        return runs[-1]

    again = BatchStage(counting).run(_ctx(trials))
    assert runs[0].calls == 0  # every measurement recalled from the trial store
    assert again.plan == first.plan
    assert again.evidence["chosen"] == first.evidence["chosen"]


def test_lr_rule_override_and_no_refinement() -> None:
    res = BatchStage(FakeRuns).run(_ctx(options={"lr_rule": "none", "refine_runs": 0}))
    lrs = {c["lr"] for c in res.evidence["candidates"]}
    assert lrs == {0.02}  # only predicted candidates, at the baseline LR
    assert res.evidence["lr_policy"]["source"] == "option"


def test_bad_option_is_a_user_error() -> None:
    with pytest.raises(UserError, match="unknown batch option"):
        BatchStage(FakeRuns).run(_ctx(options={"batchsize": 3}))


def test_without_a_target_the_baseline_is_kept() -> None:
    w = tiny().__class__(**{**tiny().__dict__, "target": None})
    res = BatchStage(FakeRuns).run(_ctx(workload=w))
    assert res.plan == w.baseline
    assert "no target" in res.evidence["chosen"]["why"]


# ---------------------------------------------------------------- the real engine


def test_real_engine_short_run() -> None:
    ctx = _ctx(options={"throughput_repeats": 2, "noise_estimates": 2, "repeats": 2,
                        "refine_runs": 2, "candidates": 2, "max_batch": 128})
    ctx = StageContext(**{**ctx.__dict__, "budget_s": 15.0})
    res = BatchStage().run(ctx)
    ev = json.loads(json.dumps(res.evidence))
    assert ev["fit"]["limit"] == 128 and ev["fit"]["cause"] == "cap"
    assert all(p["samples_per_s"] > 0 for p in ev["throughput"]["points"])
    assert ev["noise_scale"]["start"]["n_estimates"] == 2
    assert ev["noise_scale"]["along_training"]
    base = next(c for c in ev["candidates"] if c["origin"] == "baseline")
    assert base["runs"][0]["state"] == "complete" and base["runs"][0]["wall_ttt_s"] > 0
    assert res.plan.batch_size in {p["batch_size"] for p in ev["throughput"]["points"]}


def test_throughput_paired_by_round_cancels_drift() -> None:
    from perfpilot.tune.stages.batch.stage import paired_point

    load = [1.0, 0.5, 1.0, 0.4, 0.9, 0.5, 1.0]  # the machine's speed, round by round
    base = {r: 1000 * f for r, f in enumerate(load)}
    other = {r: 1500 * f for r, f in enumerate(load)}  # always 1.5x the baseline batch
    p = paired_point(64, other, base)
    ref = paired_point(32, base, base)
    assert p.samples_per_s / ref.samples_per_s == pytest.approx(1.5)
    assert p.ci_low == pytest.approx(p.ci_high)  # no spread left in the ratio
    assert ref.ci_high > ref.ci_low  # the baseline keeps its own spread
    assert paired_point(64, {0: 1.0}, base) is None


def test_runs_after_the_baselines_first_evaluate_from_a_share_of_its_samples() -> None:
    from perfpilot.tune.stages.batch.stage import FIRST_EVAL_SHARE

    made: list[FakeRuns] = []

    def keep(w, p):
        made.append(FakeRuns(w, p))
        return made[-1]

    res = BatchStage(keep).run(_ctx())
    calls = made[0].first_evals
    assert calls[0] == (16, 0)  # the baseline's first run: nothing known yet
    base = next(c for c in res.evidence["candidates"] if c["origin"] == "baseline")
    want = math.floor(FIRST_EVAL_SHARE * base["runs"][0]["samples"])
    assert want > 0 and all(f == want for _, f in calls[1:])
    ttt = [t for t in res.trials if t.plan.get("step") == "time-to-target"]
    assert "first_eval" not in ttt[0].plan and ttt[1].plan["first_eval"] == want
