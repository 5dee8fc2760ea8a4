"""Tests of perfpilot.measure: synthetic samples and fake clocks only, never wall time."""

from __future__ import annotations

import json
import math
from itertools import count

import numpy as np
import pytest

from perfpilot.measure import (
    MIN_ROUNDS,
    Comparison,
    compare,
    compare_samples,
    look_schedule,
    median_ci,
    min_rounds_for,
    order_stat_rank,
    repeat,
    round_order,
    sign_test_interval,
    summarize,
    timed,
    verdict_of,
)
from perfpilot.record import StatSummary


def fake_clock(step: float = 1.0):
    """A clock that advances by ``step`` on every read."""
    ticks = count()
    return lambda: next(ticks) * step


def noisy(rng: np.random.Generator, center: float, sigma: float = 0.1):
    """A measure function returning lognormal samples around ``center``."""
    return lambda: float(center * rng.lognormal(0.0, sigma))


# ---------------------------------------------------------------- timing helpers


def test_repeat_warms_up_untimed_and_times_each_call():
    calls: list[str] = []
    clock_values = iter([10.0, 10.5, 20.0, 22.0])
    out = repeat(lambda: calls.append("x"), warmup=2, repeats=2,
                 clock=lambda: next(clock_values), sync=lambda: calls.append("sync"))
    assert out == [0.5, 2.0]
    # 2 warm-up calls with no sync, then sync / call / sync per timed repeat
    assert calls == ["x", "x", "sync", "x", "sync", "sync", "x", "sync"]


def test_repeat_rejects_bad_counts():
    with pytest.raises(ValueError, match="repeats"):
        repeat(lambda: None, repeats=0)
    with pytest.raises(ValueError, match="warmup"):
        repeat(lambda: None, warmup=-1)


def test_timed_returns_duration_of_one_call():
    measure = timed(lambda: None, clock=fake_clock(0.25))
    assert measure() == pytest.approx(0.25)


def test_round_order_alternates_abba():
    order = [side for i in range(4) for side in round_order(i)]
    assert "".join(order) == "abbaabba"


# ---------------------------------------------------------------- summarize


def test_summarize_basic_values():
    s = summarize([3.0, 1.0, 2.0, 4.0, 100.0])
    assert isinstance(s, StatSummary)
    assert s.median == 3.0 and s.n == 5 and s.mean == pytest.approx(22.0)
    assert s.ci_low <= s.median <= s.ci_high
    assert s.ci_high < 100.0 or s.ci_low == 1.0  # robust: the outlier is not the centre


@pytest.mark.parametrize("bad, match", [
    ([], "at least 2"),
    ([1.0], "at least 2"),
    ([1.0, float("nan")], "sample 1"),
    ([1.0, float("inf"), 2.0], "sample 1"),
    ([[1.0, 2.0], [3.0, 4.0]], "flat"),
    (["a", "b"], "numbers"),
])
def test_summarize_rejects_degenerate_input(bad, match):
    with pytest.raises(ValueError, match=match):
        summarize(bad)


def test_summarize_accepts_zeros_and_constant_samples():
    s = summarize([0.0, 0.0, 0.0])
    assert (s.median, s.ci_low, s.ci_high) == (0.0, 0.0, 0.0)


def test_summarize_is_deterministic_for_a_seed_and_accepts_a_generator():
    x = np.random.default_rng(1).lognormal(0, 0.3, 30)
    assert summarize(x, seed=7) == summarize(x, seed=7)
    assert summarize(x, seed=np.random.default_rng(3)).n == 30


def test_summarize_long_runs_use_bounded_memory_blocks():
    x = np.random.default_rng(2).normal(10, 1, 50_000)
    s = summarize(x, n_boot=200)
    assert s.ci_low < 10.0 < s.ci_high and s.ci_high - s.ci_low < 0.1


def test_median_ci_covers_true_median_at_about_nominal_rate():
    rng = np.random.default_rng(11)
    trials, covered = 300, 0
    for _ in range(trials):
        x = rng.lognormal(0.0, 0.3, 20)  # true median exp(0) = 1
        lo, hi = median_ci(x, n_boot=300, seed=rng)
        covered += lo <= 1.0 <= hi
    assert 0.90 <= covered / trials <= 0.99


