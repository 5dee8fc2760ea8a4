"""Rules on synthetic records: each fires on its evidence, stays silent without it, and
computes its gain with Amdahl from the measured share."""

from __future__ import annotations

from typing import Any

import pytest

from perfpilot.diagnose import _dedupe, diagnose, facts_of, rank
from perfpilot.diagnose.batch import small_batch
from perfpilot.diagnose.loader import dataloader_bound, suggested_workers
from perfpilot.diagnose.loop import eval_dominates, grad_in_eval, io_in_loop
from perfpilot.diagnose.python import drop_covered, python_hotspot, steady_view
from perfpilot.diagnose.threads import thread_oversubscription
from perfpilot.record import Finding, RunRecord, StatSummary, amdahl

SCRIPT = "/home/me/train.py"


def record(per_step: dict[str, float] | None = None, steps: int = 50, window: float | None = None,
           eval_s: float = 0.0, **sections: Any) -> RunRecord:
    """A profiled-script record with ``steps`` identical steps of ``per_step`` phases."""
    per = {"data": 0.0, "h2d": 0.0, "forward": 0.01, "backward": 0.01, "optimizer": 0.001,
           "other": 0.0, "io": 0.0, "eval": 0.0, **(per_step or {})}
    step_s = sum(v for k, v in per.items() if k != "eval")
    d: dict[str, Any] = {
        "profile": {"mode": "script", "steady_steps": steps},
        "step_phases": {"kind": "optimizer", "steps": steps, "per_step_s": per,
                        "total_s": {k: v * steps for k, v in per.items()},
                        "samples_per_step": 32},
        "timeline": {"steady_s": window or step_s * steps + eval_s, "train_s": step_s * steps,
                     "eval_s": eval_s},
        "optimizers": [{"type": "SGD", "steps": steps}],
        "loaders": [{"role": "train", "batches": steps, "fetch_s": per["data"] * steps,
                     "num_workers": 0, "batch_size": 32, "site": [SCRIPT, 20, "main"],
                     "dataset_len": 1600}],
        "threads": {"usable_cores": 4, "torch_threads": 4},
        "hot_lines": [], "calibration": {},
    }
    d.update(sections)
    core = RunRecord(workload="train.py", plan={}, steps=steps, samples_per_s=1.0,
                     step_time_s=StatSummary(step_s, step_s, step_s, step_s, steps),
                     phases_s={}, peak_memory_bytes=0)
    return RunRecord.from_dict({**core.to_dict(), **d})


def changed(rec: RunRecord, **sections: Any) -> RunRecord:
    """``rec`` with sections replaced (a list) or updated (a dict merged into the old)."""
    d = rec.to_dict()
    for name, value in sections.items():
        d[name] = {**d[name], **value} if isinstance(value, dict) else value
    return RunRecord.from_dict(d)


def only(findings: list[Finding], fid: str) -> Finding:
    (f,) = findings
    assert f.id == fid
    return f


def test_dataloader_bound_suggests_workers_with_amdahl_gain():
    f = only(dataloader_bound(facts_of(record({"data": 0.06}))), "dataloader-bound")
    share = 0.06 / 0.081
    assert f.time_share == pytest.approx(share)
    assert f.estimated_speedup == pytest.approx(amdahl(share, 4), rel=1e-3)
    assert f.plan_change == {"num_workers": 4, "persistent_workers": True}
    assert "num_workers=4" in f.fix and f.location == {"file": SCRIPT, "line": 20,
                                                        "function": "main"}
    assert "74%" in f.evidence


def test_dataloader_bound_silent_when_data_is_cheap():
    assert dataloader_bound(facts_of(record({"data": 0.001}))) == []


def test_workers_suggestion():
    assert suggested_workers(0, 2) == 2
    assert suggested_workers(0, 1) == 2
    assert suggested_workers(0, 64) == 4
    assert suggested_workers(1, 2) == 2
    assert suggested_workers(2, 16) == 4
    assert suggested_workers(3, 4) == 4
    # A worker per usable core already (or the cap): no more workers to suggest.
    assert suggested_workers(2, 2) is None
    assert suggested_workers(4, 2) is None
    assert suggested_workers(8, 64) is None


