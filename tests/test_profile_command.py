"""`perfpilot profile` end to end: pass-through, crashes, windows, workloads, mistakes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from perfpilot.cli import main

TRAIN = """
import sys, torch, torch.nn as nn
torch.set_num_threads(1)
model = nn.Linear(8, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
step = 0
while True:
    opt.zero_grad()
    model(torch.randn(4, 8)).sum().backward()
    opt.step()
    step += 1
    if step == {crash_at}:
        raise ValueError("bad batch at step %d" % step)
"""


def write(tmp: Path, name: str, body: str) -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(body))
    return path


def cli(*args: str) -> subprocess.CompletedProcess:
    """The real console entry point in a subprocess, to see its stdout/stderr/exit code."""
    return subprocess.run([sys.executable, "-m", "perfpilot.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_exit_code_stdout_and_stderr_pass_through(tmp_path):
    script = write(tmp_path, "plain.py", """
        import sys
        print("to stdout", sys.argv[1:])
        print("to stderr", file=sys.stderr)
        sys.exit(3)
    """)
    out = tmp_path / "r.json"
    res = cli("profile", "--json", str(out), "--", sys.executable, str(script), "a", "--b")
    assert res.returncode == 3
    assert "to stdout ['a', '--b']" in res.stdout
    assert "to stderr" in res.stderr
    record = json.loads(out.read_text())
    assert record["profile"]["exit_code"] == 3
    assert record["profile"]["torch_imported"] is False


def test_crash_keeps_the_record_and_says_so(tmp_path):
    script = write(tmp_path, "crash.py", TRAIN.format(crash_at=12))
    out = tmp_path / "r.json"
    res = cli("profile", "--json", str(out), "--", sys.executable, str(script))
    assert res.returncode == 1
    assert "ValueError: bad batch at step 12" in res.stderr  # the script's own traceback
    assert "perfpilot/probes" not in res.stderr  # ...without the runner's frames
    summary = " ".join(res.stdout.split())  # rich wraps lines at the terminal width
    assert "exited with code 1" in summary and "crash.py:13" in summary
    record = json.loads(out.read_text())
    prof = record["profile"]
    assert prof["stopped"] == "crash" and prof["error"]["type"] == "ValueError"
    assert prof["error"]["site"][1] == 13
    assert prof["boundaries"]["optimizer"] == 12  # step 12 stepped, then raised
    assert record["timeline"]["startup_s"] > 0


def test_steps_window_stops_a_long_run(tmp_path):
    script = write(tmp_path, "forever.py", TRAIN.format(crash_at=-1))
    out = tmp_path / "r.json"
    assert main(["profile", "--quiet", "--steps", "5", "--json", str(out), "--",
                 sys.executable, str(script)]) == 0
    record = json.loads(out.read_text())
    assert record["profile"]["stopped"] == "steps"
    assert record["profile"]["steady_steps"] == 5


def test_duration_window_stops_a_script_without_steps(tmp_path):
    script = write(tmp_path, "spin.py", """
        import time
        while True:
            time.sleep(0.01)
    """)
    out = tmp_path / "r.json"
    assert main(["profile", "--quiet", "--duration", "0.3s", "--json", str(out), "--",
                 sys.executable, str(script)]) == 0
    record = json.loads(out.read_text())
    assert record["profile"]["stopped"] == "duration"
    assert record["profile"]["step_kind"] is None


def test_module_form_and_startup_kept_apart(tmp_path, monkeypatch):
    pkg = tmp_path / "pkgx"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    write(pkg, "__main__.py", """
        import torch
        model = torch.nn.Linear(4, 4)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(30):
            opt.zero_grad(); model(torch.randn(2, 4)).sum().backward(); opt.step()
    """)
    out = tmp_path / "r.json"
    monkeypatch.chdir(tmp_path)
    assert main(["profile", "--quiet", "--json", str(out), "--", sys.executable, "-m",
                 "pkgx"]) == 0
    record = json.loads(out.read_text())
    tl = record["timeline"]
    assert tl["imports_s"] > 0 and tl["startup_s"] >= tl["imports_s"] * 0.5
    assert record["profile"]["steady_steps"] >= 20
    # torch's import is startup, never a hot line of the steady run
    assert all("importlib" not in h["file"] for h in record["hot_lines"])


def test_workload_form_with_a_plan(tmp_path):
    pytest.importorskip("perfpilot.engine")
    plan = tmp_path / "p.json"
    plan.write_text('{"batch_size": 16, "cpu_threads": 1}')
    out = tmp_path / "r.json"
    assert main(["profile", "digits", "--plan", str(plan), "--steps", "4", "--quiet",
                 "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["workload"] == "digits" and record["plan"]["batch_size"] == 16
    assert record["profile"]["mode"] == "workload"
    assert record["step_phases"]["samples_per_step"] == 16


@pytest.mark.parametrize("args, message", [
    ([], "nothing to profile"),
    (["--", sys.executable, "missing_script.py"], "script not found"),
    (["a", "b"], "cannot tell what to run"),
])
def test_user_mistakes_are_one_line_errors(args, message, capsys):
    assert main(["profile", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_an_unknown_workload_prints_only_its_error():
    res = cli("profile", "nosuch")
    assert res.returncode == 2
    assert "workload 'nosuch'" in res.stderr and "Traceback" not in res.stderr
    assert "perfpilot profile:" not in res.stdout and "No bottleneck" not in res.stdout
    assert res.stdout.strip() == ""


def test_plan_is_for_workloads_only(tmp_path, capsys):
    script = write(tmp_path, "s.py", "print(1)\n")
    plan = write(tmp_path, "p.json", "{}")
    assert main(["profile", "--plan", str(plan), "--", sys.executable, str(script)]) == 2
    assert "--plan applies to a WORKLOAD" in capsys.readouterr().err


def test_hard_exit_keeps_the_last_periodic_save(tmp_path):
    script = write(tmp_path, "hard.py", """
        import os, time
        t = time.time()
        while time.time() - t < 0.6:
            sum(range(1000))
        os._exit(7)  # no atexit, no finally: only periodic saves survive
    """)
    out = tmp_path / "raw.json"
    env = {**__import__("os").environ,
           "PERFPILOT_PROFILE": json.dumps({"out": str(out), "save_every_s": 0.2})}
    res = subprocess.run([sys.executable, "-m", "perfpilot.probes.bootstrap", str(script)],
                         env=env, timeout=60)
    assert res.returncode == 7
    from perfpilot.probes.assemble import build_record

    record = build_record(json.loads(out.read_text()))
    assert record.profile.partial is True
    assert record.stack_samples.total > 0


def test_a_child_that_leaves_no_profile_passes_its_code_through(tmp_path):
    script = write(tmp_path, "quick_exit.py", "import os\nos._exit(5)\n")
    res = cli("profile", "--", sys.executable, str(script))
    assert res.returncode == 5
    assert "left no profile: it exited with code 5" in " ".join(res.stderr.split())


def test_a_script_that_fails_before_any_step_shows_no_step_table(tmp_path):
    script = write(tmp_path, "early.py", """
        import torch
        raise ValueError("bad config [x]")
    """)
    res = cli("profile", "--", sys.executable, str(script))
    assert res.returncode == 1
    summary = " ".join(res.stdout.split())
    assert "No training step was seen" in summary and "before any training step" in summary
    assert "bad config [x]" in summary
    for absent in ("Step breakdown", "0 steady", "no steps seen", "0 steps"):
        assert absent not in summary


def test_one_step_is_singular(tmp_path):
    script = write(tmp_path, "crash1.py", TRAIN.format(crash_at=1))
    res = cli("profile", "--", sys.executable, str(script))
    assert res.returncode == 1
    summary = " ".join(res.stdout.split())
    assert "then 1 steady optimizer step over" in summary
    assert "after 1 step;" in summary and "(1 steady step;" in summary
    assert "1 steps" not in summary


def test_a_path_with_brackets_is_shown_as_is(tmp_path):
    script = write(tmp_path, "exit[ray].py", "import os\nos._exit(5)\n")
    res = cli("profile", "--", sys.executable, str(script))
    assert res.returncode == 5
    assert "exit[ray].py left no profile" in res.stderr


def test_help_states_the_default_length_of_a_workload_run():
    from perfpilot.probes.target import WORKLOAD_DEFAULT_S

    res = subprocess.run([sys.executable, "-m", "perfpilot.cli", "profile", "--help"],
                         capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "COLUMNS": "200"})
    assert res.returncode == 0
    assert f"WORKLOAD trains for {WORKLOAD_DEFAULT_S:g} s" in " ".join(res.stdout.split())


def test_verify_sets_the_measured_result_on_the_verified_findings(monkeypatch):
    import dataclasses

    from test_diagnose_rules import record

    from perfpilot.commands import profile as cmd
    from perfpilot.probes import verify
    from perfpilot.record import Finding
    from perfpilot.record_sections import Verification

    fixable = Finding("dataloader-bound", "t", "e", "f", 2.0,
                      plan_change={"num_workers": 2})
    other = Finding("python-hotspot", "t", "e", "f", 1.5)
    rec = dataclasses.replace(record(), findings=(fixable, other))
    measured = Verification(change={"num_workers": 2}, ratio=1.8, ci_low=1.7, ci_high=1.9,
                            n=5)
    monkeypatch.setattr(verify, "verify_finding", lambda *a, **k: measured)
    cmd._verify(None, rec, steps=None)
    assert rec.findings == (dataclasses.replace(fixable, verified=measured), other)


def test_steps_window_counts_steady_steps_of_a_dataloader_loop(tmp_path):
    # Warm-up ends at a DataLoader's third fetch, inside step 2: the window must count the
    # steps the record counts as steady (those begun after warm-up), not one more.
    script = write(tmp_path, "loader_forever.py", """
        import torch
        from torch.utils.data import DataLoader, TensorDataset
        data = TensorDataset(torch.randn(4096, 8), torch.randn(4096, 1))
        model = torch.nn.Linear(8, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        while True:
            for x, y in DataLoader(data, batch_size=16):
                opt.zero_grad()
                torch.nn.functional.mse_loss(model(x), y).backward()
                opt.step()
    """)
    out = tmp_path / "r.json"
    assert main(["profile", "--quiet", "--steps", "4", "--json", str(out), "--",
                 sys.executable, str(script)]) == 0
    record = json.loads(out.read_text())
    assert record["profile"]["stopped"] == "steps"
    assert record["profile"]["steady_steps"] == 4
