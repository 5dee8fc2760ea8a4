"""The decision on measured time-to-target runs, and the validation that produces them."""

from __future__ import annotations

import math

from perfpilot.trial import Trial
from perfpilot.tune.stages.batch.runs import RunConfig
from perfpilot.tune.stages.batch.validate import ConfigRuns, Validation, decide

BASE = RunConfig(32, 1e-3, 0)
CAND = RunConfig(64, 2e-3, 4)
THR = {16: 500.0, 32: 1000.0, 64: 1600.0, 128: 2000.0}


def trial(state: str, samples: int | None, cost: float = 1.0) -> Trial:
    m = {} if samples is None else {"samples": samples, "steps": 1, "train_time_s": 1.0}
    return Trial(number=0, stage="batch", plan={}, state=state, measurements=m,
                 started_at=0.0, finished_at=cost)


def runs(cfg: RunConfig, seconds: list[float], states: list[str] | None = None) -> ConfigRuns:
    x = ConfigRuns(cfg)
    for r, s in enumerate(seconds):
        state = states[r] if states else "complete"
        x.add(r, trial(state, round(s * THR[cfg.batch_size])), lambda b, n: n / THR[b])
    return x


def test_switches_when_shown_faster_on_five_paired_rounds() -> None:
    d = decide([runs(BASE, [10, 11, 9.5, 10.5, 10.2]), runs(CAND, [6, 6.5, 5.8, 6.1, 6.3])],
               BASE)
    assert d.config == CAND and d.verdict == "faster"
    assert d.comparison["method"] == "compare_samples" and d.comparison["ratio"] > 1.5


def test_keeps_baseline_when_not_shown_faster() -> None:
    d = decide([runs(BASE, [10, 7, 12, 8, 11]), runs(CAND, [9, 12, 7.5, 10, 8.5])], BASE)
    assert d.config == BASE and d.verdict == "same"
    assert "not shown faster" in d.why


def test_few_rounds_use_median_intervals_and_fewer_than_three_decide_nothing() -> None:
    d = decide([runs(BASE, [10, 10.5, 9.8]), runs(CAND, [6, 6.2, 6.1])], BASE)
    assert d.config == CAND and d.comparison["method"] == "median intervals"
    for n in (1, 2):
        few = decide([runs(BASE, [10] * n), runs(CAND, [2] * n)], BASE)
        assert few.config == BASE and few.verdict == "undecided"


def test_baseline_best_and_nothing_reached() -> None:
    d = decide([runs(BASE, [5, 5.1]), runs(CAND, [6, 6.4])], BASE)
    assert d.config == BASE and d.verdict == "baseline-best"
    none = decide([runs(BASE, [5], ["pruned"]), runs(CAND, [6], ["pruned"])], BASE)
    assert none.config == BASE and none.verdict == "none-reached"


def test_diverged_config_is_never_chosen() -> None:
    fast_but_nan = ConfigRuns(CAND)
    for r in range(5):
        fast_but_nan.add(r, trial("complete" if r else "nan", 100), lambda b, n: n / THR[b])
    d = decide([runs(BASE, [10] * 5), fast_but_nan], BASE)
    assert d.config == BASE


def test_censored_baseline_counts_as_lower_bound() -> None:
    base = runs(BASE, [12, 12, 12, 12, 12], ["pruned"] * 5)
    d = decide([base, runs(CAND, [6, 6.5, 5.9, 6.2, 6.0])], BASE)
    assert d.config == CAND and d.verdict == "faster"


# ---------------------------------------------------------------- the validation loop


class Landscape:
    """Samples to target as a smooth bowl in (log2 batch, log2 lr); counts the runs."""

    def __init__(self, best_batch: int, best_lr: float) -> None:
        self.bb, self.blr = best_batch, best_lr
        self.calls: list[tuple[RunConfig, int, int]] = []

    def seconds(self, cfg: RunConfig) -> float:
        db = math.log2(cfg.batch_size / self.bb)
        dl = math.log2(cfg.lr / self.blr)
        return 1.0 + 0.3 * db * db + 0.2 * dl * dl

    def run(self, cfg: RunConfig, r: int, max_samples: int) -> Trial:
        self.calls.append((cfg, r, max_samples))
        need = round(self.seconds(cfg) * THR[cfg.batch_size] * (1 + 0.01 * r))
        if need > max_samples:
            return trial("pruned", max_samples, cost=0.01)
        return trial("complete", need, cost=0.01)


def make(b: int, lr: float) -> RunConfig:
    return RunConfig(b, float(f"{lr:.6g}"), 0)