def test_data_bound_with_a_worker_per_core_advises_cheaper_loading_not_more_workers():
    # A third-party script with 4 workers on 2 cores was advised num_workers=5.
    rec = record({"data": 0.04})
    rec = changed(rec, loaders=[{**rec.loaders[0].to_dict(), "num_workers": 4,
                                 "persistent_workers": True}],
                  threads={"usable_cores": 2})
    f = only(dataloader_bound(facts_of(rec)), "dataloader-bound")
    assert f.plan_change is None and "num_workers=5" not in f.fix
    assert "4 workers on 2 usable cores" in f.fix and f.confidence == "low"
    assert "ceiling" in f.evidence


def test_persistent_workers_when_worker_startup_dominates():
    rec = record({"data": 0.04})
    rec = changed(rec, loaders=[{**rec.loaders[0].to_dict(), "num_workers": 2,
                                 "persistent_workers": False, "iter_s": 1.5}])
    f = only(dataloader_bound(facts_of(rec)), "dataloader-bound")
    assert f.plan_change == {"persistent_workers": True}


def test_small_batch_counts_fixed_costs_only():
    rec = record({"forward": 0.002, "backward": 0.002, "optimizer": 0.002},
                 hot_ops={"aten_ops_per_step": 100}, calibration={"op_overhead_s": 1e-5})
    rec = changed(rec, step_phases={"samples_per_step": 4})
    f = only(small_batch(facts_of(rec)), "small-batch")
    fixed = (0.002 + min(100 * 1e-5, 0.004)) / 0.006
    assert f.measured_value("fixed_fraction") == pytest.approx(fixed)
    assert f.factor == 8 and f.time_share == pytest.approx(fixed)
    assert f.estimated_speedup == pytest.approx(amdahl(fixed, 8), rel=1e-3)
    assert f.plan_change == {"batch_size": 32}


def test_small_batch_silent_for_large_batches_and_inference():
    rec = record({"optimizer": 0.02})
    rec = changed(rec, step_phases={"samples_per_step": 2048})
    assert small_batch(facts_of(rec)) == []
    rec = record({"optimizer": 0.02})
    rec = changed(rec, optimizers=[])
    assert small_batch(facts_of(rec)) == []


def hot(line: int, function: str, self_share: float, own_python: float,
        tags: dict | None = None) -> dict:
    return {"file": SCRIPT, "line": line, "function": function, "self_share": self_share,
            "total_share": self_share, "python_share": own_python,
            "own_python_share": own_python, "tags": tags or {"other": self_share}}


def test_python_hotspot_groups_lines_by_function():
    rec = record(hot_lines=[hot(10, "stats", 0.30, 0.29), hot(11, "stats", 0.20, 0.19),
                            hot(30, "main", 0.40, 0.01)])
    f = only(python_hotspot(facts_of(rec)), "python-hotspot")
    assert f.time_share == pytest.approx(0.48)
    assert f.estimated_speedup == pytest.approx(amdahl(0.48, 10), rel=1e-3)
    assert f.location["line"] == 10 and "stats()" in f.evidence
    assert f.lines == (10, 11)


def test_python_hotspot_ignores_native_time():
    rec = record(hot_lines=[hot(30, "main", 0.9, 0.02)])  # a line calling torch ops
    assert python_hotspot(facts_of(rec)) == []


def test_lint_finding_on_the_same_lines_replaces_the_hotspot():
    spot = only(python_hotspot(facts_of(record(hot_lines=[hot(10, "f", 0.5, 0.5)]))),
                "python-hotspot")
    lint = Finding("inefficient-membership", "t", "e", "f", 2.0,
                   location={"file": SCRIPT, "line": 11})
    far = Finding("repeated-concat", "t", "e", "f", 2.0, location={"file": SCRIPT, "line": 90})
    assert drop_covered([spot], [lint]) == []
    assert drop_covered([spot], [far]) == [spot]


def test_steady_view_keeps_main_thread_steady_samples():
    stacks = {"interval_s": 0.005, "total": 3, "seconds": 3.0, "stacks": [
        {"thread": "MainThread", "tag": "startup", "count": 1, "seconds": 1.0, "frames": []},
        {"thread": "MainThread", "tag": "other", "count": 1, "seconds": 0.5, "frames": []},
        {"thread": "worker", "tag": "", "count": 1, "seconds": 1.5, "frames": []}]}
    view = steady_view(record(stack_samples=stacks))
    assert view.stack_samples.seconds == 0.5
    assert len(view.stack_samples.stacks) == 1


