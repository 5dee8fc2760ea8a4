"""The pure parts of ``benchmarks/long_runs.py``: the paired ratio with its bootstrap
interval and censored runs, the extrapolation error, the grid points and the page
section rendered from a synthetic results file. ``--smoke`` runs the whole path (tune on
the proxy target, runs to the target) on digits in under a minute."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
ROOT = BENCH.parent


@pytest.fixture(scope="module")
def LR():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_long_runs", BENCH / "long_runs.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _run(seed: int, ttt: float | None, samples: float | None = None) -> dict:
    return {"seed": seed, "reached": ttt is not None, "ttt_s": ttt,
            "samples": samples if samples is not None else (ttt or 0) * 100,
            "load": [1.0, 1.0, 1.0]}


def test_paired_ratio_of_medians_with_interval(LR):
    base = [_run(100, 10.0), _run(101, 12.0), _run(102, 11.0)]
    dec = [_run(100, 8.0), _run(101, 9.0), _run(102, 10.0)]
    r = LR.paired_ratio(dec, base)
    assert r["pairs"] == 3 and r["ratio"] == pytest.approx(9.0 / 11.0)
    assert r["ci_low"] <= r["ratio"] <= r["ci_high"]
    assert r["per_seed"] == pytest.approx([0.8, 0.75, 10 / 11])


def test_paired_ratio_is_censored_when_a_run_missed(LR):
    r = LR.paired_ratio([_run(100, None), _run(101, 9.0)], [_run(100, 10.0), _run(101, 9.0)])
    assert r["ratio"] is None and r["censored"][0] == {"seed": 100, "num_reached": False,
                                                       "den_reached": True}
    assert "did not reach" in LR.ratio_str(r)
    assert LR.median_ttt([_run(1, 3.0), _run(2, None)]) is None


def test_a_run_that_missed_ranks_slowest_and_the_median_still_counts(LR):
    # one decision run of three missed its cap: it ranks last, so the median (the middle
    # of the two that reached and the one above them) is still identified
    base = [_run(100, 10.0), _run(101, 12.0), _run(102, 11.0)]
    dec = [_run(100, 5.0), _run(101, None), _run(102, 6.0)]
    assert LR.median_ttt(dec) == 6.0
    r = LR.paired_ratio(dec, base)
    assert r["ratio"] == pytest.approx(6.0 / 11.0)
    assert r["per_seed"] == [pytest.approx(0.5), None, pytest.approx(6 / 11)]
    assert r["censored"] == [{"seed": 101, "num_reached": False, "den_reached": True}]
    # a resample with the missed run twice has an unknown median: the upper end is open
    assert r["ci_high"] is None and r["ci_high_unbounded"]
    words = LR.ratio_str(r)
    assert ", inf]" in words and "1 with a run that did not reach" in words
    # the baseline's median missed its cap (2 of 3): the ratio is bounded by the cap
    capped = [_run(100, 20.0), {**_run(101, None), "trained_s": 30.0},
              {**_run(102, None), "trained_s": 31.0}]
    r = LR.paired_ratio(dec, capped)
    assert r["ratio"] is None and r["ratio_at_most"] == pytest.approx(6.0 / 30.0)
    assert LR.ratio_str(r).startswith("at most 0.200x over 3 seeds")
    r = LR.paired_ratio(capped, dec)
    assert r["ratio_at_least"] == pytest.approx(30.0 / 6.0)
    # an even count: the bound is the median with the caps in place ((20 + 30) / 2), not
    # the smallest cap (30), which would overstate how slow the baseline was
    even = LR.paired_ratio([*dec, _run(103, 7.0)],
                           [_run(100, 20.0), _run(101, 10.0), {**_run(102, None),
                            "trained_s": 30.0}, {**_run(103, None), "trained_s": 31.0}])
    assert even["ratio"] is None and even["ratio_at_most"] == pytest.approx(6.5 / 25.0)
    # the baseline missing instead: the decision is faster by at least that much
    r = LR.paired_ratio(base, [_run(100, 20.0), _run(101, None), _run(102, 22.0)])
    assert r["ratio"] == pytest.approx(11.0 / 22.0) and r["ci_low"] <= r["ratio"]


def test_extrapolation_error_in_seconds_and_samples(LR):
    ext = {"seconds": 120.0, "seconds_low": 90.0, "seconds_high": None, "samples": 12000.0,
           "samples_low": 11000.0, "samples_high": 13000.0, "reach": 5.0, "reachable": 0.9}
    e = LR.extrapolation_error({"extrapolation": ext},
                               [_run(100, 100.0, 10000.0), _run(101, 110.0, 10400.0)])
    assert e["seconds"]["ratio"] == pytest.approx(120 / 105)
    assert e["seconds"]["inside"] is True  # no upper bound: infinite
    assert e["samples"]["inside"] is False and e["samples"]["measured"] == 10200.0
    assert "outside" in LR.extrapolation_str(e)
    assert LR.extrapolation_error({"extrapolation": None}, [])["extrapolated"] is None


def test_grid_points_from_candidates_then_the_lr_rule(LR):
    arms = {"baseline": {"batch_size": 32, "lr": 0.001},
            "decision": {"batch_size": 64, "lr": 0.00141421}}
    tuned = {"candidates": [
        {"batch_size": 32, "lr": 0.001, "warmup_steps": 0},
        {"batch_size": 128, "lr": 0.002, "warmup_steps": 1}],
        "lr_policy": {"rule": "sqrt", "base_lr": 0.001, "base_batch": 32,
                      "base_warmup_steps": 0, "warmup_samples": 2, "family": "adaptive",
                      "source": "auto"}}
    g = LR.grid_points(tuned, arms, 2)
    assert g[0] == {"batch_size": 128, "lr": 0.002, "warmup_steps": 1}
    assert g[1]["batch_size"] == 16 and g[1]["lr"] == pytest.approx(0.000707107, rel=1e-4)


def test_section_renders_the_figures(LR):
    from _context import Context

    doc = {"workload": "charlm", "target": 1.7, "metric": "val_loss", "budget_s": 30.0,
           "loadavg_before": 2.0, "loadavg_after": 3.0, "cap_s": 300.0, "runtime_s": 1500,
           "precheck": {"ttt_s": 130.0, "x_budget": 4.33, "load": [2.0, 1.5, 1.0]},
           "tune": {"wall_s": 30.5, "load": [2.1], "plan": {"batch_size": 64, "lr": 0.0014,
                                                           "warmup_steps": 3},
                    "proxy": {"level": 2.6, "extrapolation": {
                        "seconds": 140.0, "seconds_low": 100.0, "seconds_high": 200.0,
                        "reach": 8.0}},
                    "batch_proxy": {"decision_level": 2.9}, "batch_summary": "batch 64"},
           "arms": {"baseline": {"batch_size": 32, "lr": 0.001, "median_ttt_s": 130.0,
                                 "runs": [_run(100, 130.0)]},
                    "decision": {"batch_size": 64, "lr": 0.0014, "median_ttt_s": 110.0,
                                 "runs": [_run(100, 110.0)]}},
           "decision_vs_baseline": {"ratio": 0.846, "ci_low": 0.8, "ci_high": 0.9,
                                    "pairs": 3},
           "oracle": {"best": "grid1", "seeds": [100], "decision_over_best": 0.5,
                      "paired": {"ratio": 0.5, "ci_low": None, "ci_high": None,
                                 "pairs": 1}},
           "extrapolation": {"seconds": {"extrapolated": 140.0, "low": 100.0, "high": 200.0,
                                         "measured": 130.0, "ratio": 1.077, "inside": True},
                             "samples": {"ratio": 1.0, "inside": True}, "reach": 8.0}}
    md = "\n".join(LR.section(Context({"long_runs": {"results": [doc]}}, None)))
    assert "## Long runs" in md and "4.33x the budget" in md
    assert "### charlm to val_loss 1.7" in md and "as is (`cpu_threads` unset" in md
    assert "| decision | 64 |" in md and "0.846x [0.800, 0.900] over 3 seeds" in md
    assert "extrapolated 140 s" in md and "inside its interval" in md
    assert "decision / best arm (grid1, on seed 100, the seeds every arm ran): 0.500x over " \
        "1 seed." in md


def test_results_keep_other_cases(LR, tmp_path):
    out = tmp_path / "long_runs.json"
    one = {"workload": "digits", "pin_threads": False, "loadavg_before": 2.0,
           "loadavg_after": 5.0, "cpus": 2, "measured_at": "t1"}
    out.write_text(json.dumps(LR.merged(out, one)))
    two = {**one, "workload": "charlm", "pin_threads": True, "loadavg_before": 3.0,
           "loadavg_after": 4.0, "measured_at": "t2"}
    out.write_text(json.dumps(LR.merged(out, two)))
    again = LR.merged(out, {**one, "loadavg_after": 6.0})
    assert [r["workload"] for r in again["results"]] == ["charlm", "digits"]
    assert (again["loadavg_before"], again["loadavg_after"]) == (2.0, 6.0)


@pytest.mark.skipif(os.environ.get("PERFPILOT_BENCH_SMOKE") != "1",
                    reason="trains for ~45 s; set PERFPILOT_BENCH_SMOKE=1")
def test_smoke_runs_the_whole_path(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, str(BENCH / "long_runs.py"), "--smoke"],
                       capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "proxy level" in r.stdout and "decision / baseline" in r.stdout


def test_target_after_is_a_level_the_baselines_run_holds_late(LR):
    from perfpilot.workload import load_workload

    w = load_workload(f"{ROOT / 'tests' / 'fixtures' / 'tune_tiny.py'}:slow_learner")
    target, pre = LR.target_after(w, 100, 2.0)
    # at least one evaluation: how many fit in 2 s depends on the machine's load
    assert pre["reached"] and pre["evaluations"] >= 1
    assert 0 < pre["ttt_s"] <= pre["trained_s"]
    # rounded on the reachable side (a loss: up) and first held at the precheck's time
    assert target == round(target, 4) and pre["last_value"] <= target + 0.05
    assert pre["samples"] > 0 and pre["target_after_s"] == 2.0


def test_more_seeds_adds_alternating_rounds_and_recomputes(LR, tmp_path, monkeypatch):
    import argparse

    from perfpilot.plan import Plan

    base, dec = Plan(batch_size=32, lr=1e-3), Plan(batch_size=8, lr=1e-3)
    case = {"workload": "digits", "pin_threads": True, "target": 0.99, "seeds": [100],
            "cap_s": 50.0, "same_runs": {}, "loadavg_before": 1.0, "loadavg_after": 1.0,
            "cpus": 2, "measured_at": "x",
            "tune": {"baseline_plan": base.to_dict(), "plan": dec.to_dict(), "proxy": None},
            "arms": {"baseline": {"runs": [_run(100, 10.0)]},
                     "decision": {"runs": [_run(100, 8.0)]}}}
    out = tmp_path / "long_runs.json"
    out.write_text(json.dumps({"results": [case]}))
    order = []

    def fake(w, plan, seed, cap_s):
        order.append((plan.batch_size, seed))
        return _run(seed, 8.0 if plan.batch_size == 8 else 10.0)

    monkeypatch.setattr(LR, "run_to_target", fake)
    o = argparse.Namespace(workload="digits", pin_threads=True, target=0.99, more_seeds=2,
                           baseline_lr=None, out=out)
    d = LR.more_seeds(o)
    assert d["seeds"] == [100, 101, 102]
    assert order == [(8, 101), (32, 101), (32, 102), (8, 102)]  # order alternates on
    r = d["decision_vs_baseline"]
    assert r["pairs"] == 3 and r["ratio"] == pytest.approx(0.8)
    assert d["arms"]["decision"]["median_ttt_s"] == 8.0
    with pytest.raises(SystemExit, match="no case"):
        LR.more_seeds(argparse.Namespace(**{**vars(o), "target": 0.5}))


def test_the_oracle_compares_on_the_seeds_every_arm_ran(LR):  # LR: benchmarks on sys.path
    from _long_stats import oracle

    # The stored digits case: grid2 ran seed 100 only; on it the decision was fastest.
    runs = {"decision": [_run(100, 192.0), _run(101, None), _run(102, 510.0)],
            "grid1": [_run(100, None)], "grid2": [_run(100, 479.0)]}
    o = oracle(runs)
    assert o["seeds"] == [100] and o["best"] == "decision"
    assert o["decision_over_best"] == 1.0 and o["paired"]["pairs"] == 1
    runs["grid2"] = [_run(100, 96.0)]  # an arm faster on the common seed is the best
    o = oracle(runs)
    assert o["best"] == "grid2" and o["decision_over_best"] == pytest.approx(2.0)
    assert oracle({"decision": [_run(100, 1.0)], "grid1": [_run(101, 1.0)]})["best"] is None
    assert oracle({"decision": [_run(100, None)], "grid1": [_run(100, None)]})["best"] is None
