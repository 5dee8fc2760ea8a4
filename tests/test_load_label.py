"""Load-aware decisions (issue 20): every trial carries the machine's load, the plan is
labelled with the load its contention knobs were measured at, and plan, record, report and
``devices --check`` say whether it holds at the load now."""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import time
from pathlib import Path

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from perfpilot import devices
from perfpilot.commands import devices as devices_cmd
from perfpilot.errors import PlanError
from perfpilot.plan import Plan, check_plan_file, load_plan, plan_load, save_plan
from perfpilot.render.tune_console import print_summary
from perfpilot.render.tune_html import report_page
from perfpilot.trial import Outcome, Trial
from perfpilot.tune import load_label as ll
from perfpilot.tune import trial_load
from perfpilot.tune.study import Study
from perfpilot.tune_record import TuneRecord

RECORD = Path(__file__).parent / "fixtures" / "tune_record.json"  # cpu_threads None -> 1
BUSY = {"others_cores": 1.6, "loadavg_1m": 9.8, "own_cores": 1.0, "cores": 2,
        "machine_cores": 2}
IDLE = {"others_cores": 0.05, "loadavg_1m": 1.1, "own_cores": 1.0, "cores": 2,
        "machine_cores": 2}


def _loaded(rec: TuneRecord, load: dict) -> tuple[Trial, ...]:
    return tuple(dataclasses.replace(t, load=dict(load)) for t in rec.trials)


# ---------------------------------------------------------------- measuring


def test_study_records_the_load_of_every_trial_and_recalls_it():
    study = Study()
    t = study.run("s", {"k": 1}, lambda: (time.sleep(0.3), Outcome("complete"))[1])
    assert {"cores", "machine_cores", "loadavg_1m", "own_cores", "others_cores"} <= set(t.load)
    assert t.load["others_cores"] >= 0 and t.load["span_s"] >= trial_load.MIN_SPAN_S
    assert study.run("s", {"k": 1}, lambda: Outcome("failed")) is t  # recalled, not re-run
    back = Trial.from_dict(json.loads(json.dumps(t.to_dict())))
    assert back == t


class _Done:
    def __init__(self, out: Outcome) -> None:
        self.out = out

    def result(self) -> Outcome:
        return self.out


class _RayLike:
    """An executor that says it is Ray (its workers may be other machines)."""

    kind = "ray"

    def submit(self, fn, *args, timeout_s=None):  # noqa: ANN001, ANN202 - a test double
        return _Done(fn(*args))


def _complete() -> Outcome:
    return Outcome("complete")


def test_a_trial_on_ray_carries_no_load_of_this_machine():
    from perfpilot.tune.units import Portable

    study = Study(executor=_RayLike())  # type: ignore[arg-type]
    t = study.run("s", {"k": 2}, Portable(_complete))
    assert t.state == "complete" and t.load == {} and study.placed == {"ray": 1}
    inline = study.run("s", {"k": 3}, _complete)  # not portable: runs here, load recorded
    assert "cores" in inline.load


def test_old_trials_without_load_still_load_and_keep_their_json_shape():
    old = {"number": 3, "stage": "hardware", "plan": {}, "state": "complete",
           "reason": "", "measurements": {}, "started_at": 1.0, "finished_at": 2.0}
    t = Trial.from_dict(old)
    assert t.load == {} and t.to_dict() == old


def test_between_counts_others_as_machine_use_less_this_process_and_children():
    a = {"user_s": 1.0, "system_s": 0.0, "children_s": 0.0, "machine_busy_s": 10.0,
         "load_1m": 8.0}
    b = {"user_s": 2.0, "system_s": 0.5, "children_s": 0.5, "machine_busy_s": 16.0,
         "load_1m": 10.0}
    load = trial_load.between((0.0, a), (2.0, b), cores=(2, 2))
    assert load["own_cores"] == 1.0 and load["others_cores"] == 2.0  # (6 - 2) s over 2 s
    assert load["loadavg_1m"] == 9.0 and load["cores"] == 2
    short = trial_load.between((0.0, a), (0.1, b), cores=(2, 2))  # counters tick at 10 ms
    assert "others_cores" not in short and short["loadavg_1m"] == 9.0
    assert trial_load.between(None, (1.0, b)) == {}


# ---------------------------------------------------------------- the rule


@pytest.mark.parametrize(("load", "want"), [
    (BUSY, True), (IDLE, False),
    ({"others_cores": 0.5, "cores": 2}, True),
    ({"others_cores": 0.49, "cores": 2}, False),
    # a container: 62 host CPUs outside this process's 2 absorb other processes first
    ({"others_cores": 30.0, "cores": 2, "machine_cores": 64}, False),
    ({"others_cores": 62.6, "cores": 2, "machine_cores": 64}, True),
    # the load average decides only when others' use was not measured (short trials)
    ({"loadavg_1m": 9.8, "own_cores": 1.0, "cores": 2}, True),
    ({"loadavg_1m": 2.5, "own_cores": 1.0, "cores": 2}, False),
    ({"loadavg_1m": 9.8, "others_cores": 0.1, "cores": 2}, False),
    ({}, None), ({"others_cores": 1.0}, None),
])
def test_contention_rule(load, want):
    assert ll.contended(load) is want


