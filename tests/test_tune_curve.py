"""Learning curves (tune/curve.py) and proxy targets (tune/proxy.py): fits recover known
curves, intervals cover the truth, a levelled-off run is said to level off, and the proxy
level is one the run holds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perfpilot.tune.curve import MIN_POINTS, extrapolate, fit_curve, level_at
from perfpilot.tune.proxy import (
    ProxyTarget,
    decision_level,
    describe,
    proxy_from_baseline,
    record_of,
    samples_curve,
    why_none,
)


def _loss(s: float, a: float = 1.2, b: float = 40.0, c: float = 0.5) -> float:
    return a + b * s ** (-c)


def test_fit_recovers_a_noise_free_power_law() -> None:
    pts = [[s, _loss(s)] for s in np.geomspace(1e3, 1e5, 12)]
    curve = fit_curve(pts, "min")
    assert curve is not None
    assert curve.a == pytest.approx(1.2, abs=0.02)
    assert curve.c == pytest.approx(0.5, rel=0.1)
    assert curve.at(4e5) == pytest.approx(_loss(4e5), rel=0.01)
    assert curve.samples_to(_loss(4e5)) == pytest.approx(4e5, rel=0.1)


def test_maximize_curves_approach_from_below() -> None:
    pts = [[s, 1.0 - 5 * s ** -0.4] for s in np.geomspace(1e3, 1e5, 10)]
    curve = fit_curve(pts, "max")
    assert curve is not None and curve.a == pytest.approx(1.0, abs=0.02)
    assert curve.samples_to(0.99) > 1e5  # beyond the measured points, but finite
    assert math.isinf(curve.samples_to(1.01))  # past its asymptote: never


def test_interval_covers_the_truth_under_noise() -> None:
    rng = np.random.default_rng(3)
    truth = 3e5
    covered = 0
    for trial in range(10):
        pts = [[s, _loss(s) + rng.normal(0, 0.005)] for s in np.geomspace(2e3, 1e5, 15)]
        ext = extrapolate(pts, _loss(truth), "min", samples_per_s=1000.0, seed=trial)
        assert ext is not None
        assert ext.samples_low <= ext.samples <= ext.samples_high
        assert ext.seconds == pytest.approx(ext.samples / 1000.0)
        covered += ext.samples_low <= truth <= ext.samples_high
        assert ext.reach == pytest.approx(ext.samples / ext.measured_to)
    assert covered >= 8  # a 95% interval: at most a rare miss


def test_a_flat_run_levels_off_and_never_reaches_a_level_past_it() -> None:
    pts = [[s * 1000, 0.9916] for s in range(1, 20)]
    curve = fit_curve(pts, "max")
    assert curve is not None and curve.b == 0 and curve.a == pytest.approx(0.9916)
    ext = extrapolate(pts, 0.995, "max", samples_per_s=100.0)
    assert ext is not None and math.isinf(ext.seconds) and ext.reachable == 0
    d = ext.to_dict()
    assert d["seconds"] is None and d["samples_high"] is None  # JSON has no inf
    assert "asymptote" in ext.describe()


def test_too_few_points_fit_nothing() -> None:
    assert fit_curve([[1000, 2.0], [2000, 1.8]], "min") is None
    assert MIN_POINTS > 2


def test_level_at_ignores_one_lucky_evaluation() -> None:
    pts = [[1, 0.5], [2, 0.6], [3, 0.95], [4, 0.62], [5, 0.64]]
    assert level_at(pts, 5, "max") == pytest.approx(0.64)  # not the lucky 0.95
    assert level_at(pts, 4, "max") == pytest.approx(0.62)
    assert level_at(pts, 0.5, "max") is None
    assert level_at([[1, 2.0], [2, 1.5], [3, 1.4]], 3, "min") == pytest.approx(1.5)


def _run(values: list[float], step_s: float = 1.0) -> dict:
    return {"record": {"metric": {"history": [[10 * (i + 1), step_s * (i + 1), v]
                                              for i, v in enumerate(values)]}}}


def test_proxy_from_a_baseline_that_missed_its_target() -> None:
    vals = [_loss(320 * (i + 1)) for i in range(30)]  # 10 steps x 32 samples per second
    p = proxy_from_baseline(_run(vals), metric="val_loss", direction="min", target=1.5,
                            samples_per_step=32)
    assert p is not None
    assert p.level == pytest.approx(vals[-2], rel=1e-6)  # the last 3-point median it holds
    assert p.level_at_s == pytest.approx(29.0)
    assert p.samples_per_s == pytest.approx(320.0)
    assert p.curve[0] == [320.0, 1.0, vals[0]]
    ext = p.extrapolation
    assert ext is not None and ext["seconds"] > p.trained_s  # beyond what was measured
    true_s = (40.0 / (1.5 - 1.2)) ** 2 / 320.0  # the exact curve's time to 1.5
    assert ext["seconds"] == pytest.approx(true_s, rel=0.1)  # the grid of exponents: ~3% steps
    assert p.horizon_s() == ext["seconds"]
    words = describe(p)
    assert words[0].startswith("measured: the baseline trained 30 s")
    assert words[1].startswith("extrapolated:") and "95% CI" in words[1]
    assert ProxyTarget.from_dict(p.to_dict()) == p


def test_no_proxy_without_improvement_or_evaluations() -> None:
    flat = _run([2.0, 2.0, 2.0, 2.0, 2.0])
    assert proxy_from_baseline(flat, metric="m", direction="min", target=1.0,
                               samples_per_step=8) is None
    assert proxy_from_baseline(_run([2.0, 1.0]), metric="m", direction="min", target=0.5,
                               samples_per_step=8) is None
    assert proxy_from_baseline({}, metric="m", direction="min", target=0.5,
                               samples_per_step=8) is None


def test_a_run_that_levelled_off_is_described_as_such() -> None:
    vals = [0.95] + [0.9916] * 20
    p = proxy_from_baseline(_run(vals), metric="val_accuracy", direction="max", target=0.995,
                            samples_per_step=32)
    assert p is not None and p.level == pytest.approx(0.9916)
    assert p.horizon_s() is None
    assert "levels off short of val_accuracy >= 0.995" in describe(p)[1]


def test_decision_level_is_set_in_samples_at_the_stages_speed() -> None:
    vals = [_loss(320 * (i + 1)) for i in range(30)]  # 320 samples per second
    p = proxy_from_baseline(_run(vals), metric="val_loss", direction="min", target=1.5,
                            samples_per_step=32)
    assert p is not None
    level, t, samples = decision_level(p, stage_budget_s=100.0, samples_per_s=320.0)
    assert samples == pytest.approx(1920) and t == pytest.approx(6.0)  # 6% of 100 s
    assert level > p.level  # earlier: a higher loss than the proxy level
    # a faster incumbent (say, after the hardware stage) runs further in the same seconds,
    # capped at half the baseline's samples to the proxy level
    level, t, samples = decision_level(p, stage_budget_s=100.0, samples_per_s=3200.0)
    assert samples == pytest.approx(0.5 * 320 * 29) and t == pytest.approx(samples / 3200)
    # never before the baseline's third evaluation: earlier is start-up, not learning
    level, t, samples = decision_level(p, stage_budget_s=1.0, samples_per_s=320.0)
    assert samples == pytest.approx(960) and level == pytest.approx(vals[1], rel=1e-6)
    # a short baseline curve (its proxy level soon after the floor): the floor wins over
    # the half-way cap, so the level is not the first evaluation's (start-up)
    short = proxy_from_baseline(_run(vals[:6]), metric="val_loss", direction="min",
                                target=1.5, samples_per_step=32)
    assert short is not None
    level, t, samples = decision_level(short, stage_budget_s=100.0, samples_per_s=320.0)
    assert samples == pytest.approx(960) and level == pytest.approx(vals[1], rel=1e-6)


def test_decision_level_is_past_a_baseline_that_sits_at_chance() -> None:
    # accuracy at chance (0.10) for 8 evaluations, then learning up to 0.90: a tiny budget
    # would put the level at the 3rd evaluation (chance: a race of start-ups); the level
    # is at least a quarter of the way from the first value to the proxy level
    vals = [0.10] * 8 + [0.10 + 0.08 * k for k in range(1, 11)] + [0.90] * 4
    p = proxy_from_baseline(_run(vals), metric="val_accuracy", direction="max", target=0.99,
                            samples_per_step=32)
    assert p is not None and p.level == pytest.approx(0.90)
    level, t, samples = decision_level(p, stage_budget_s=1.0, samples_per_s=320.0)
    assert level >= 0.10 + 0.25 * (0.90 - 0.10)
    assert samples == pytest.approx(320 * 12) and level == pytest.approx(vals[10])


def test_samples_curve_scales_steps_by_samples_per_step() -> None:
    assert samples_curve([[5, 1.0, 0.3]], 64) == [[320.0, 1.0, 0.3]]


def test_a_target_too_far_beyond_the_run_is_not_estimated() -> None:
    vals = [_loss(320 * (i + 1)) for i in range(30)]
    p = proxy_from_baseline(_run(vals), metric="val_loss", direction="min", target=1.25,
                            samples_per_step=32)
    assert p is not None and p.extrapolation is not None
    assert p.extrapolation["reach"] > 10
    assert p.horizon_s() is None  # no horizon from a 10x+ extrapolation
    assert "too far to estimate" in describe(p)[1]


def test_why_no_proxy_names_the_reason() -> None:
    assert "2 evaluation(s) are too few" in why_none(_run([2.0, 1.0]))
    assert "none of its 5 evaluations" in why_none(_run([2.0] * 5))


def test_the_record_form_carries_words_and_the_fitted_curve() -> None:
    vals = [_loss(320 * (i + 1)) for i in range(30)]
    p = proxy_from_baseline(_run(vals), metric="val_loss", direction="min", target=1.5,
                            samples_per_step=32)
    assert p is not None
    d = record_of(p)
    assert d["words"] == describe(p)
    xs = [r[0] for r in d["fitted"]]
    assert xs == sorted(xs) and xs[-1] >= p.horizon_s()  # drawn past the estimate
    assert ProxyTarget.from_dict(d) == p  # the extra keys are ignored on reading


def test_a_short_curve_whose_refits_sometimes_reach_is_not_called_never() -> None:
    ext = {"seconds": None, "seconds_low": 1420.0, "reachable": 0.03, "reach": None,
           "curve": {"a": 1.733, "n": 9}}
    p = ProxyTarget("val_loss", "min", 1.5, 2.228, 30.0, 29.0, 270.0, [], ext)
    words = describe(p)[1]
    assert "3% of its bootstrap refits reach it, the earliest after about 1420 s" in words
    assert "may never" not in words
    never = ProxyTarget("val_loss", "min", 1.5, 2.228, 30.0, 29.0, 270.0, [],
                        {**ext, "reachable": 0.0, "seconds_low": None})
    assert "none of its bootstrap refits reach it" in describe(never)[1]
