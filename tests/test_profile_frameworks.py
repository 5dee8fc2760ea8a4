"""`perfpilot profile` on training run by a framework's own loop: Lightning's ``Trainer``
(forward and backward inside ``optimizer.step(closure)``, a sanity check and validation
passes) and Hugging Face's ``Trainer`` (a tiny BERT built from a config, called with
keyword arguments only, evaluation every few steps). As in test_profile_loop_styles, the
script writes its own account of what it ran, and the record must agree with it; what
the script saves must be saved, with nothing of perfpilot's in it. Skipped where the
framework is not installed (both are in the dev extra)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_profile_loop_styles import profile


def _clean(path: Path) -> None:
    assert path.stat().st_size > 0
    assert b"perfpilot" not in path.read_bytes(), path


def test_lightning_trainer_steps_validation_and_closure_phases(tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    _, rec, acc = profile(tmp_path, "lightning_trainer.py")
    prof, phases = rec["profile"], rec["step_phases"]
    assert prof["exit_code"] == 0 and prof["hook_errors"] == []
    # one step per optimizer step Lightning ran; validation forwards start none
    assert prof["step_kind"] == "optimizer"
    assert prof["steps"] == acc["optimizer_steps"] == acc["train_batches"] == 12
    assert phases["samples_per_step"] == acc["samples_per_step"] == 16
    # validation is kept apart: its loader is the eval one, its passes are evaluation
    # (the sanity check runs before training: startup, not a pass of the steady window)
    roles = {ld["role"]: ld["batches"] for ld in rec["loaders"]}
    assert roles == {"train": acc["train_batches"], "eval": acc["all_val_batches"]}
    assert rec["timeline"]["eval_passes"] == acc["val_passes"] == 2
    assert rec["timeline"]["eval_s"] > 0
    # training_step runs inside optimizer.step(closure): its own code (the sleep) is
    # "other", and the optimizer phase is the update only
    per = phases["per_step_s"]
    assert per["other"] >= 0.9 * acc["log_s"]
    assert per["optimizer"] < acc["log_s"] / 2
    assert per["forward"] > 0 and per["backward"] > 0
    _clean(tmp_path / "account.json.ckpt")
    state = __import__("torch").load(str(tmp_path / "account.json.ckpt"), weights_only=False)
    assert state["global_step"] == acc["optimizer_steps"]


def test_hugging_face_trainer_steps_eval_and_saved_model(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    _, rec, acc = profile(tmp_path, "hf_trainer.py")
    prof, phases = rec["profile"], rec["step_phases"]
    assert prof["exit_code"] == 0 and prof["hook_errors"] == []
    assert prof["step_kind"] == "optimizer"
    assert prof["steps"] == acc["optimizer_steps"] == 12
    assert phases["samples_per_step"] == acc["samples_per_step"] == 8
    # evaluation every EVAL_EVERY steps and at the end: evaluation, not training steps
    assert rec["timeline"]["eval_passes"] == acc["eval_passes"] == 3
    evals = sum(ld["batches"] for ld in rec["loaders"] if ld["role"] == "eval")
    assert evals == acc["eval_batches"]
    model = {r["type"]: r for r in rec["roots"]}["BertForSequenceClassification"]
    assert model["role"] == "model"
    # trainer.save_model wrote the model, its config and its pickled arguments
    saved = tmp_path / "account.json.model"
    for name in ("config.json", "model.safetensors", "training_args.bin"):
        _clean(saved / name)
    __import__("torch").load(str(saved / "training_args.bin"), weights_only=False)
