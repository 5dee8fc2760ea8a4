"""`perfpilot profile` on an unmodified script that saves whole modules, trains without
torch.optim and catches KeyboardInterrupt (tests/fixtures/manual_sgd_lm.py): the record
must agree with the script's own account, and perfpilot must not change what it does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FIXTURE = Path(__file__).parent / "fixtures" / "manual_sgd_lm.py"


def profile(tmp: Path, *opts: str, script_args: tuple[str, ...] = ()
            ) -> tuple[subprocess.CompletedProcess, dict, dict]:
    """Run the fixture under `perfpilot profile`; (process, record, the script's account)."""
    record, account = tmp / "record.json", tmp / "account.json"
    res = subprocess.run(
        [sys.executable, "-m", "perfpilot.cli", "profile", "--quiet", "--json", str(record),
         *opts, "--", sys.executable, str(FIXTURE), "--out", str(account),
         "--ckpt", str(tmp / "model.pt"), *script_args],
        capture_output=True, text=True, timeout=120)
    assert record.exists(), res.stderr
    return res, json.loads(record.read_text()), json.loads(account.read_text())


def test_a_full_run_counts_what_the_script_ran(tmp_path):
    res, rec, acc = profile(tmp_path, script_args=("--epochs", "2", "--exit-code", "3"))
    assert res.returncode == 3, res.stderr  # the script's own exit code
    assert acc["finished"] and acc["caught"] is None and acc["loaded_hooks"] == 0
    # torch.save(model) worked, the script loaded it back with no hook on it, and
    # nothing of perfpilot's is in the file
    assert b"perfpilot" not in (tmp_path / "model.pt").read_bytes()
    prof, phases = rec["profile"], rec["step_phases"]
    assert prof["exit_code"] == 3 and prof["hook_errors"] == []
    # one training step per backward; the NLLLoss module and the no_grad/eval forwards
    # start none
    assert prof["step_kind"] == "backward"
    assert prof["steps"] == rec["steps"] == acc["train_batches"] == 24
    assert prof["boundaries"]["backward"] == acc["train_batches"]
    roots = {r["type"]: r for r in rec["roots"]}
    assert roots["NLLLoss"]["role"] == "loss" and roots["LM"]["role"] == "model"
    # evaluation is kept apart: one pass per epoch (the last also holds the reload)
    assert rec["timeline"]["eval_passes"] >= 2 and rec["timeline"]["eval_s"] > 0
    # samples per step: the batch (dim 1 of the seq-first input), not the bptt length
    assert phases["samples_per_step"] == acc["batch"] == 6
    assert "dim 1" in phases["samples_from"] and "LSTM" in phases["samples_from"]


def test_duration_stop_never_raises_into_the_script(tmp_path):
    res, rec, acc = profile(tmp_path, "--duration", "1.5", script_args=("--forever",))
    assert res.returncode == 0
    assert acc["caught"] is None  # no KeyboardInterrupt (or anything) reached the script
    assert not acc["finally"] and not acc["finished"]  # no user code ran after the window
    assert "perfpilot: the --duration 1.5 s window is over" in res.stderr
    prof = rec["profile"]
    assert prof["stopped"] == "duration" and prof["exit_code"] == 0
    assert not prof["partial"] and prof["hook_errors"] == []
    assert not [r for r in rec["io"] if r["call"] == "torch.load"]
    # the window ends at a step boundary: the step the script was in may be counted
    assert acc["train_batches"] <= prof["steps"] <= acc["train_batches"] + 1


def test_duration_stop_without_a_boundary_ends_the_script_from_outside(tmp_path):
    # After each epoch the script sleeps 4 s (a slow checkpoint): no step boundary comes
    # (--duration counts from the first step, so it ends in the first pause).
    res, rec, acc = profile(tmp_path, "--duration", "1.5",
                            script_args=("--epochs", "3", "--pause", "4"))
    assert res.returncode == 0
    assert acc["caught"] is None and not acc["finally"] and not acc["finished"]
    assert acc["epochs"] == 1
    assert rec["profile"]["stopped"] == "duration"
    assert rec["profile"]["steps"] == acc["train_batches"]


def test_keep_running_lets_the_script_finish_unwatched(tmp_path):
    res, rec, acc = profile(tmp_path, "--duration", "1.5", "--keep-running",
                            script_args=("--epochs", "3", "--pause", "0.8",
                                         "--exit-code", "3"))
    assert res.returncode == 3
    assert acc["finished"] and acc["finally"] and acc["caught"] is None
    assert acc["epochs"] == 3 and acc["train_batches"] == 36
    prof = rec["profile"]
    assert prof["stopped"] == "duration" and prof["exit_code"] == 3
    assert prof["config"]["keep_running"] is True
    assert 0 < prof["steps"] < acc["train_batches"]  # measured the window only
    assert "runs on unwatched" in res.stderr