def test_order_stat_rank_matches_exact_binomial():
    for n in (6, 7, 10, 20, 57, 200):
        k = order_stat_rank(n, 0.95)
        cov = 1 - 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n
        tighter = 1 - 2 * sum(math.comb(n, i) for i in range(k + 2)) / 2**n
        assert cov >= 0.95 > tighter, n
    assert order_stat_rank(5, 0.95) == 0  # too few: the full range (93.75%)
    assert abs(order_stat_rank(5000, 0.95) - 2430) <= 1  # normal approximation


def test_sign_test_interval_is_inside_the_range_and_full_range_when_too_few():
    x = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert sign_test_interval(x, 0.95) == (1.0, 5.0)
    lo, hi = sign_test_interval(np.arange(20.0), 0.95)
    assert 4.0 <= lo <= 6.0 and 13.0 <= hi <= 15.0


def test_sign_test_interval_is_close_to_exact():
    rng = np.random.default_rng(21)
    for n in (8, 10, 20):
        hits = sum(lo <= 0.0 <= hi for lo, hi in
                   (sign_test_interval(rng.normal(0, 1, n), 0.95) for _ in range(3000)))
        assert 0.935 <= hits / 3000 <= 0.965, n  # interpolated, not conservative


def test_median_ci_is_never_narrower_than_the_sign_test_interval():
    rng = np.random.default_rng(22)
    for n in (6, 9, 15, 40):
        x = rng.lognormal(0, 0.5, n)
        lo, hi = median_ci(x, n_boot=300, seed=1)
        slo, shi = sign_test_interval(x, 0.95)
        assert lo <= slo and hi >= shi


def test_min_rounds_for_levels():
    assert min_rounds_for(0.95) == 6  # 1 - 2**-5 = 96.9%
    assert min_rounds_for(0.99) == 8  # 1 - 2**-7 = 99.2%
    assert min_rounds_for(0.5) == 2


# ---------------------------------------------------------------- compare_samples


def test_truly_different_pair_is_detected_and_swap_is_symmetric():
    rng = np.random.default_rng(0)
    a = 1.2 * rng.lognormal(0, 0.05, 10)  # A costs 20% more: B is ~1.2x faster
    b = rng.lognormal(0, 0.05, 10)
    ab = compare_samples(a, b)
    assert ab.verdict == "faster" and ab.ci_low > 1.0
    assert ab.ci_low <= ab.ratio <= ab.ci_high and 1.1 < ab.ratio < 1.3
    ba = compare_samples(b, a)
    assert ba.verdict == "slower"
    assert ba.ratio == pytest.approx(1 / ab.ratio)
    assert (ba.ci_low, ba.ci_high) == pytest.approx((1 / ab.ci_high, 1 / ab.ci_low))


def test_higher_is_better_inverts_the_ratio():
    a, b = [100.0, 101, 99, 100, 102, 98], [150.0, 151, 149, 152, 148, 150]  # rates
    c = compare_samples(a, b, lower_is_better=False)
    assert c.verdict == "faster" and c.ratio == pytest.approx(1.5, rel=0.02)
    assert "better" in c.describe()


def test_identical_pair_is_not_called_different_over_many_trials():
    rng = np.random.default_rng(123)
    trials = 200
    verdicts = [compare_samples(rng.lognormal(0, 0.1, 10), rng.lognormal(0, 0.1, 10),
                                n_boot=400, seed=rng).verdict for _ in range(trials)]
    rate = sum(v != "same" for v in verdicts) / trials
    assert 0.005 <= rate <= 0.09  # nominal 5%; measured ~3-5% for this design
    assert {"faster", "slower"} & set(verdicts)  # errors go both ways, not a stuck verdict


def test_different_pair_detected_most_of_the_time():
    rng = np.random.default_rng(5)
    hits = sum(compare_samples(1.15 * rng.lognormal(0, 0.1, 12), rng.lognormal(0, 0.1, 12),
                               n_boot=400, seed=rng).verdict == "faster" for _ in range(60))
    assert hits / 60 >= 0.6


