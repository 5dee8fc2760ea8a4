"""Tests of perfpilot.record: JSON round trips, atomic save, load errors, Amdahl."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from perfpilot.errors import UserError
from perfpilot.record import (
    PHASES,
    RECORD_SCHEMA,
    Finding,
    LintDetail,
    LoopSpan,
    Measure,
    RunRecord,
    StatSummary,
    amdahl,
    sort_findings,
)
from perfpilot.record_probe_sections import LoaderInfo
from perfpilot.record_sections import (
    EngineStats,
    HotLine,
    Stack,
    StackSamples,
    Timeline,
    Verification,
)

FIXTURES = Path(__file__).parent / "fixtures"

FINDING = Finding(id="dataloader-bound", title="Data loading dominates",
                  evidence="data: 62% of step time", fix="set num_workers=4",
                  estimated_speedup=2.1, location={"file": "/x/train.py", "line": 12},
                  confidence="high", time_share=0.62, factor=4.0,
                  measured=(Measure("hot_line_share", 0.3, "fraction", ("/x/data.py", 7, "get")),
                            Measure("calls", 3, "count")))


def make_record(**sections) -> RunRecord:
    return RunRecord(
        workload="digits", plan={"version": 1, "batch_size": 32}, steps=100,
        samples_per_s=1234.5,
        step_time_s=StatSummary(mean=0.011, median=0.01, ci_low=0.009, ci_high=0.012, n=98),
        phases_s=dict.fromkeys(PHASES, 0.001), peak_memory_bytes=123456, wall_time_s=2.5,
        metric={"name": "accuracy", "value": 0.9}, time_to_target_s=1.5,
        loss_history=[[0.0, 2.3], [1.0, 0.5]], machine={"cpu": {"model": "x"}},
        started_at=1700000000.0, **sections,
    )


VERIFIED = dataclasses.replace(FINDING, verified=Verification(
    change={"num_workers": 4}, ratio=2.0, ci_low=1.8, ci_high=2.2, verdict="faster", n=5))


def test_run_record_json_round_trip_with_typed_sections():
    rec = make_record(
        stack_samples=StackSamples(interval_s=0.001, total=3, stacks=(
            Stack(frames=(("/a.py", 1, "f"),), count=3),)),
        hot_lines=(HotLine("/a.py", 1, "f", self_share=1.0, total_share=1.0),),
        timeline=Timeline(total_s=2.5, steady_s=2.0), findings=(VERIFIED, FINDING),
        loaders=(LoaderInfo(role="train", batches=3, site=("/a.py", 2, "main")),),
        extra={"note": "mine"})
    d = json.loads(json.dumps(rec.to_dict()))
    assert d["schema"] == RECORD_SCHEMA == "perfpilot.runrecord/3"
    assert d["hot_lines"][0]["line"] == 1  # sections are top-level keys
    assert d["extra"] == {"note": "mine"}  # user data stays apart
    back = RunRecord.from_dict(d)
    assert back == rec
    assert back.findings == (VERIFIED, FINDING)
    assert back.findings[0].verified.ratio == 2.0


def test_schema_1_record_loads_into_the_typed_fields():
    rec = RunRecord.load(FIXTURES / "runrecord_v1.json")
    assert rec.profile.steady_steps == 10 and rec.timeline.imports_s == 0.4
    assert rec.step_phases.step_s_series == (0.1, 0.1, 0.1)
    assert rec.stack_samples.stacks[0].frames == (("/home/me/train.py", 10, "<module>"),)
    assert rec.hot_lines[0].tags == {"data": 1.0}
    assert rec.memory.series == ((0.0, 100), (1.0, 123))
    assert rec.threads.usable_cores == 2 and rec.loaders[0].role == "train"
    assert rec.optimizers[0].steps == 10 and rec.calibration.threads is None
    (f,) = rec.findings
    assert f.verified == Verification(change={"num_workers": 2}, ratio=1.9, ci_low=1.8,
                                      ci_high=2.0, verdict="faster", n=5, estimate=2.0,
                                      measure="seconds per training sample")
    assert f.plan_change == {"num_workers": 2} and not hasattr(f, "extra")
    assert rec.extra == {"my_note": "added by the user"}  # only the user's key is left
    again = RunRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert again == rec and again.to_dict()["schema"] == RECORD_SCHEMA


LINTED = Finding(id="list-append-loop", title="t", evidence="e", fix="f",
                 estimated_speedup=1.0, time_share=0.2, factor=2.0, demoted=True,
                 lint=LintDetail(also=("ruff:PERF401",), diff=("-a", "+b"), loop_share=0.3,
                                 loop_depth=2, severity=3))
LINTED_NOW = dataclasses.replace(LINTED, lint=dataclasses.replace(
    LINTED.lint, source="ruff", column=4, loop=LoopSpan(3, 5), measure="loop",
    assumption="a list comprehension", line_share=0.1, attributed_share=0.25))


def test_finding_typed_fields_round_trip_through_json():
    hot = dataclasses.replace(FINDING, tag="data", lines=(10, 11),
                              plan_change={"num_workers": 4})
    idle = dataclasses.replace(FINDING, id="gpu-idle", tag="data", location=None,
                               measured=(Measure("utilization", 30.0, "%"),))
    for f in (LINTED, LINTED_NOW, hot, VERIFIED, idle):
        d = json.loads(json.dumps(f.to_dict()))
        assert Finding.from_dict(d) == f
    d = LINTED_NOW.to_dict()
    assert d["lint"]["also"] == ["ruff:PERF401"] and d["demoted"] is True
    assert d["lint"]["loop"] == {"line": 3, "end_line": 5} and d["factor"] == 2.0
    assert "extra" not in d  # a finding has no free-form part
    d = FINDING.to_dict()
    assert d["measured"][0] == {"name": "hot_line_share", "value": 0.3, "unit": "fraction",
                                "site": ["/x/data.py", 7, "get"]}
    assert FINDING.measured_value("calls") == 3 and FINDING.measured_value("nope") is None


def test_old_finding_with_typed_data_in_extra_loads_into_the_fields():
    old = {"id": "list-append-loop", "title": "t", "evidence": "e", "fix": "f",
           "estimated_speedup": 1.0,
           "extra": {"share": 0.2, "factor": 2.0, "demoted": True, "also": ["ruff:PERF401"],
                     "diff": ["-a", "+b"], "loop_share": 0.3, "loop_depth": 2,
                     "severity": 3}}
    assert Finding.from_dict(old) == LINTED
    hot = Finding.from_dict({"id": "python-hotspot", "title": "t", "evidence": "e",
                             "fix": "f", "estimated_speedup": 1.2,
                             "extra": {"tag": "data", "lines": [10, 11], "calls": 3,
                                       "plan_change": {"num_workers": 2}}})
    assert (hot.tag, hot.lines, hot.plan_change) == ("data", (10, 11), {"num_workers": 2})
    assert hot.measured == (Measure("calls", 3, "count"),)
    assert hot.lint is None and not hot.demoted and hot.factor is None


def test_schema_1_engine_record_in_a_tune_record_loads():
    tune = json.loads((FIXTURES / "tune_record.json").read_text())
    rec = RunRecord.from_dict(tune["baseline"])
    assert isinstance(rec.engine, EngineStats) and rec.engine.measured_steps > 0
    assert rec.extra == {}


def test_unknown_schema_is_refused_with_one_line():
    d = {**make_record().to_dict(), "schema": "perfpilot.runrecord/9"}
    with pytest.raises(UserError, match="schema 'perfpilot.runrecord/9'"):
        RunRecord.from_dict(d)


def test_malformed_section_is_a_user_error():
    d = {**make_record().to_dict(), "hot_lines": [{"line": 3}]}
    with pytest.raises(UserError, match="section 'hot_lines'"):
        RunRecord.from_dict(d)


def test_save_is_atomic_and_loads_back(tmp_path):
    path = tmp_path / "r.json"
    rec = make_record(engine=EngineStats(seed=np.int64(3), data_host_s=np.float32(0.5)))
    rec.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left
    back = RunRecord.load(path)
    assert back.engine.seed == 3 and back.engine.data_host_s == 0.5
    assert back.step_time_s == rec.step_time_s


def test_failed_save_leaves_the_previous_record_intact(tmp_path):
    path = tmp_path / "r.json"
    make_record().save(path)
    before = path.read_text()
    with pytest.raises(TypeError, match="cannot serialize"):
        make_record(extra={"bad": object()}).save(path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_load_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(UserError, match=f"record file not found: {missing}"):
        RunRecord.load(missing)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(UserError, match=rf"{broken}: not valid JSON"):
        RunRecord.load(broken)
    other = tmp_path / "plan.json"
    other.write_text('{"version": 1, "batch_size": 8}')
    with pytest.raises(UserError, match=rf"{other}: not a perfpilot run record"):
        RunRecord.load(other)


def test_load_of_incomplete_record_is_a_user_error(tmp_path):
    path = tmp_path / "r.json"
    d = make_record().to_dict()
    del d["steps"]
    path.write_text(json.dumps(d))
    with pytest.raises(UserError, match=str(path)):
        RunRecord.load(path)


def test_load_of_non_object_json_is_a_user_error(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("[1, 2]")
    with pytest.raises(UserError, match=str(path)):
        RunRecord.load(path)


def test_load_of_a_directory_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=str(tmp_path)):
        RunRecord.load(tmp_path)


def test_stat_summary_round_trip():
    s = StatSummary(mean=1.0, median=0.9, ci_low=0.8, ci_high=1.1, n=7)
    assert StatSummary.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert StatSummary.from_dict({"mean": 1, "median": 1, "ci_low": 1, "ci_high": 1}).n == 0


def test_finding_round_trip_ignores_unknown_keys():
    d = json.loads(json.dumps(FINDING.to_dict()))
    assert Finding.from_dict(d) == FINDING
    assert Finding.from_dict({**d, "future_field": 1}) == FINDING
    minimal = Finding("small-batch", "t", "e", "f", 1.2)
    assert Finding.from_dict(minimal.to_dict()) == minimal
    assert minimal.location is None and minimal.confidence == "medium"


def test_sort_findings_highest_speedup_first():
    a = Finding("a", "t", "e", "f", 1.1)
    b = Finding("b", "t", "e", "f", 3.0)
    c = Finding("c", "t", "e", "f", 1.5)
    assert [f.id for f in sort_findings([a, b, c])] == ["b", "c", "a"]


@pytest.mark.parametrize("share, factor, expected", [
    (0.5, 2.0, 1 / 0.75),
    (0.5, float("inf"), 2.0),
    (0.0, 10.0, 1.0),
    (0.25, 1.0, 1.0),
    (1.5, 2.0, 2.0),  # share clamped to 1
    (-0.2, 2.0, 1.0),  # share clamped to 0
    (0.9, 3.0, 1 / (0.1 + 0.3)),
])
def test_amdahl(share, factor, expected):
    assert amdahl(share, factor) == pytest.approx(expected)


def test_amdahl_whole_run_eliminated_is_finite():
    assert amdahl(1.0) == pytest.approx(1e9)
