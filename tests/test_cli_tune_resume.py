"""A real ``perfpilot tune`` killed with SIGKILL mid-run, then ``--resume``: no finished trial
is lost and none is repeated (checked in the study itself)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "tune_tiny.py"
ENTRY = "from perfpilot.cli import run_cli; run_cli()"


def finished(out: Path) -> dict[str, dict[str, Any]]:
    """identity -> {number, state, count} of every finished trial in DIR's study."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = out / "study.journal"
    if not path.exists() or path.stat().st_size == 0:
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(path),
                                                lock_obj=JournalFileOpenLock(str(path))))
    try:
        study = optuna.load_study(study_name="perfpilot", storage=storage)
    except KeyError:  # the study is being created
        return {}
    seen: dict[str, dict[str, Any]] = {}
    for t in study.get_trials(deepcopy=False):
        if "outcome" not in t.user_attrs:
            continue  # running, or interrupted by the kill: not finished
        ident = t.user_attrs["identity"]
        if ident in seen:
            seen[ident]["count"] += 1
        else:
            seen[ident] = {"number": t.number, "state": t.user_attrs["outcome"]["state"],
                           "count": 1}
    return seen


def start(out: Path, *extra: str) -> subprocess.Popen[str]:
    args = [sys.executable, "-c", ENTRY, "tune", f"{FIXTURE}:slow_data", "--only", "loader",
            "--budget", "30s", "--out", str(out), *extra]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"})


def _wired() -> bool:
    """Whether commands/tune.py runs the pipeline (it has --resume)."""
    import inspect

    from perfpilot.commands.tune import tune_command

    return "resume" in inspect.signature(tune_command).parameters


@pytest.mark.skipif(not _wired(), reason="commands/tune.py is not wired to the pipeline yet "
                    "(handoff pending: see the tune pipeline issue)")
def test_sigkill_then_resume_loses_and_repeats_no_finished_trial(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = start(out)
    deadline = time.time() + 90
    while len(finished(out)) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, f"the tune ended before the kill: {proc.communicate()}"
    os.kill(proc.pid, signal.SIGKILL)
    killed_stdout, _ = proc.communicate(timeout=30)
    before = finished(out)
    assert len(before) >= 2 and not (out / "plan.json").exists()
    # Not a terminal: progress was plain timestamped lines, flushed as they happened, so
    # what was printed before the kill is there (issue 21: silent until the end before).
    assert re.search(r"^\d\d:\d\d:\d\d loader: started", killed_stdout, re.M), killed_stdout
    done = re.findall(r"^\d\d:\d\d:\d\d   trial \d+ (?:baseline|loader): \w+.*time left",
                      killed_stdout, re.M)
    assert len(done) >= len(before) - 1 >= 1, killed_stdout

    resumed = start(out, "--resume")
    stdout, stderr = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, stderr
    after = finished(out)
    for ident, t in before.items():
        assert ident in after, f"finished trial {t['number']} was lost"
        assert after[ident]["number"] == t["number"], f"trial {t['number']} ran again"
    assert all(t["count"] == 1 for t in after.values()), "a finished trial was repeated"
    assert len(after) > len(before)
    rec = json.loads((out / "record.json").read_text())
    assert rec["status"] == "complete" and rec["resumed"] is True
    assert sorted(t["number"] for t in rec["trials"]) == sorted(t["number"]
                                                               for t in after.values())
    assert (out / "plan.json").exists() and (out / "report.html").exists()
    assert "report.html" in stdout
    assert "recalled from the study" in stdout and re.search(
        r"^\d\d:\d\d:\d\d loader: finished in", stdout, re.M), stdout