def test_pairing_cancels_drift_that_hides_the_effect_unpaired():
    rng = np.random.default_rng(9)
    drift = np.linspace(1.0, 3.0, 12)  # the machine gets 3x slower during the run
    a = drift * 1.05 * rng.lognormal(0, 0.01, 12)
    b = drift * rng.lognormal(0, 0.01, 12)
    assert compare_samples(a, b, paired=True).verdict == "faster"
    assert compare_samples(a, b, paired=False).verdict == "same"


def test_min_effect_requires_the_whole_interval_above_threshold():
    a = np.full(8, 1.03) * np.linspace(0.999, 1.001, 8)
    b = np.linspace(0.999, 1.001, 8)
    assert compare_samples(a, b).verdict == "faster"
    c = compare_samples(a, b, min_effect=0.05)
    assert c.verdict == "same" and c.equivalent and c.decided


def test_verdict_rule():
    assert verdict_of(1.01, 1.2) == "faster"
    assert verdict_of(1.0, 1.2) == "same"  # touching 1 is not enough
    assert verdict_of(0.8, 0.99) == "slower"
    assert verdict_of(1.04, 1.2, min_effect=0.05) == "same"
    assert verdict_of(1.06, 1.2, min_effect=0.05) == "faster"
    assert verdict_of(0.9, 1 / 1.06, min_effect=0.05) == "slower"


def test_constant_samples_give_exact_ratio():
    c = compare_samples([2.0] * 5, [1.0] * 5)
    assert (c.verdict, c.ratio, c.ci_low, c.ci_high) == ("faster", 2.0, 2.0, 2.0)
    same = compare_samples([1.0] * 5, [1.0] * 5)
    assert same.verdict == "same" and not same.decided


@pytest.mark.parametrize("a, b, kw, match", [
    ([1.0] * 4, [1.0] * 4, {}, "at least 5"),
    ([1.0] * 5, [1.0] * 4 + [0.0], {}, "sample 4 .*positive"),
    ([1.0] * 5, [1.0] * 4 + [-1.0], {}, "positive"),
    ([1.0] * 5, [1.0] * 4 + [float("nan")], {}, "sample 4"),
    ([1.0] * 5, [1.0] * 6, {}, "equal lengths"),
    ([1.0] * 5, [1.0] * 5, {"confidence": 1.0}, "confidence"),
    ([1.0] * 5, [1.0] * 5, {"min_effect": -0.1}, "min_effect"),
    ([1.0] * 5, [1.0] * 5, {"n_boot": 10}, "n_boot"),
])
def test_compare_samples_rejects_degenerate_input(a, b, kw, match):
    with pytest.raises(ValueError, match=match):
        compare_samples(a, b, **kw)


def test_unpaired_allows_unequal_lengths():
    c = compare_samples([1.0, 1.1, 0.9, 1.0, 1.05, 0.95], [0.5, 0.55, 0.45, 0.5, 0.52],
                        paired=False)
    assert c.verdict == "faster" and c.n == 5 and not c.paired


def test_comparison_json_round_trip_and_description():
    c = compare_samples([2.0, 2.1, 1.9, 2.0, 2.05], [1.0, 1.05, 0.95, 1.0, 1.02])
    back = Comparison.from_dict(json.loads(json.dumps(c.to_dict())))
    assert back == c
    assert c.describe().startswith("B is 2")
    slower = compare_samples([1.0] * 5, [2.0] * 5)
    assert "2.000x slower" in slower.describe()
    assert "not distinguishable" in compare_samples([1.0] * 5, [1.0] * 5).describe()


# ---------------------------------------------------------------- compare (runs measures)


def test_compare_interleaves_a_b_b_a_including_warmup():
    calls: list[str] = []

    def side(name):
        return lambda: calls.append(name) or 1.0

    c = compare(side("A"), side("B"), repeats=6, warmup=1)
    assert "".join(calls) == "ABBAABBAABBAAB"
    assert c.n == 6 and c.stop_reason == "fixed"


