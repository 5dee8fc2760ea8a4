"""``perfpilot tune``: option parsing, one-line user errors, and a short real run (the
pipeline itself is tested in test_pipeline.py, kill -9 and --resume in
test_cli_tune_resume.py)."""

from __future__ import annotations

import json
import textwrap

import pytest

from perfpilot.cli import main
from perfpilot.commands.tune import parse_duration, parse_stages
from perfpilot.errors import UserError
from perfpilot.plan import knob_names, load_plan
from perfpilot.tune.budget import stage_share


@pytest.mark.parametrize("text, seconds", [
    ("90", 90), ("90s", 90), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("1.5h", 5400),
    (" 2m 30s ", 150), ("0.5s", 0.5),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text, "--budget") == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "5x", "0s", "-5m", "m", "5m5", "1..5s"])
def test_parse_duration_rejects(text):
    with pytest.raises(UserError, match="--budget"):
        parse_duration(text, "--budget")


def test_parse_stages_keeps_the_stage_order():
    assert parse_stages("loader,hardware") == ["hardware", "loader"]
    with pytest.raises(UserError, match="unknown stage 'warp'"):
        parse_stages("hardware,warp")
    with pytest.raises(UserError, match="no stage"):
        parse_stages(" , ")


def test_budget_shares_follow_weights_and_carry_over():
    stages = ["hardware", "loader"]
    assert stage_share(stages, 0, 90 - 0) == pytest.approx(60)
    assert stage_share(stages, 1, 90 - 50) == pytest.approx(40)  # hardware left 10 s