def test_contention_knobs_are_the_ones_that_compete_for_the_cpu():
    base = Plan().to_dict()
    assert ll.contention_knobs(base, Plan(cpu_threads=1).to_dict()) == ["cpu_threads"]
    assert ll.contention_knobs(base, Plan(num_workers=2, prefetch_factor=4,
                                          pin_memory=True).to_dict()) == [
        "num_workers", "prefetch_factor", "pin_memory"]
    assert ll.contention_knobs(base, Plan(batch_size=128, precision="bf16").to_dict()) == []
    assert ll.contention_knobs({}, {"interop_threads": 1}) == ["interop_threads"]


def test_the_label_uses_the_trials_of_the_stages_that_chose_the_knobs():
    rec = TuneRecord.load(RECORD)
    trials = tuple(dataclasses.replace(t, load=dict(BUSY if t.number in (1, 2, 3) else IDLE))
                   for t in rec.trials)
    lab = ll.labelled(rec, trials, now=BUSY).load_label
    assert lab["knobs"] == ["cpu_threads"] and lab["stages"] == ["hardware"]
    assert lab["measured_at"]["trials"] == 3 and lab["measured_at"]["others_cores"] == 1.6
    assert lab["contention"] is True and lab["holds"] is True
    assert lab["verdict"].startswith(ll.HOLDS)
    assert lab["summary"].startswith("cpu_threads=1 measured at other processes 1.6 cores")


def test_verdicts_hold_re_measure_or_not_known():
    holds, words = ll.judge(BUSY, IDLE, ["cpu_threads"])
    assert holds is False and words.startswith("re-measure: the load now (")
    assert "other processes 0.1 cores" in words and "contended" in words and "idle" in words
    assert ll.judge(IDLE, {**IDLE, "others_cores": 0.3}, ["num_workers"])[0] is True
    assert ll.judge({}, BUSY, ["cpu_threads"])[0] is None
    assert ll.judge(BUSY, {}, ["cpu_threads"])[1] == "not known: the load now could not be read"
    holds, words = ll.judge(BUSY, IDLE, [])
    assert holds is True and words.startswith("holds at any load")


def test_a_plan_without_contention_knobs_holds_at_any_load():
    rec = TuneRecord.load(RECORD)
    rec = rec.replace(plan=rec.baseline_plan)
    lab = ll.labelled(rec, _loaded(rec, BUSY), now=IDLE).load_label
    assert lab["knobs"] == [] and lab["holds"] is True
    assert lab["measured_at"]["trials"] == len(rec.trials)  # every trial, for the record


def test_script_tuning_is_labelled_against_the_script_as_it_is():
    from perfpilot.script_tune_record import Result, ScriptTuneRecord

    rec = ScriptTuneRecord(command=("python", "t.py"), result=Result(changes={
        "cpu_threads": 1}))
    trials = (Trial(0, "race", {}, "complete", load=dict(BUSY)),)
    lab = ll.script_labelled(rec, trials, now=IDLE).machine["load_label"]
    assert lab["knobs"] == ["cpu_threads"] and lab["holds"] is False
    back = ScriptTuneRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert back == rec


# ---------------------------------------------------------------- plan and record


def test_plan_json_round_trip_with_and_without_load(tmp_path):
    plan = Plan(cpu_threads=1)
    lab = ll.label(Plan().to_dict(), plan.to_dict(), [], [Trial(0, "h", {}, "complete",
                                                                load=dict(BUSY))], IDLE)
    with_load, without = tmp_path / "with.json", tmp_path / "without.json"
    save_plan(plan, with_load, lab)
    save_plan(plan, without)
    assert json.loads(with_load.read_text())["load"]["knobs"] == ["cpu_threads"]
    assert "load" not in json.loads(without.read_text())
    for p in (with_load, without):
        assert load_plan(p) == plan
        check_plan_file(p)
    assert plan_load(with_load) == lab and plan_load(without) is None
    assert Plan.from_dict({"batch_size": 8, "load": {"x": 1}}) == Plan(batch_size=8)
    with pytest.raises(PlanError, match="'load' must be a JSON object"):
        Plan.from_dict({"load": [1]})


def test_record_round_trip_and_old_records_without_a_label():
    rec = TuneRecord.load(RECORD)
    assert rec.load_label is None  # an old record
    assert "load_label" not in json.loads(RECORD.read_text())
    labelled = ll.labelled(rec, _loaded(rec, BUSY), now=IDLE)
    labelled = labelled.replace(trials=_loaded(rec, BUSY))
    back = TuneRecord.from_dict(json.loads(labelled.dumps()))
    assert back.load_label == labelled.load_label and back.trials == labelled.trials
    assert back.load_label["holds"] is False


# ---------------------------------------------------------------- report


