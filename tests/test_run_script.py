"""``perfpilot run-script --plan plan.json -- python train.py``: the plan injected, the
script's output and exit code passed through, bad plans one line and exit code 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from perfpilot.cli import main
from perfpilot.script_plan import ScriptPlan

SCRIPT = Path(__file__).parent / "fixtures" / "inject" / "knobs.py"


def plan_file(tmp_path, changes, name="plan.json"):
    path = tmp_path / name
    ScriptPlan(changes=changes, command=("python", "train.py")).save(path)
    return path


def test_plan_injected_output_and_exit_code_pass_through(tmp_path, capfd):
    plan = plan_file(tmp_path, {"cpu_threads": 1, "lr_scale": 2.0, "precision": "tf32",
                                "env": {"PERFPILOT_TEST_ENV": "set"}})
    rec = tmp_path / "rec.json"
    code = main(["run-script", "--plan", str(plan), "--json", str(rec), "--",
                 sys.executable, str(SCRIPT), "--steps", "2", "--exit", "3"])
    out, err = capfd.readouterr()
    assert code == 3
    lines = out.splitlines()
    assert [ln.split()[0] for ln in lines] == ["LOSS", "LOSS", "FACTS"]  # untouched
    facts = json.loads(lines[-1][6:])
    assert facts["env"] == "set" and facts["threads"] == 1
    assert facts["lr_after_init"] == 0.2
    assert "perfpilot: precision not applied: tf32 is a CUDA setting; this run's model " \
           "is on cpu" in err
    data = json.loads(rec.read_text())
    assert set(data["injection"]["applied"]) == {"cpu_threads", "lr_scale"}
    assert [r[2] for r in data["loss_history"]] == [float(ln.split()[2]) for ln in lines[:2]]


def test_quiet_names_nothing_and_a_clean_exit_is_zero(tmp_path, capfd):
    plan = plan_file(tmp_path, {"channels_last": True})
    code = main(["run-script", "--plan", str(plan), "--quiet", "--", sys.executable,
                 str(SCRIPT), "--steps", "1"])
    _, err = capfd.readouterr()
    assert code == 0 and "perfpilot" not in err


def test_bad_plans_are_one_line_and_exit_2(tmp_path, capfd):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "perfpilot.script-plan/1",
                               "changes": {"num_workers": -1}}))
    workload_plan = tmp_path / "wl.json"
    workload_plan.write_text(json.dumps({"version": 1, "batch_size": 8}))
    cases = [(bad, ["bad.json", "'num_workers'"]), (workload_plan, ["workload plan"]),
             (tmp_path / "missing.json", ["missing.json"])]
    for path, words in cases:
        code = main(["run-script", "--plan", str(path), "--", sys.executable, str(SCRIPT)])
        out, err = capfd.readouterr()
        assert code == 2, (path, err)
        assert len(err.strip().splitlines()) == 1 and err.startswith("error:"), err
        assert all(w in err for w in words), err
        assert "FACTS" not in out  # the script never ran