def test_thread_oversubscription_needs_a_measured_slowdown():
    cal = {"current": 16, "target": 4, "factor": 1.8, "ci_low": 1.5, "ci_high": 2.1, "n": 5}
    rec = record(threads={"usable_cores": 4, "torch_threads": 16, "env": {}},
                 calibration={"threads": cal},
                 set_num_threads=[{"value": 16, "site": [SCRIPT, 5, "<module>"]}])
    f = only(thread_oversubscription(facts_of(rec)), "thread-oversubscription")
    share = 0.021 / 0.021
    assert f.estimated_speedup == pytest.approx(amdahl(share, 1.8), rel=1e-3)
    assert f.location["line"] == 5 and "torch.set_num_threads(4)" in f.fix
    assert f.plan_change == {"cpu_threads": 4}
    cal_unsure = {**cal, "ci_low": 0.9}
    rec = changed(rec, calibration={"threads": cal_unsure})
    assert thread_oversubscription(facts_of(rec)) == []
    rec = changed(rec, threads={"torch_threads": 4})
    assert thread_oversubscription(facts_of(rec)) == []


def test_threads_on_a_busy_machine_advise_fewer_with_the_load_they_hold_at():
    # 2 threads on 2 cores is right on a quiet machine; with others holding 1.6 cores
    # and 1 thread measured faster at that load, the advice is fewer, labelled with it.
    cal = {"current": 2, "target": 1, "factor": 3.1, "ci_low": 2.2, "ci_high": 4.0, "n": 5,
           "free_cores": 1, "other_cores": 1.6}
    rec = record(threads={"usable_cores": 2, "torch_threads": 2, "env": {}},
                 calibration={"threads": cal},
                 cpu={"span_s": 4.0, "window": "steady", "user_s": 3.0,
                      "other_processes_s": 6.4, "load_1m_end": 5.2, "usable_cores": 2})
    f = only(thread_oversubscription(facts_of(rec)), "thread-oversubscription")
    assert "other processes kept 1.6 cores busy" in f.evidence and "load average 5.2" in f.evidence
    assert f.plan_change == {"cpu_threads": 1} and f.confidence == "medium"
    assert "at this load" in f.title and "quiet machine" in f.fix
    # the same measurement without a busy machine behind it (free_cores None): nothing
    quiet = {k: v for k, v in cal.items() if k not in ("free_cores", "other_cores")}
    assert thread_oversubscription(facts_of(changed(rec, calibration={"threads": quiet}))) == []
    # a busy machine where fewer threads were not measured faster: nothing
    unsure = {**cal, "ci_low": 0.95}
    assert thread_oversubscription(facts_of(changed(rec, calibration={"threads": unsure}))) == []


def test_free_cores_are_what_other_processes_leave():
    from perfpilot.record_probe_sections import CpuUse

    def others(cores: float) -> CpuUse:
        return CpuUse(span_s=4.0, other_processes_s=4.0 * cores)

    assert others(1.6).other_cores == pytest.approx(1.6) and not CpuUse().busy
    assert not others(0.3).busy and others(0.3).free_cores(2) == 2  # quiet: every core
    assert others(1.6).free_cores(2) == 1 and others(3.5).free_cores(2) == 1  # at least 1
    assert others(6.4).free_cores(16) == 10


def test_eval_dominates_from_eval_segments():
    rec = record(eval_s=3.0, timeline={"steady_s": 4.05, "train_s": 1.05, "eval_s": 3.0,
                                       "eval_passes": 6})
    f = only(eval_dominates(facts_of(rec)), "eval-dominates")
    assert f.time_share == pytest.approx(3.0 / 4.05)
    assert f.estimated_speedup == pytest.approx(amdahl(3.0 / 4.05, 4), rel=1e-3)
    assert "6 passes" in f.evidence
    rec = changed(rec, profile={"mode": "workload"})  # the engine's schedule, not the user's
    assert eval_dominates(facts_of(rec)) == []


