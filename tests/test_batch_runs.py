"""The time-to-target run's evaluation schedule and crossing interpolation."""

from __future__ import annotations

import math

import pytest

from perfpilot.tune.stages.batch.runs import crossing, next_eval


def test_no_trend_doubles() -> None:
    assert next_eval([], 32, 0.9, "max", 0.04) == 64
    assert next_eval([[32, 0.1, 0.5]], 32, 0.9, "max", 0.04) == 64


def test_goes_to_the_extrapolated_crossing_within_bounds() -> None:
    # accuracy +0.1 per doubling; from 0.6 at 800 samples, 0.9 needs three doublings: capped
    curve = [[400, 1.0, 0.5], [800, 2.0, 0.6]]
    assert next_eval(curve, 800, 0.9, "max", 0.04) == 1600
    # 0.65 needs half a doubling: s* = 800 * 2**0.5, approached by the geometric midpoint
    assert next_eval(curve, 800, 0.65, "max", 0.04) == pytest.approx(800 * 2**0.25)
    # 0.605: s* = 800 * 2**0.05, 8% short of it is below the 4% minimum step
    assert next_eval(curve, 800, 0.605, "max", 0.04) == pytest.approx(832)
    # nearly there: at least 4% further
    assert next_eval(curve, 800, 0.6001, "max", 0.04) == pytest.approx(832)


def test_trend_spans_a_doubling_so_noise_does_not_stall_it() -> None:
    # a noisy dip at 2144 does not read as "no progress": the trend is from 1024
    curve = [[1024, 1.0, 0.716], [2048, 2.0, 0.93], [2144, 2.1, 0.925]]
    nxt = next_eval(curve, 2144, 0.97, "max", 0.04)
    assert 2144 * 1.04 <= nxt < 2600


def test_minimising_metric_and_no_progress() -> None:
    curve = [[100, 1.0, 3.0], [200, 2.0, 2.5]]
    assert next_eval(curve, 200, 2.25, "min", 0.04) == pytest.approx(200 * 2**0.25)
    worse = [[100, 1.0, 2.5], [200, 2.0, 3.0]]
    assert next_eval(worse, 200, 2.0, "min", 0.04) == 400
    flat = [[100, 1.0, 0.5], [200, 2.0, 0.5 + 1e-300]]  # exp() of the gap would overflow
    assert next_eval(flat, 200, 0.97, "max", 0.04) == 400


def test_crossing_is_interpolated_in_log_samples() -> None:
    curve = [[100, 1.0, 0.80], [200, 2.0, 0.90], [400, 3.0, 1.0]]
    s, t = crossing(curve, 0.95, "max")
    assert s == pytest.approx(200 * math.sqrt(2)) and t == pytest.approx(2 + (s - 200) / 200)
    assert crossing([[64, 0.5, 0.99]], 0.9, "max") == (64, 0.5)
    loss = [[100, 1.0, 2.4], [200, 2.0, 1.9]]
    assert crossing(loss, 2.0, "min")[0] == pytest.approx(100 * 2 ** 0.8)


def test_eval_floor_keeps_an_evaluation_within_the_training_since_the_last() -> None:
    from perfpilot.tune.stages.batch.runs import eval_floor

    # 1000 samples in 2 s of training (500/s); 3 evaluations took 3 s (1 s each)
    assert eval_floor(1000, 2.0, 3.0, 3) == pytest.approx(1500)
    assert eval_floor(1000, 2.0, 0.0, 3) == pytest.approx(1000)  # free evaluations
    assert eval_floor(0, 0.0, 0.0, 0) == 0.0  # nothing measured yet


def test_a_real_run_evaluates_first_after_first_eval_samples() -> None:
    from pathlib import Path

    from perfpilot.tune.stages.batch.runs import BatchRuns, RunConfig
    from perfpilot.workload import load_workload

    w = load_workload(f"{Path(__file__).parent / 'fixtures' / 'tune_tiny.py'}:workload")
    runs = BatchRuns(w, w.baseline)
    out = runs.time_to_target(RunConfig(16, 0.05, 0), seed=0, max_samples=4000,
                              eval_fraction=0.04, noise=None, first_eval=320)
    curve = out.measurements["curve"]
    assert curve[0][0] >= 320
    assert all(b[0] > a[0] for a, b in zip(curve, curve[1:], strict=False))
