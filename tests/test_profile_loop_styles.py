"""`perfpilot profile` on loop styles its own examples do not use: gradient accumulation,
a torch.compile'd model, DistributedDataParallel over 2 spawned processes. The script
must behave as without perfpilot, and the record must agree with the script's own account
of what it ran (where the training runs in the profiled process)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

STYLES = Path(__file__).parent / "fixtures" / "loop_styles"


def profile(tmp: Path, script: str, *args: str, quiet: bool = True
            ) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    record, account = tmp / "record.json", tmp / "account.json"
    res = subprocess.run(
        [sys.executable, "-m", "perfpilot.cli", "profile", *(["--quiet"] if quiet else []),
         "--json", str(record),
         "--", sys.executable, str(STYLES / script), str(account), *args],
        capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr
    assert record.exists() and account.exists(), res.stderr
    return res, json.loads(record.read_text()), json.loads(account.read_text())


def test_gradient_accumulation_counts_optimizer_steps_and_their_samples(tmp_path: Path) -> None:
    _, rec, acc = profile(tmp_path, "accumulate.py")
    assert rec["profile"]["step_kind"] == "optimizer"
    assert rec["profile"]["steps"] == acc["optimizer_steps"] == 64
    # a step is ACCUM micro-batches: its samples are all of them
    assert rec["step_phases"]["samples_per_step"] == acc["samples_per_step"] == 64


def test_a_compiled_model_is_profiled_and_saves_as_without_perfpilot(tmp_path: Path) -> None:
    _, rec, acc = profile(tmp_path, "compiled.py")
    assert rec["profile"]["steps"] == acc["optimizer_steps"] == 150
    assert rec["step_phases"]["samples_per_step"] == acc["samples_per_step"]
    state = __import__("torch").load(str(tmp_path / "account.json.pt"))
    assert not [k for k in state if "perfpilot" in k]


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def test_ddp_over_spawned_processes_runs_unchanged(tmp_path: Path) -> None:
    # The training runs in the spawned ranks, which profile does not follow (yet): what
    # must hold is that the script does exactly what it does without perfpilot.
    res, rec, acc = profile(tmp_path, "ddp_spawn.py", _free_port(), quiet=False)
    assert acc == {"optimizer_steps": 30, "ranks": 2}
    # and the summary says where the training went instead of only "no step was seen"
    assert "Child processes of the script used" in " ".join(res.stdout.split())
    assert (tmp_path / "account.json.pt").stat().st_size > 0
    assert rec["profile"]["exit_code"] == 0 and rec["profile"]["hook_errors"] == []
