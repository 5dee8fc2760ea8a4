"""Goodput from measured throughput and the noise-scale model."""

from __future__ import annotations

import math

import pytest

from perfpilot.tune.stages.batch.goodput import (
    NoisePoint,
    ThroughputPoint,
    efficiency,
    goodput_curve,
    knee,
    samples_ratio,
    top_candidates,
)


def test_efficiency_relative_to_baseline() -> None:
    assert efficiency(32, 100, 32) == 1.0
    assert efficiency(132, 100, 32) == pytest.approx(132 / 232)
    assert efficiency(8, 100, 32) > 1.0
    assert efficiency(10**6, math.inf, 32) == 1.0  # noise dominated: perfect scaling


def test_samples_ratio_averages_over_the_run() -> None:
    constant = [NoisePoint(0, 100.0), NoisePoint(1000, 100.0)]
    assert samples_ratio(200, 100, constant, end_samples=5000) == pytest.approx(300 / 200)
    # B_noise growing linearly from 0 to 200 over the run: the trapezoid of
    # (B_noise + B) / (B_noise + B0) with B = B0 is 1 everywhere.
    growing = [NoisePoint(0, 0.0), NoisePoint(1000, 200.0)]
    assert samples_ratio(50, 50, growing) == pytest.approx(1.0)
    # Constant after the last point: the tail weighs with its length.
    tail = [NoisePoint(0, 0.0), NoisePoint(100, 100.0)]
    r = samples_ratio(200, 100, tail, end_samples=10_100)
    assert r == pytest.approx((100 * (2.0 + 1.5) / 2 + 10_000 * 1.5) / 10_100)


def _points(rates: dict[int, float]) -> list[ThroughputPoint]:
    return [ThroughputPoint(b, r, 0.9 * r, 1.1 * r, 5) for b, r in rates.items()]


def test_knee_is_where_throughput_stops_growing() -> None:
    pts = _points({8: 100, 16: 190, 32: 350, 64: 480, 128: 500, 256: 505})
    assert knee(pts) == 64  # 480 >= 0.9 * 505


def test_goodput_curve_and_predicted_time() -> None:
    pts = _points({16: 500, 32: 1000, 64: 1800, 128: 2000})
    profile = [NoisePoint(0, 64.0)]
    curve = goodput_curve(pts, 32, profile, end_samples=10_000, base_ttt_s=10.0)
    by = {p.batch_size: p for p in curve}
    assert by[32].efficiency == 1.0 and by[32].predicted_ttt_s == pytest.approx(10.0)
    eff64 = (64 + 32) / (64 + 64)
    assert by[64].goodput == pytest.approx(1800 * eff64)
    assert by[64].predicted_ttt_s == pytest.approx(10.0 * 1000 / (1800 * eff64))
    assert by[64].goodput_low == pytest.approx(0.9 * 1800 * eff64)
    assert top_candidates(curve, 32, 2) == [64, 128]
    with pytest.raises(ValueError, match="baseline batch"):
        goodput_curve(pts, 48, profile)