def test_interleaving_cancels_an_order_effect():
    rng = np.random.default_rng(4)
    position = count()

    def measure():  # identical work, but whoever runs second in a round is 20% faster
        second = next(position) % 2 == 1
        return (0.8 if second else 1.0) * float(rng.lognormal(0, 0.02))

    c = compare(measure, measure, repeats=10, warmup=1)
    assert c.verdict == "same" and 0.9 < c.ratio < 1.1


def test_compare_rejects_bad_samples_and_options():
    with pytest.raises(ValueError, match="measure_b"):
        compare(lambda: 1.0, lambda: 0.0, warmup=0)
    with pytest.raises(ValueError, match="measure_a.*NoneType"):
        compare(lambda: None, lambda: 1.0, warmup=0)
    with pytest.raises(ValueError, match="repeats"):
        compare(lambda: 1.0, lambda: 1.0, repeats=1)
    with pytest.raises(ValueError, match="max_repeats"):
        compare(lambda: 1.0, lambda: 1.0, repeats=6, max_repeats=5)
    with pytest.raises(ValueError, match="max_time_s"):
        compare(lambda: 1.0, lambda: 1.0, max_time_s=0)


def test_compare_propagates_measure_exceptions():
    def boom():
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        compare(lambda: 1.0, boom)


def test_look_schedule_doubles_and_starts_where_the_level_is_reachable():
    assert look_schedule(5, None) == ([5], 0.95)
    looks, level = look_schedule(5, 40)
    assert looks == [8, 16, 32, 40] and level == pytest.approx(1 - 0.05 / 4)
    assert look_schedule(10, 80)[0] == [10, 20, 40, 80]
    assert look_schedule(5, 6)[0] == [6]


def test_adaptive_stops_early_on_a_clear_difference():
    rng = np.random.default_rng(1)
    rounds: list[int] = []
    c = compare(noisy(rng, 2.0), noisy(rng, 1.0), repeats=5, max_repeats=40,
                on_round=lambda i, a, b: rounds.append(i))
    assert c.verdict == "faster" and c.stop_reason == "decided"
    assert c.n == 8 and rounds == list(range(8))
    assert c.confidence == pytest.approx(1 - 0.05 / 4)


def test_adaptive_runs_to_the_cap_when_undecided():
    rng = np.random.default_rng(2)
    c = compare(noisy(rng, 1.0), noisy(rng, 1.0), repeats=5, max_repeats=20, n_boot=300)
    assert c.stop_reason in ("max_repeats", "decided")
    if c.stop_reason == "max_repeats":
        assert c.n == 20 and c.verdict == "same"


def test_adaptive_stops_when_equivalence_is_shown():
    rng = np.random.default_rng(3)
    c = compare(noisy(rng, 1.0, 0.01), noisy(rng, 1.0, 0.01), repeats=5, max_repeats=64,
                min_effect=0.1)
    assert c.verdict == "same" and c.stop_reason == "equivalent" and c.n < 64


def test_adaptive_respects_the_time_cap():
    rng = np.random.default_rng(4)
    now = [0.0]

    def measure():
        now[0] += 1.0  # each sample takes 1 s of fake time
        return float(rng.lognormal(0, 0.1))

    c = compare(measure, measure, repeats=5, max_repeats=400, max_time_s=10.0,
                clock=lambda: now[0], n_boot=300)
    assert c.stop_reason in ("max_time", "decided") and c.n == look_schedule(5, 400)[0][0]


def test_adaptive_false_positive_rate_stays_near_nominal():
    rng = np.random.default_rng(77)
    trials, wrong = 100, 0
    for _ in range(trials):
        c = compare(noisy(rng, 1.0), noisy(rng, 1.0), repeats=5, max_repeats=32,
                    warmup=0, n_boot=300, seed=rng)
        wrong += c.verdict != "same"
    assert wrong / trials <= 0.10


def test_minimum_rounds_constant_matches_the_documented_rule():
    assert MIN_ROUNDS == 5