def _labelled_record(now: dict) -> TuneRecord:
    rec = TuneRecord.load(RECORD)
    return ll.labelled(rec, _loaded(rec, BUSY), now=now).replace(trials=_loaded(rec, BUSY))


def test_console_has_a_load_line():
    con = Console(file=io.StringIO(), force_terminal=True, width=400, color_system=None)
    print_summary(_labelled_record(IDLE), Path("out"), con)
    text = con.file.getvalue()
    line = next(x for x in text.splitlines() if x.startswith("load: "))
    assert "cpu_threads=1" in line and "re-measure: the load now" in line
    con = Console(file=io.StringIO(), force_terminal=True, width=400, color_system=None)
    print_summary(TuneRecord.load(RECORD), Path("out"), con)  # no label: no line
    assert "load: " not in con.file.getvalue()


def test_html_has_a_load_card_and_a_load_column():
    page = report_page(_labelled_record(BUSY))
    assert "<h3>Load</h3>" in page or ">Load<" in page
    assert "holds at the current load" in page
    assert "<th>load</th>" in page and "others 1.6 cores · load 9.8 / 2 cores" in page
    assert ">Load<" not in report_page(TuneRecord.load(RECORD))


# ---------------------------------------------------------------- devices --check


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    devices_cmd.register(app)
    return app


@functools.lru_cache(maxsize=1)
def _machine() -> devices.Machine:
    return devices.discover()


def _check(monkeypatch, path: Path, now: dict):
    machine = _machine()  # this machine, read once (it imports torch)
    monkeypatch.setattr(devices, "discover", lambda **kw: machine)
    monkeypatch.setattr(trial_load, "load_now", lambda *a, **kw: dict(now))
    return CliRunner().invoke(_app(), ["devices", "--json", "--check", str(path)])


def test_devices_check_warns_on_a_load_mismatch_and_exits_0(monkeypatch, tmp_path):
    lab = ll.label(Plan().to_dict(), Plan(cpu_threads=1).to_dict(), [],
                   [Trial(0, "h", {}, "complete", load=dict(BUSY))], BUSY)
    path = tmp_path / "plan.json"
    save_plan(Plan(cpu_threads=1), path, lab)
    result = _check(monkeypatch, path, IDLE)
    assert result.exit_code == 0, result.output
    assert "warning: load mismatch: re-measure: the load now" in result.stderr
    result = _check(monkeypatch, path, BUSY)
    assert result.exit_code == 0 and "load: holds at the current load" in result.stderr
    plain = tmp_path / "plain.json"
    save_plan(Plan(cpu_threads=1), plain)
    result = _check(monkeypatch, plain, IDLE)
    assert result.exit_code == 0 and "load" not in result.stderr


@pytest.mark.parametrize(("load", "match"), [
    ("[1, 2]", "'load' must be a JSON object"),
    ('{"knobs": "cpu_threads"}', "'knobs' is 'cpu_threads'"),
    ('{"measured_at": {"others_cores": "busy"}}', "'measured_at.others_cores'"),
])
def test_devices_check_rejects_a_malformed_load_label(monkeypatch, tmp_path, load, match):
    path = tmp_path / "bad.json"
    path.write_text('{"version": 1, "load": ' + load + "}")
    result = _check(monkeypatch, path, IDLE)
    assert isinstance(result.exception, PlanError), result.output
    assert str(path) in str(result.exception) and match in str(result.exception)


def test_script_tuning_report_shows_its_load_label():
    from perfpilot.render.script_tune_console import print_script_summary
    from perfpilot.render.script_tune_html import script_report_page
    from perfpilot.script_tune_record import Result, ScriptTuneRecord

    rec = ScriptTuneRecord(command=("python", "t.py"), status="complete",
                           result=Result(changes={"num_workers": 2}))
    rec = ll.script_labelled(rec, (Trial(0, "race", {}, "complete", load=dict(IDLE)),),
                             now=BUSY)
    con = Console(record=True, width=400)
    print_script_summary(rec, Path("out"), con)
    assert "load: num_workers=2 measured at other processes 0.1 cores" in con.export_text()
    page = script_report_page(rec)
    assert ">Load<" in page and "re-measure: the load now" in page


def test_script_plan_keeps_its_load_label(tmp_path):
    from perfpilot.script_plan import ScriptPlan, load_script_plan

    lab = ll.label({}, {"cpu_threads": 1}, [], [Trial(0, "race", {}, "complete",
                                                       load=dict(BUSY))], BUSY)
    path = tmp_path / "plan.json"
    ScriptPlan(changes={"cpu_threads": 1}, command=("python", "t.py"), load=lab).save(path)
    assert load_script_plan(path).load == lab
    ScriptPlan(changes={"cpu_threads": 1}).save(path)
    assert "load" not in json.loads(path.read_text()) and load_script_plan(path).load is None
    with pytest.raises(PlanError, match="'load'"):
        ScriptPlan.from_dict({"format": "perfpilot.script-plan/1", "load": 3})