def test_validation_screens_refines_repeats_and_finds_the_optimum() -> None:
    land = Landscape(best_batch=64, best_lr=8e-3)
    val = Validation(land.run, lambda: 100.0, box=50.0, slack=0.2, throughput=THR,
                     make=make, rescale=lambda lr, a, b: lr * math.sqrt(b / a))
    base = make(32, 1e-3)
    val.record(base, 0, land.run(base, 0, 10**9), "baseline")
    val.screen([make(64, 1e-3 * math.sqrt(2)), make(128, 2e-3)])
    val.refine(12)
    val.repeat(base, 5, 2)
    d = decide(list(val.pool.values()), base)
    assert d.config.batch_size == 64 and d.verdict == "faster"
    assert math.isclose(d.config.lr, 8e-3, rel_tol=0.3)
    # screening runs were cut off at (1 + slack) x the best time so far
    for cfg, r, max_samples in land.calls[1:]:
        if r == 0:
            assert max_samples <= math.ceil(1.2 * 50 * THR[cfg.batch_size])
    # every repeated round ran the same group, so the comparison is paired
    rounds = {r for _, r, _ in land.calls if r > 0}
    assert rounds == {1, 2, 3, 4}
    assert len(val.pool[base].runs) == 5 and len(val.pool[d.config].runs) == 5


def test_budget_stops_runs_and_records_why() -> None:
    land = Landscape(best_batch=64, best_lr=8e-3)
    left = [100.0]
    val = Validation(land.run, lambda: left[0], box=5.0, slack=0.2, throughput=THR,
                     make=make, rescale=lambda lr, a, b: lr)
    base = make(32, 1e-3)
    val.record(base, 0, land.run(base, 0, 10**9), "baseline")
    left[0] = 0.5
    val.screen([make(64, 1e-3)])
    assert val.pool[make(64, 1e-3)].skipped.startswith("budget left")
    assert len(land.calls) == 1


class Clock:
    """A budget the runs spend: each run costs ``ratio`` x its modelled time (``slow``
    for the configurations listed there), so the budget left is known exactly."""

    def __init__(self, land: Landscape, budget: float, ratio: float = 1.3,
                 slow: dict[RunConfig, float] | None = None) -> None:
        self.land, self.left, self.ratio, self.slow = land, budget, ratio, slow or {}

    def run(self, cfg: RunConfig, r: int, max_samples: int) -> Trial:
        t = self.land.run(cfg, r, max_samples)
        cost = t.measurements["samples"] / THR[cfg.batch_size] * self.slow.get(cfg, self.ratio)
        self.left -= cost
        return Trial(number=0, stage="batch", plan={}, state=t.state,
                     measurements=t.measurements, started_at=0.0, finished_at=cost)


def test_cost_uses_the_median_ratio_so_one_slow_run_does_not_stop_the_repeats() -> None:
    land = Landscape(best_batch=64, best_lr=2e-3)
    outlier = make(64, 4e-3)
    clock = Clock(land, budget=100.0, ratio=1.3, slow={outlier: 2.7})
    val = Validation(clock.run, lambda: clock.left, box=50.0, slack=0.2, throughput=THR,
                     make=make, rescale=lambda lr, a, b: lr)
    base = make(32, 1e-3)
    val.record(base, 0, clock.run(base, 0, 10**9), "baseline")
    val.screen([make(64, 2e-3), outlier])
    # per configuration: its own runs' ratio; a new one: the median over all runs
    assert math.isclose(val.cost(1.0, val.pool[outlier]), 2.7)
    assert math.isclose(val.cost(1.0, val.pool[base]), 1.3)
    assert math.isclose(val.cost(1.0), 1.3)  # the median of 1.3, 1.3, 2.7, not the max
    # the repeats of baseline + best cost about 1.3 x (1.65 + 1.0) s a round, not 2.7 x
    clock.left = 2 * 1.3 * (land.seconds(base) + 1.0) + 0.5
    val.repeat(base, 5, 1)
    assert set(val.pool[base].runs) == {0, 1, 2}
    assert decide(list(val.pool.values()), base).verdict == "faster"


def test_repeats_drop_to_baseline_and_best_when_a_full_round_no_longer_fits() -> None:
    land = Landscape(best_batch=64, best_lr=2e-3)
    clock = Clock(land, budget=1000.0)
    val = Validation(clock.run, lambda: clock.left, box=50.0, slack=0.5, throughput=THR,
                     make=make, rescale=lambda lr, a, b: lr)
    base, best, second = make(32, 1e-3), make(64, 2e-3), make(64, 4e-3)
    val.record(base, 0, clock.run(base, 0, 10**9), "baseline")
    val.screen([best, second])
    assert val.pool[second].median() <= 1.5 * val.pool[best].median()  # a finalist
    full = val.round_cost([val.pool[x] for x in (base, best, second)])
    pair = val.round_cost([val.pool[x] for x in (base, best)])
    # room for two full rounds (the reserve), then only for baseline + best (runs take
    # 1% longer each round in this landscape: a few percent of room over the estimates)
    clock.left = 2 * full * 1.03 + pair * 1.05
    assert 2 * full * 0.03 + pair * 1.05 < full
    val.repeat(base, 5, 2)
    assert set(val.pool[second].runs) == {0, 1, 2}
    assert set(val.pool[base].runs) == set(val.pool[best].runs) == {0, 1, 2, 3}
    d = decide(list(val.pool.values()), base)
    assert d.config == best and d.verdict == "faster"
