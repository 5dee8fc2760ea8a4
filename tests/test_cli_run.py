"""``perfpilot run`` end to end on a tiny workload file written in tmp_path."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from perfpilot.cli import main

WORKLOAD = textwrap.dedent('''
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.data import TensorDataset

    from perfpilot import Plan, Workload


    def _data(n, seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 4, generator=g)
        return TensorDataset(x, (x.sum(1) > 0).long())


    def _accuracy(model, batch):
        return (model(batch[0]).argmax(1) == batch[1]).float().mean().item()


    def workload():
        return Workload(
            name="tinycli", model=lambda: nn.Linear(4, 2),
            train_data=lambda: _data(64, 0), val_data=lambda: _data(32, 1),
            loss=lambda m, b: F.cross_entropy(m(b[0]), b[1]),
            optimizer=lambda params, lr: torch.optim.SGD(params, lr=lr),
            metric=_accuracy, metric_name="acc", target=0.6,
            baseline=Plan(batch_size=8, lr=0.1),
        )


    def diverging():
        calls = []

        def loss(m, b):  # finite for the contract check and 3 steps, then NaN
            calls.append(1)
            out = F.cross_entropy(m(b[0]), b[1])
            return out * float("nan") if len(calls) > 4 else out

        return Workload(
            name="diverging", model=lambda: nn.Linear(4, 2), train_data=lambda: _data(64, 0),
            loss=loss, optimizer=lambda params, lr: torch.optim.SGD(params, lr=lr),
            baseline=Plan(batch_size=8, lr=0.1),
        )


    def no_target():
        return Workload(
            name="notarget", model=lambda: nn.Linear(4, 2), train_data=lambda: _data(16, 0),
            loss=lambda m, b: F.cross_entropy(m(b[0]), b[1]),
            optimizer=lambda params, lr: torch.optim.SGD(params, lr=lr),
        )
''')


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "tiny_wl.py"
    path.write_text(WORKLOAD)
    return f"{path}:workload"


def test_run_prints_the_table_and_writes_the_record(spec, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["run", spec, "--steps", "6", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for text in ("data wait", "forward + loss", "samples/s", "step time", "peak memory",
                 "acc =", "time to target", str(out.name)):
        assert text in printed
    record = json.loads(out.read_text())
    for key in ("schema", "workload", "plan", "steps", "samples_per_s", "step_time_s",
                "phases_s", "peak_memory_bytes", "metric", "time_to_target_s",
                "loss_history", "machine", "engine"):
        assert key in record
    assert record["steps"] == 6 and record["workload"] == "tinycli"
    assert set(record["step_time_s"]) >= {"mean", "median", "ci_low", "ci_high"}
    assert set(record["phases_s"]) == {"data", "h2d", "forward", "backward", "optimizer",
                                       "other"}
    assert set(record["metric"]) >= {"name", "value", "direction", "target", "history"}
    assert not list(tmp_path.glob("*.tmp"))  # written atomically


def test_a_partial_plan_file_fills_in_from_the_baseline(spec, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text('{"batch_size": 16}')
    out = tmp_path / "r.json"
    assert main(["run", spec, "--plan", str(plan), "--steps", "3", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["plan"]["batch_size"] == 16 and record["plan"]["lr"] == 0.1


def test_until_target_with_a_step_cap(spec, tmp_path):
    out = tmp_path / "r.json"
    assert main(["run", spec, "--until-target", "--steps", "40", "--eval-every", "0.001",
                 "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["engine"]["stop_reason"] in ("target", "steps")
    assert len(record["metric"]["history"]) >= 1


def one_line_error(capsys, needle: str) -> str:
    err = capsys.readouterr().err.strip()
    assert needle in err and "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


def test_bad_plan_key_exits_2_with_one_line(spec, tmp_path, capsys):
    plan = tmp_path / "plan.json"
    plan.write_text('{"batch_sise": 16}')
    assert main(["run", spec, "--plan", str(plan), "--steps", "2"]) == 2
    assert "plan.json" in one_line_error(capsys, "batch_sise")


def test_missing_workload_file_exits_2(tmp_path, capsys):
    assert main(["run", f"{tmp_path}/nope.py:workload", "--steps", "2"]) == 2
    one_line_error(capsys, "nope.py")


def test_steps_and_time_together_exit_2(spec, capsys):
    assert main(["run", spec, "--steps", "2", "--time", "1"]) == 2
    one_line_error(capsys, "--steps and --time")


def test_unwritable_output_exits_2_before_training(spec, tmp_path, capsys):
    target = tmp_path / "missing-dir" / "r.json"
    assert main(["run", spec, "--steps", "2", "--json", str(target)]) == 2
    one_line_error(capsys, str(target))


def test_until_target_without_a_target_exits_2(spec, capsys):
    assert main(["run", spec.replace(":workload", ":no_target"), "--until-target"]) == 2
    one_line_error(capsys, "no target")


def test_the_console_script_prints_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "perfpilot.cli", "run", f"{tmp_path}/nope.py:workload"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "nope.py" in proc.stderr and "Traceback" not in proc.stderr


def test_a_diverging_loss_is_one_line_naming_workload_step_and_value(spec, tmp_path, capsys):
    out = tmp_path / "r.json"
    diverging = spec.replace(":workload", ":diverging")
    assert main(["run", diverging, "--steps", "10", "--json", str(out)]) == 2
    err = one_line_error(capsys, "workload 'diverging' diverged")
    assert "the loss is nan at step 4" in err and "lr=0.1" in err and str(out) in err
    record = json.loads(out.read_text())  # what was measured before is kept, marked failed
    assert record["status"] == "failed" and "step 4" in record["error"]
    assert record["steps"] == 3 and len(record["loss_history"]) == 3
    assert record["engine"]["stop_reason"] == "non-finite loss"


def test_a_diverging_loss_without_json_writes_nothing(spec, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", spec.replace(":workload", ":diverging"), "--steps", "10"]) == 2
    one_line_error(capsys, "the loss is nan at step 4")
    assert [p.name for p in tmp_path.iterdir()] == ["tiny_wl.py"]


def test_a_plan_this_machine_cannot_run_names_the_plan_file(spec, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    plan = tmp_path / "gpu.json"
    plan.write_text('{"device": "cuda"}')
    assert main(["run", spec, "--plan", str(plan), "--steps", "2"]) == 2
    err = one_line_error(capsys, f"{plan}: plan key 'device'")
    assert err.count(str(plan)) == 1


def test_brackets_in_an_error_message_are_shown(tmp_path, capsys):
    # rich would take "[ray]" for markup and drop it
    missing = tmp_path / "runs[ray]" / "nope.py"
    assert main(["run", f"{missing}:workload", "--steps", "2"]) == 2
    one_line_error(capsys, str(missing))
