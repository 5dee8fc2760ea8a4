"""The batch stage under a proxy target: it decides at the decision level, re-checks the
winner at the later proxy level (confirmed, not confirmed: short-horizon bias, or not
re-checked for budget), extrapolates each configuration to the real target, and keys its
trials by level so a resumed study recalls them."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from torch import nn

from perfpilot.plan import Plan
from perfpilot.trial import Outcome
from perfpilot.tune.proxy import ProxyTarget, decision_level
from perfpilot.tune.stage import StageContext
from perfpilot.tune.stages.batch.stage import BatchStage
from perfpilot.tune.study import Study
from perfpilot.workload import Workload

THR16 = 4000 * 16 / 48  # the fake's samples/s at the baseline batch


def _data(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.TensorDataset(torch.randn(n, 4, generator=g),
                                          torch.randint(0, 2, (n,), generator=g))


def workload() -> Workload:
    return Workload(
        name="fake", model=lambda: nn.Linear(4, 2), train_data=lambda: _data(64, 0),
        val_data=lambda: _data(32, 1), loss=lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]),
        optimizer=lambda p, lr: torch.optim.SGD(p, lr=lr), metric=lambda m, b: 0.0,
        metric_name="val_loss", direction="min", target=1.0,
        baseline=Plan(batch_size=16, lr=0.02, cpu_threads=1))


def proxy(late_samples_scale: float = 1.0) -> ProxyTarget:
    """A baseline that trained 30 s at THR16 samples/s, its loss falling 0.05 a second;
    it held the proxy level 2.0 after 20 s. ``late_samples_scale`` stretches the samples
    it took (not its seconds) so a re-check round costs more than the stage has."""
    curve = [[THR16 * i * (late_samples_scale if i >= 11 else 1.0), float(i), 3.0 - 0.05 * i]
             for i in range(1, 31)]
    return ProxyTarget("val_loss", "min", 1.0, 2.0, 30.0, 20.0, THR16, curve, None)


class FakeRuns:
    """Deterministic measurements that know the level they run to (``target``, else the
    workload's).
    Samples to a level grow with the batch (``1 + b/200``); with ``bias`` the large batches
    need 3x the samples to the later level: they win early and lose late."""

    bias = False

    def __init__(self, w: Workload, plan: Plan) -> None:
        self.level = float(w.target)
        self.calls = 0
        self.first_evals: list[tuple[int, int]] = []

    def dataset_size(self) -> int:
        return 4096

    def memory_budget(self, fraction: float) -> Outcome:
        return Outcome("complete", {"budget_bytes": 10**12})

    def probe(self, b: int) -> Outcome:
        if b > 300:
            return Outcome("oom", reason="out of memory")
        return Outcome("complete", {"peak_bytes": 1000 * b, "step_s": 0.01})

    def throughput(self, b: int, window_s: float) -> Outcome:
        return Outcome("complete", {"samples_per_s": 4000 * b / (b + 32)})

    def noise(self, spec, seed) -> Outcome:
        return Outcome("complete", {"noise": {"b_simple": 200.0, "ci_low": 150.0,
                                              "ci_high": 250.0, "grad_sq": 1.0,
                                              "trace_sigma": 200.0}})

    def samples_needed(self, cfg, seed: int, level: float) -> int:
        late = level <= 2.0
        base = THR16 * (20 if late else 10)  # the baseline's samples to the level
        f = (1 + cfg.batch_size / 200) / (1 + 16 / 200)
        if late and self.bias and cfg.batch_size > 16:
            f *= 3
        return round(base * f * (1 + 0.01 * (seed % 3)))

    def time_to_target(self, cfg, *, seed, max_samples, eval_fraction, noise,
                       target=None, first_eval=0) -> Outcome:
        self.calls += 1
        self.first_evals.append((cfg.batch_size, first_eval))
        level = self.level if target is None else target
        need = self.samples_needed(cfg, seed, level)
        got = min(need, max_samples)
        curve = [[got * k / 5, k, level + 0.4 * (5 / k) ** 0.5 - 0.4] for k in range(1, 6)]
        data = {"samples": got, "steps": 10, "train_time_s": 1.0, "curve": curve}
        if noise is not None:
            data["noise_profile"] = [{"samples": 0, "b_simple": 200.0}]
        if need > max_samples:
            return Outcome("pruned", data, reason="cut off")
        return Outcome("complete", {**data, "ttt_s": 1.0, "reached": True})

    def close(self) -> None:
        pass


class Biased(FakeRuns):
    bias = True


def _ctx(p: ProxyTarget, trials: Study | None = None, budget_s: float = 600.0) -> StageContext:
    w = workload()
    return StageContext(workload=dataclasses.replace(w, target=p.level), incumbent=w.baseline,
                        trials=trials or Study(), budget_s=budget_s,
                        options={"batch": {}, "proxy": p.to_dict()})


def test_decided_at_the_decision_level_and_confirmed_at_the_later_one() -> None:
    p = proxy()
    res = BatchStage(FakeRuns).run(_ctx(p))
    ev = json.loads(json.dumps(res.evidence))  # JSON-able
    px = ev["proxy"]
    assert px["level"] == 2.0 and px["target"] == 1.0
    assert px["decision_level"] == pytest.approx(decision_level(p, 600.0, THR16)[0])
    assert px["decision_level_samples"] == pytest.approx(0.5 * 20 * THR16)  # half the way
    assert px["decision_level"] > 2.0  # earlier (a higher loss) than the proxy level
    rc = px["recheck"]
    assert rc["done"] and rc["verdict"] == "confirmed"
    assert rc["chosen_median_s"] <= rc["baseline_median_s"]
    assert res.plan.batch_size > 16
    assert "re-checked at the later level 2" in res.summary
    assert "faster" in res.summary and "the decision level val_loss <= 2.5" in res.summary
    # every configuration that reached the level has an extrapolation, in words too
    assert px["extrapolations"] and all("words" in e for e in px["extrapolations"])
    # trials at the two levels are keyed apart
    levels = {t.plan.get("target") for t in res.trials if t.plan.get("step") == "time-to-target"}
    assert levels == {px["decision_level"], 2.0}


def test_a_short_horizon_gain_is_not_confirmed_and_the_baseline_is_kept() -> None:
    res = BatchStage(Biased).run(_ctx(proxy()))
    rc = res.evidence["proxy"]["recheck"]
    assert rc["done"] and rc["verdict"] == "not-confirmed"
    assert res.plan.batch_size == 16
    assert "short-horizon gain" in res.evidence["chosen"]["why"]


def test_without_budget_for_a_round_the_decision_stands_unchecked() -> None:
    res = BatchStage(FakeRuns).run(_ctx(proxy(late_samples_scale=1000.0)))
    rc = res.evidence["proxy"]["recheck"]
    assert not rc["done"] and "not re-checked" in rc["why"]
    assert res.plan.batch_size > 16  # the decision at the earlier level stands
    assert "not re-checked" in res.evidence["chosen"]["why"]


class SmallLr(FakeRuns):
    """The baseline's LR (0.02) is 8x too small: samples to a level fall as the LR rises
    to 0.16, and rise past it."""

    def samples_needed(self, cfg, seed: int, level: float) -> int:
        f = 0.16 / min(cfg.lr, 0.16) * max(1.0, cfg.lr / 0.16)
        return round(super().samples_needed(cfg, seed, level) * f / 8)


def test_under_a_proxy_the_lr_step_is_screened_first_and_a_too_small_lr_is_raised() -> None:
    res = BatchStage(SmallLr).run(_ctx(proxy()))
    cands = res.evidence["candidates"]
    assert [c["origin"] for c in cands[:3]] == ["baseline", "lr-step", "predicted"]
    assert (cands[1]["batch_size"], cands[1]["lr"]) == (16, pytest.approx(0.04))
    assert res.plan.lr > 0.04  # the search went on up from the step that won
    assert res.evidence["proxy"]["recheck"]["verdict"] == "confirmed"


def test_without_a_proxy_the_predictions_are_screened_first() -> None:
    w = workload()
    ctx = StageContext(workload=dataclasses.replace(w, target=2.0), incumbent=w.baseline,
                       trials=Study(), budget_s=600.0, options={"batch": {}})
    cands = BatchStage(FakeRuns).run(ctx).evidence["candidates"]
    assert cands[0]["origin"] == "baseline" and cands[1]["origin"] == "predicted"
    assert "lr-step" not in {c["origin"] for c in cands}


def test_a_resumed_study_recalls_both_levels() -> None:
    trials = Study()
    first = BatchStage(FakeRuns).run(_ctx(proxy(), trials))
    made: list[FakeRuns] = []

    def counting(w, plan):
        made.append(FakeRuns(w, plan))
        return made[-1]

    again = BatchStage(counting).run(_ctx(proxy(), trials))
    assert sum(r.calls for r in made) == 0
    assert again.plan == first.plan
    assert again.evidence["proxy"]["recheck"] == first.evidence["proxy"]["recheck"]


def test_the_report_says_what_was_measured_and_what_was_extrapolated() -> None:
    from perfpilot.render.tune_html import report_page
    from perfpilot.tune.proxy import proxy_from_baseline, record_of
    from perfpilot.tune_record import StageRecord, TuneRecord, WorkloadInfo

    history = [[10 * (i + 1), i + 1.0, 1.2 + 40 * (320 * (i + 1)) ** -0.5] for i in range(30)]
    p = proxy_from_baseline({"record": {"metric": {"history": history}}}, metric="val_loss",
                            direction="min", target=1.5, samples_per_step=32)
    assert p is not None
    res = BatchStage(FakeRuns).run(_ctx(proxy()))
    rec = TuneRecord(
        workload=WorkloadInfo(name="fake", metric="val_loss", direction="min", target=1.5),
        proxy=record_of(p), stages=(StageRecord(name="batch", summary=res.summary,
                                                evidence=res.evidence),))
    again = TuneRecord.from_dict(json.loads(json.dumps(rec.to_dict())))  # round-trips
    assert again.proxy == rec.proxy
    html = report_page(again)
    section = html[html.index('id="proxy"'):]
    section = section[:section.index("</section>")]
    assert "Measured: the baseline trained 30 s" in section
    assert "Extrapolated: the baseline&#x27;s learning curve" in section
    assert "<svg" in section  # the learning curve
    assert "Re-check against short-horizon bias, at a later level (val_loss &lt;= 2" in section
    assert "confirmed: the decision stands" in section
    assert "Extrapolated time to val_loss &lt;= 1" in section


def test_when_the_proxy_level_does_not_fit_a_later_level_between_is_rechecked() -> None:
    # The baseline took 12x the samples after its 10th evaluation: two rounds to the proxy
    # level no longer fit, two to an intermediate level do.
    res = BatchStage(FakeRuns).run(_ctx(proxy(late_samples_scale=12.0)))
    px = res.evidence["proxy"]
    rc = px["recheck"]
    assert rc["done"], rc
    assert px["level"] < rc["level"] < px["decision_level"]  # between the two (a loss)
    assert f"re-checked at the later level {rc['level']:.4g}" in res.summary


def test_under_a_proxy_the_first_evaluation_comes_from_the_baselines_curve() -> None:
    from perfpilot.tune.stages.batch.stage import FIRST_EVAL_SHARE

    p = proxy()
    made: list[FakeRuns] = []

    def keep(w, plan):
        made.append(FakeRuns(w, plan))
        return made[-1]

    res = BatchStage(keep).run(_ctx(p))
    level = res.evidence["proxy"]["decision_level"]
    at = next(s for s, _, v in p.curve if v <= level)  # the curve's first evaluation there
    assert made[0].first_evals[0] == (16, math.floor(FIRST_EVAL_SHARE * at))
    assert all(f > 0 for _, f in made[0].first_evals)
