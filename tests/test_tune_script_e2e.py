"""``tune_script`` end to end on small real scripts (each run is the script in its own
process, as for a user's ``train.py``).

* A script that crashes under every loader candidate: each is rejected with the script's
  own error, the tuning still completes, the plan is empty and no patch is written.
* A script whose loader waits on sleeps: worker processes are proven faster, losses match
  (same seed injected, same math), the patch applies with ``git apply`` and the patched
  script runs plain with the new setting; ``--resume`` recalls every run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from perfpilot.probes.launch import parse_target
from perfpilot.progress import NullProgress
from perfpilot.script_plan import load_script_plan
from perfpilot.script_tune_record import ScriptTuneRecord
from perfpilot.tune.script import tune_script

SRC = str(Path(__file__).resolve().parents[1] / "src")
FIXTURE = Path(__file__).parent / "fixtures" / "scripts" / "io_loader.py"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The fixture script in a git repository of its own (the patch's root)."""
    d = tmp_path / "proj"
    d.mkdir()
    shutil.copy(FIXTURE, d / "train.py")
    if shutil.which("git"):
        for args in (["init", "-q"], ["add", "train.py"],
                     ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x"]):
            subprocess.run(["git", *args], cwd=d, check=True)
    return d


class Started(NullProgress):
    """Counts the runs measured (a recalled run is not started)."""

    def __init__(self) -> None:
        self.started = 0

    def trial_started(self, stage, key) -> None:
        self.started += 1


def _tune(repo: Path, out: Path, *extra: str, budget: float = 240.0, resume: bool = False,
          progress: NullProgress | None = None):
    target = parse_target([sys.executable, str(repo / "train.py"), "--epochs", "50", *extra])
    return tune_script(target, budget_s=budget, out_dir=out, stages=["loader"],
                       window_s=0.5, resume=resume, progress=progress)


def test_a_candidate_that_crashes_the_script_is_rejected_and_the_tuning_goes_on(repo, tmp_path):
    """Through the command line, as a user runs it: summary, report and files."""
    out = tmp_path / "out"
    env = {**os.environ, "COLUMNS": "250", "PYTHONPATH": os.pathsep.join(
        p for p in (SRC, os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.run(
        [sys.executable, "-m", "perfpilot", "tune", "--budget", "4m", "--only", "loader",
         "--out", str(out), "--", sys.executable, str(repo / "train.py"), "--epochs", "50",
         "--crash-in-workers"], capture_output=True, text=True, timeout=400, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no change" in proc.stdout and "rejected" in proc.stdout
    assert (out / "report.html").is_file()
    assert "cannot run in a worker process" in (out / "report.html").read_text()
    rec = ScriptTuneRecord.load(out / "record.json")
    assert rec.status == "complete"
    raced = [c for c in rec.candidates if c.fate != "skipped"]
    assert raced, rec.candidates
    for c in raced:
        assert c.fate == "rejected", c
        assert "cannot run in a worker process" in c.reason
    assert load_script_plan(out / "plan.json").changes == {}
    assert not (out / "train.patch").exists()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_workers_are_proven_faster_and_the_patch_makes_the_script_do_it(repo, tmp_path):
    out = tmp_path / "out"
    rec = _tune(repo, out)
    assert rec.status == "complete", rec.error
    kept = [c for c in rec.candidates if c.fate == "kept"]
    assert kept and rec.result.speedup and rec.result.ci_low > 1.0, rec.candidates
    assert rec.result.changes.get("num_workers", 0) >= 1
    for c in kept:  # same seed, same math: the losses line up
        assert c.parity is not None and c.parity.ok, c.parity
        assert c.parity.max_step_diff is not None and c.parity.max_step_diff < 1e-3
    assert load_script_plan(out / "plan.json").changes == rec.result.changes
    patch = out / "train.patch"
    assert patch.is_file() and rec.patch.edits
    subprocess.run(["git", "apply", str(patch)], cwd=repo, check=True)
    src = (repo / "train.py").read_text()
    assert f"num_workers={rec.result.changes['num_workers']}" in src
    probe = subprocess.run([sys.executable, "-c", (
        "import runpy, sys; import torch.utils.data as d; seen = []\n"
        "orig = d.DataLoader.__init__\n"
        "def init(self, *a, **k):\n    orig(self, *a, **k); seen.append(self.num_workers)\n"
        "d.DataLoader.__init__ = init\n"
        "sys.argv = ['train.py', '--epochs', '1']\n"
        "runpy.run_path('train.py', run_name='__main__'); print('workers', seen)")],
        cwd=repo, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    assert f"workers [{rec.result.changes['num_workers']}]" in probe.stdout
    # the report and the record agree; a resumed tuning repeats no run
    counter = Started()
    again = _tune(repo, out, resume=True, progress=counter)
    assert again.result.changes == rec.result.changes
    assert counter.started == 0
    data = json.loads((out / "record.json").read_text())
    assert data["format"] == "perfpilot.script-tune/1"