def test_io_in_loop_from_hooked_calls_and_sampled_lines(tmp_path):
    src = tmp_path / "train.py"
    src.write_text("import torch\n" * 9 + "log.write(str(loss))\n")
    io = [{"call": "torch.save", "kind": "write", "site": [SCRIPT, 42, "main"],
           "phase": "steady", "count": 50, "seconds": 0.5},
          {"call": "torch.save", "kind": "write", "site": [SCRIPT, 50, "main"],
           "phase": "eval", "count": 2, "seconds": 5.0}]
    lines = [{**hot(10, "main", 0.05, 0.0), "file": str(src), "tags": {"other": 0.1}}]
    found = io_in_loop(facts_of(record(io=io, hot_lines=lines)))
    assert [f.location["line"] for f in found] == [42, 10]
    assert found[0].estimated_speedup == pytest.approx(amdahl(0.5 / 1.05, 10), rel=1e-3)
    assert "50 times" in found[0].evidence


def test_grad_in_eval_uses_the_measured_factor():
    gie = {"calls": [{"module": "Net", "site": [SCRIPT, 70, "evaluate"], "calls": 40,
                      "then_backward": 0}], "grad_over_nograd": [1.4, 1.6, 1.5]}
    rec = record(grad_in_eval=gie, hot_lines=[{**hot(70, "evaluate", 0.3, 0.0),
                                               "total_share": 0.5}])
    f = only(grad_in_eval(facts_of(rec)), "grad-in-eval")
    assert f.estimated_speedup == pytest.approx(amdahl(0.5, 1.5), rel=1e-3)
    assert "inference_mode" in f.fix and f.location["line"] == 70
    assert f.factor == pytest.approx(1.5) and f.measured == ()  # ratios: the record's
    gie["calls"][0]["then_backward"] = 40  # every one was trained through (frozen BN)
    assert grad_in_eval(facts_of(changed(rec, grad_in_eval=gie))) == []


def test_rank_never_leads_with_a_tiny_cost():
    big_gain_tiny_cost = Finding("a", "", "", "", 3.0, time_share=0.01)
    modest = Finding("b", "", "", "", 1.2, time_share=0.3)
    unknown = Finding("c", "", "", "", 1.1)
    assert [f.id for f in rank([big_gain_tiny_cost, unknown, modest])] == ["b", "c", "a"]


def test_a_symptom_never_leads_its_cause():
    # Repeated concatenation reallocates a growing buffer: its page faults are system time.
    churn = Finding("system-time", "", "page faults", "", 2.34, time_share=0.6)
    concat = Finding("repeated-concat", "", "", "", 2.07, time_share=0.5)
    other = Finding("io-in-loop", "", "", "", 1.5, time_share=0.3)
    assert [f.id for f in rank([churn, other, concat])] == ["repeated-concat", "system-time",
                                                            "io-in-loop"]
    assert [f.id for f in rank([churn, other])] == ["system-time", "io-in-loop"]
    said = _dedupe([churn, concat])
    assert "repeated-concat finding here is a likely cause" in said[0].evidence
    assert _dedupe([churn]) == [churn]


def test_diagnose_runs_all_rules_and_notes_failures():
    rec = record({"data": 0.06}, hot_lines=[hot(10, "stats", 0.3, 0.3, {"data": 0.3})])
    notes: list[str] = []
    found = diagnose(rec, lint=False, notes=notes)
    # the Python time is inside data loading: the dataloader finding covers it
    assert [f.id for f in found] == ["dataloader-bound"]
    assert notes == []


@pytest.mark.parametrize(("ticks", "share", "thin"),
                         [(30, 0.3, True), (200, 0.3, False), (200, 0.06, True)])
def test_python_hotspot_needs_enough_samples(ticks: int, share: float, thin: bool) -> None:
    # 30% of 30 window samples is 9 (chance: a run later finds nothing); 60 of 200 is a
    # hot spot; 6% of 200 is 12 samples in its code, under the 20 its share needs.
    hot = {"file": "/x/train.py", "line": 10, "function": "f", "self_share": share,
           "own_python_share": share, "python_share": share, "tags": {"forward": 0.1}}
    stacks = {"total": ticks, "interval_s": 0.01,
              "stacks": [{"frames": [["/x/train.py", 10, "f"]], "count": ticks}]}
    rec = changed(record({"forward": 0.02}), hot_lines=[hot], stack_samples=stacks)
    (got,) = [f for f in diagnose(rec, lint=False) if f.id == "python-hotspot"]
    assert got.thin is thin
    sup = got.support
    assert sup is not None and sup.unit == "samples" and sup.n == ticks
    assert sup.own == round(share * ticks)
    assert sup.share_low < share < sup.share_high  # Wilson interval around the share
    if thin:
        assert str(ticks if ticks < 50 else sup.own) in sup.shortfall()


