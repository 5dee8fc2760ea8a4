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


def test_ddp_over_spawned_processes_is_followed_into_the_ranks(tmp_path: Path) -> None:
    # The training runs in the ranks mp.spawn starts: the script must do exactly what it
    # does without perfpilot, and the record's steps are a rank's own.
    res, rec, acc = profile(tmp_path, "ddp_spawn.py", _free_port(), quiet=False)
    assert acc == {"optimizer_steps": 30, "ranks": 2}
    model = __import__("torch").load(str(tmp_path / "account.json.pt"), weights_only=False)
    assert "perfpilot" not in repr(type(model).__mro__)
    prof = rec["profile"]
    assert prof["exit_code"] == 0 and prof["hook_errors"] == []
    fol = prof["followed"]
    assert fol["rank"] == 0 and fol["processes"] == 2
    assert sorted(fol["steps"].values()) == [30, 30]
    assert prof["step_kind"] == "optimizer" and prof["steps"] == acc["optimizer_steps"]
    assert rec["step_phases"]["samples_per_step"] == 32
    text = " ".join(res.stdout.split())
    assert "measured in the spawned process rank 0, 1 of 2 the script started" in text


def test_spawn_children_keep_their_own_target_and_loader_workers_are_not_followed():
    import multiprocessing as mp

    from perfpilot.probes.children import _follows, follow_spawned

    ctx = mp.get_context("spawn")
    assert _follows(ctx.Process(target=print), print)
    assert not _follows(mp.get_context("fork").Process(target=print), print)
    from torch.utils.data._utils.worker import _worker_loop

    assert not _follows(ctx.Process(target=_worker_loop), _worker_loop)
    undo = follow_spawned({"out": "/nonexistent/raw.json"})
    try:
        p = ctx.Process(target=print, args=("child ran",))
        p.start()
        p.join(60)
        assert p.exitcode == 0 and p._target is print  # the script's object is as it was
    finally:
        undo()