def _error_line(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_bad_stage_name_is_one_line(capsys):
    assert "unknown stage 'warp'" in _error_line(capsys, ["tune", "digits", "--only", "warp"])


def test_bad_budget_is_one_line(capsys):
    assert "--budget: '5 parsecs'" in _error_line(
        capsys, ["tune", "digits", "--budget", "5 parsecs"])


def test_bad_executor_is_one_line(capsys):
    assert "--executor: 'gpu-farm'" in _error_line(
        capsys, ["tune", "digits", "--executor", "gpu-farm"])


def test_target_without_a_metric_is_one_line(tmp_path, capsys):
    spec = tmp_path / "tiny.py"
    spec.write_text(WORKLOAD)
    err = _error_line(capsys, ["tune", f"{spec}:workload", "--target", "0.9", "--out",
                               str(tmp_path / "out")])
    assert "--target 0.9" in err and "no metric" in err
    assert not (tmp_path / "out").exists()


def test_too_small_budget_is_one_line(capsys):
    assert "too small to tune anything" in _error_line(
        capsys, ["tune", "digits", "--budget", "5s"])


@pytest.mark.parametrize("args, message", [
    (["--budget", "5s"], "too small to tune anything"),
    (["--budget", "5 parsecs"], "--budget: '5 parsecs'"),
    (["--only", "warp"], "unknown stage 'warp'"),
    (["--executor", "gpu-farm"], "--executor: 'gpu-farm'"),
    (["--horizon", "soon"], "--horizon: 'soon'"),
])
def test_a_rejected_option_creates_no_out_dir(tmp_path, capsys, args, message):
    out = tmp_path / "t0"
    assert message in _error_line(capsys, ["tune", "digits", *args, "--out", str(out)])
    assert not out.exists()


def test_ray_executor_without_ray_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    import perfpilot.commands.tune as tune_cmd

    monkeypatch.setattr(tune_cmd, "_ray_installed", lambda: False)
    out = tmp_path / "t0"
    err = _error_line(capsys, ["tune", "digits", "--executor", "ray", "--out", str(out)])
    assert "pip install 'perfpilot[ray]'" in err  # the brackets survive the console
    assert not out.exists()


def test_unwritable_out_dir(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert "not a directory" in _error_line(capsys, ["tune", "digits", "--out", str(blocker)])
    assert "cannot write" in _error_line(capsys, ["tune", "digits", "--out",
                                                  str(blocker / "sub")])


WORKLOAD = textwrap.dedent('''
    import time
    import torch
    from perfpilot import Plan, Workload

    class Slow(torch.utils.data.Dataset):
        def __len__(self):
            return 2048
        def __getitem__(self, i):
            time.sleep(0.001)
            return torch.full((8,), float(i % 5)), torch.tensor(i % 2)

    def loss(model, batch):
        x, y = batch
        return torch.nn.functional.cross_entropy(model(x), y)

    def workload():
        return Workload(name="tiny", model=lambda: torch.nn.Linear(8, 2), train_data=Slow,
                        loss=loss, optimizer=lambda p, lr: torch.optim.SGD(p, lr=lr),
                        baseline=Plan(batch_size=16))
''')


def rec_label(out):
    return json.loads((out / "record.json").read_text())["load_label"]


def test_tune_writes_the_whole_plan_the_record_and_the_report(tmp_path, capsys):
    spec = tmp_path / "tiny.py"
    spec.write_text(WORKLOAD)
    out = tmp_path / "out"
    rc = main(["tune", f"{spec}:workload", "--only", "loader", "--budget", "30s",
               "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "loader" in printed and "report.html" in printed
    raw = json.loads((out / "plan.json").read_text())
    assert set(raw) == {"version", *knob_names(), "load"}  # the whole plan, not a diff
    assert raw["load"] == rec_label(out)  # the load the plan won at (tune.load_label)
    plan = load_plan(out / "plan.json")
    rec = json.loads((out / "record.json").read_text())
    assert rec["workload"]["name"] == "tiny" and rec["plan"] == plan.to_dict()
    assert rec["status"] == "complete" and (out / "report.html").exists()
    (stage,) = rec["stages"]
    assert stage["name"] == "loader" and stage["budget_s"] > 0
    trials = {t["number"]: t for t in rec["trials"]}
    assert all({"state", "reason", "measurements"} <= set(t) for t in trials.values())
    probe = trials[stage["trials"][0]]
    assert probe["plan"]["check"] == "probe" and probe["measurements"]["data_share"] > 0
    fates = {c["fate"] for c in stage["evidence"]["candidates"]}
    assert fates <= {"accepted", "rejected", "skipped"}
    # A second run on the same directory needs --resume, and then repeats nothing.
    assert main(["tune", f"{spec}:workload", "--only", "loader", "--budget", "30s",
                 "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["tune", f"{spec}:workload", "--only", "loader", "--budget", "30s",
                 "--out", str(out), "--resume"]) == 0
    again = json.loads((out / "record.json").read_text())
    assert again["trials"] == rec["trials"] and again["plan"] == rec["plan"]


def test_a_stopped_tuning_still_gets_its_report_from_the_command(tmp_path, capsys):
    # tune() renders nothing; the command renders the record it left, then exits 2.
    from pathlib import Path

    spec = f"{Path(__file__).parent / 'fixtures' / 'tune_tiny.py'}:nan_workload"
    out = tmp_path / "out"
    assert main(["tune", spec, "--only", "loader", "--budget", "40s", "--out", str(out)]) == 2
    assert "non-finite loss" in capsys.readouterr().err
    assert json.loads((out / "record.json").read_text())["status"] == "stopped"
    html = (out / "report.html").read_text()
    assert "This tuning stopped" in html and "non-finite loss" in html


def test_a_rendering_bug_becomes_a_note_in_the_record(tmp_path, monkeypatch):
    from perfpilot.commands.tune import write_tune_report
    from perfpilot.render import tune_html
    from perfpilot.tune_record import TuneRecord

    def broken(rec, path):
        raise RuntimeError("bad svg")

    monkeypatch.setattr(tune_html, "write_report", broken)
    rec = write_tune_report(TuneRecord(status="complete"), tmp_path)
    assert "could not be rendered" in rec.notes[-1] and "bad svg" in rec.report_traceback
    assert TuneRecord.load(tmp_path / "record.json") == rec


def test_the_budget_counts_from_the_process_start_when_the_process_is_the_command(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import psutil

    from perfpilot.commands.tune import command_origin

    entered = time.monotonic()
    started = entered - (time.time() - psutil.Process().create_time())
    monkeypatch.setattr("sys.argv", ["/usr/bin/perfpilot", "tune", "digits"])
    assert command_origin(entered) == pytest.approx(started, abs=0.5)
    monkeypatch.setattr("sys.argv", ["/x/perfpilot/__main__.py", "tune", "digits"])
    assert command_origin(entered) == pytest.approx(started, abs=0.5)
    # Called in-process (here, by pytest): the process's age is not the command's.
    monkeypatch.setattr("sys.argv", ["/usr/bin/pytest", "-q"])
    assert command_origin(entered) == entered