@pytest.mark.parametrize(("steps", "thin"), [(8, True), (20, False)])
def test_step_based_findings_need_twenty_steady_steps(steps: int, thin: bool) -> None:
    rec = record({"data": 0.06}, steps=steps)
    (f,) = diagnose(rec, lint=False)
    assert f.id == "dataloader-bound" and f.thin is thin
    assert f.support is not None and (f.support.n, f.support.unit) == (steps, "steps")
    assert ("needed" in f.support.shortfall()) is thin


def test_a_thin_finding_never_leads_and_is_not_verified() -> None:
    from perfpilot.probes.verify import verifiable
    from perfpilot.record_sections import Support

    solid = Finding("a", "a", "e", "f", 1.10, plan_change={"cpu_threads": 1},
                    support=Support(n=100, unit="steps", needed=20))
    thin = Finding("b", "b", "e", "f", 2.0, plan_change={"num_workers": 1},
                   support=Support(n=5, unit="steps", needed=20))
    assert [f.id for f in rank([thin, solid])] == ["a", "b"]
    assert [f.id for f in verifiable([thin, solid])] == ["a"]


def test_share_interval_and_gain_for_this_run_come_from_the_record() -> None:
    # per-step data times vary: the share's interval is that of their mean; the run's
    # wall time is 4x the steady window, so this run gains less than a long one.
    rec = changed(record({"data": 0.06}),
                  step_phases={"per_step_ci_s": {"data": [0.05, 0.07]}},
                  timeline={"total_s": 4 * 50 * 0.081, "steady_s": 50 * 0.081})
    (f,) = diagnose(rec, lint=False)
    sup = f.support
    assert sup is not None and sup.steady_fraction == pytest.approx(0.25, abs=1e-3)
    assert sup.share_low == pytest.approx(f.time_share * 0.05 / 0.06, abs=1e-3)
    assert sup.share_high == pytest.approx(f.time_share * 0.07 / 0.06, abs=1e-3)
    assert sup.run_speedup == pytest.approx(amdahl(f.time_share * 0.25, f.factor), rel=1e-3)
    assert 1.0 < sup.run_speedup < f.estimated_speedup
    assert Finding.from_dict(f.to_dict()) == f


def test_loader_workers_count_against_the_cores_torch_threads_can_have():
    from perfpilot.record_probe_sections import CpuUse

    # no other process, but 2 workers kept 1.2 cores busy: torch's 2 threads get 1 core
    workers = CpuUse(span_s=4.0, children_s=4.8, other_processes_s=0.4)
    assert not workers.busy and workers.worker_cores == pytest.approx(1.2)
    assert workers.free_cores(2) == 1
    # together with others: 0.3 + 0.3 reaches the threshold, 0.2 + 0.2 does not
    assert CpuUse(span_s=1.0, children_s=0.3, other_processes_s=0.3).free_cores(2) == 1
    assert CpuUse(span_s=1.0, children_s=0.2, other_processes_s=0.2).free_cores(2) == 2
    cal = {"current": 2, "target": 1, "factor": 1.4, "ci_low": 1.2, "ci_high": 1.6, "n": 5,
           "free_cores": 1, "other_cores": 0.1, "worker_cores": 1.2}
    rec = record(threads={"usable_cores": 2, "torch_threads": 2, "env": {}},
                 calibration={"threads": cal},
                 cpu={"span_s": 4.0, "window": "steady", "user_s": 3.0, "children_s": 4.8,
                      "other_processes_s": 0.4, "usable_cores": 2})
    f = only(thread_oversubscription(facts_of(rec)), "thread-oversubscription")
    assert "its DataLoader workers 1.2" in f.evidence and f.plan_change == {"cpu_threads": 1}
