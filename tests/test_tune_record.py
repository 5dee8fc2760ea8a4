"""The typed TuneRecord: JSON round trip, schema-1 records, refusals, rendering from it.

``fixtures/tunerecord_v1.json`` was written by ``perfpilot tune digits --budget 40s``
before the record was typed (schema 1; trial measurements and loss histories trimmed).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from perfpilot.cli import main
from perfpilot.errors import UserError
from perfpilot.plan import Plan
from perfpilot.record import RunRecord
from perfpilot.render.tune_html import report_page
from perfpilot.trial import Trial
from perfpilot.tune_record import (
    TUNE_SCHEMA,
    Comparison,
    StageRecord,
    TuneRecord,
    WorkloadInfo,
)

FIXTURES = Path(__file__).parent / "fixtures"
V1 = FIXTURES / "tunerecord_v1.json"


def test_a_schema_1_record_loads_into_typed_parts() -> None:
    raw = json.loads(V1.read_text())
    assert raw["schema"] == "perfpilot.tunerecord/1"
    rec = TuneRecord.load(V1)
    assert rec.status == "complete" and rec.workload.name == "digits"
    assert isinstance(rec.plan, Plan) and rec.plan.to_dict() == raw["plan"]
    assert isinstance(rec.baseline, RunRecord) and isinstance(rec.tuned, RunRecord)
    assert [s.name for s in rec.stages] == [s["name"] for s in raw["stages"]]
    assert all(isinstance(s, StageRecord) and isinstance(s.plan, Plan) for s in rec.stages)
    assert len(rec.trials) == len(raw["trials"]) and isinstance(rec.trials[0], Trial)
    thr = rec.final.throughput
    assert thr.measured and thr.ratio == raw["final"]["throughput"]["ratio"]
    assert rec.decision.plan == raw["decision"]["plan"]
    assert rec.machine.usable_cores == raw["machine"]["cpu"]["usable_cores"]


def test_round_trip_is_exact_and_writes_schema_2(tmp_path: Path) -> None:
    rec = TuneRecord.load(V1)
    rec.save(tmp_path / "record.json")
    raw = json.loads((tmp_path / "record.json").read_text())
    assert raw["schema"] == TUNE_SCHEMA == "perfpilot.tunerecord/2"
    again = TuneRecord.load(tmp_path / "record.json")
    assert again == rec and again.to_dict() == raw
    # Schema 2 keeps schema 1's layout: only the schema line differs, and the embedded run
    # records, which migrate to run-record schema 2 (typed sections) as they load.
    v1 = json.loads(V1.read_text())
    changed = {k for k in v1 if v1[k] != raw.get(k)}
    assert "schema" in changed and changed <= {"schema", "baseline", "tuned", "baseline_check"}
    assert raw["baseline"]["schema"] == "perfpilot.runrecord/3"


def test_a_record_under_construction_round_trips() -> None:
    rec = TuneRecord(workload=WorkloadInfo(name="w", target=0.9, direction="max"),
                     budget_s=60.0, baseline_plan=Plan(batch_size=16))
    rec = rec.with_note("a note").replace(stages=(StageRecord(
        "loader", "kept", 5.0, 4.0, Plan(batch_size=16), (1, 2), error="no gain",
        evidence={"candidates": [{"label": "workers=2", "speedup": float("inf")}]}),))
    again = TuneRecord.from_dict(json.loads(rec.dumps()))
    assert again.notes == ("a note",) and again.stages[0].trials == (1, 2)
    assert again.stages[0].evidence["candidates"][0]["speedup"] == "inf"  # strict JSON


@pytest.mark.parametrize(("data", "message"), [
    ({"schema": "perfpilot.tunerecord/9", "status": "complete"}, "schema 'perfpilot.tunerecord/9'"),
    ({"schema": "perfpilot.runrecord/1"}, "not a perfpilot tune record"),
    ([1, 2], "a JSON list"),
    ({"schema": TUNE_SCHEMA, "status": "done"}, "key 'status' is 'done'"),
    ({"schema": TUNE_SCHEMA, "status": "running", "stages": [{"summary": "x"}]},
     "key 'stages'"),
    ({"schema": TUNE_SCHEMA, "status": "running", "plan": {"batch_sise": 8}}, "key 'plan'"),
])
def test_bad_records_are_refused_with_one_line(data: object, message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)) as e:
        TuneRecord.from_dict(data, "DIR/record.json")
    assert "\n" not in str(e.value) and str(e.value).startswith("DIR/record.json: ")


def test_report_command_refuses_a_foreign_schema_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "record.json").write_text(json.dumps(
        {"schema": "perfpilot.tunerecord/9", "status": "complete"}))
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "perfpilot.tunerecord/9" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("fixture", ["tunerecord_v1.json", "tune_record.json"])
def test_report_command_renders_old_and_new_records(
        tmp_path: Path, fixture: str, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    (old / "record.json").write_text((FIXTURES / fixture).read_text())
    TuneRecord.load(FIXTURES / fixture).save(new / "record.json")
    for d in (old, new):
        assert main(["report", str(d)]) == 0
        assert "report.html" in capsys.readouterr().out
    def text(d: Path) -> str:  # the plots carry their creation time
        return re.sub(r"<svg.*?</svg>", "", (d / "report.html").read_text(), flags=re.S)

    assert text(old) == text(new) and "Headline" in text(new)


def test_a_bare_record_renders_every_section() -> None:
    html = report_page(TuneRecord(workload=WorkloadInfo(name="bare"), status="failed",
                                  error="boom"))
    assert "could not be rendered" not in html
    assert "This tuning failed" in html and "boom" in html and "No trial finished" in html


def _cells(html: str, label: str) -> list[str]:
    """The numbers in the table row whose first cell is ``label``."""
    row = re.search(rf"<tr><td>{re.escape(label)}</td>(.*?)</tr>", html, re.S)
    assert row, label
    return re.findall(r'<td class="num">([^<]*)</td>', row.group(1))


def test_the_report_names_what_each_samples_per_s_figure_measures() -> None:
    rec = TuneRecord.load(V1)
    html = report_page(rec).replace("&#x27;", "'")
    thr = rec.final.throughput
    steady = [f"{thr.baseline_samples_per_s:,.0f}", f"{thr.tuned_samples_per_s:,.0f}"]
    # The headline's figure is the steady-steps one, and says so.
    assert f"{steady[0]} → {steady[1]}</div><div class=\"lbl\">samples / s (steady steps)" \
        in html
    # The step table shows both, each labelled, and they agree with the record.
    assert _cells(html, "samples / s (steady steps)") == steady
    runs = [rec.baseline_check or rec.baseline, rec.tuned]
    assert _cells(html, "samples / s (whole run)") == [f"{r.samples_per_s:,.0f}" for r in runs]
    # Each label comes with its definition.
    assert "<div>samples / s (steady steps)</div><div>steady steps: the final check's " \
        "throughput comparison, the median of timed chunks" in html
    assert "<div>samples / s (whole run)</div><div>whole run: one training run of each " \
        "plan" in html


def test_a_record_without_a_throughput_comparison_shows_one_figure() -> None:
    rec = TuneRecord.load(V1)
    rec = rec.replace(final=rec.final.__class__(verdict="unmeasured", claim="no comparison",
                                                throughput=Comparison(skipped="budget")))
    html = report_page(rec)
    assert "samples / s (steady steps)" not in html and "samples / s (whole run)" in html


def test_renderers_import_nothing_from_tune() -> None:
    render = Path(__file__).parents[1] / "src" / "perfpilot" / "render"
    for path in render.glob("tune_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert not name.startswith(("perfpilot.tune.", "perfpilot.engine",
                                            "perfpilot.probes", "perfpilot.execute")), \
                    (path.name, name)


def test_demo_renders_the_record_tune_returns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from perfpilot.tune import pipeline

    rec = TuneRecord.load(V1)
    monkeypatch.setattr(pipeline, "tune", lambda *a, **kw: rec)
    assert main(["demo", "--out", str(tmp_path), "--budget", "60s"]) == 0
    assert "samples / s (steady steps)" in (tmp_path / "report.html").read_text()
    assert "report.html" in capsys.readouterr().out
