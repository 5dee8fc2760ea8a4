"""The pure parts of ``benchmarks/tune_scripts.py`` and ``benchmarks/tune_reads.py``:
reading what train-doctor fix and perfpilot tune wrote (synthetic outputs in their
documented shapes), the A/B arithmetic, the patch check, the commands and the table with
its "pending" row for a perfpilot that gave no figures. No tool is run."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str, file: str):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / file)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def TS():
    return _load("bench_tune_scripts", "tune_scripts.py")


@pytest.fixture(scope="module")
def TR():
    return _load("tune_reads", "tune_reads.py")


def _td_doc(tmp: Path, proven: bool) -> dict:
    patch = tmp / "loader_bound.fix.patch"
    patch.write_text("--- a/loader_bound.py\n+++ b/loader_bound.py\n@@ -1 +1 @@\n-x\n+y\n")
    ratio = {"point": 1.31, "low": 1.2, "high": 1.4, "n_pairs": 5}
    cand = {"candidate": "dataloader_workers", "env": {"TRAIN_DOCTOR_FIX_NUM_WORKERS": "2"},
            "decision": "keep" if proven else "reject", "reason": "faster", "ratio": ratio,
            "loss_check": {"status": "identical"}}
    doc = {"kind": "fix", "candidates": [cand], "suggestions": [{"id": "persistent_workers"}],
           "headline": "loader_bound: 1.31x faster", "proven": None}
    if proven:
        doc["proven"] = {"candidate": "dataloader_workers", "describe": "num_workers=2",
                         "ratio": ratio, "loss_check": {"status": "identical"}}
        doc["patch"] = {"patch_path": str(patch), "target": "/x/loader_bound.py"}
    return doc


def test_train_doctor_proven_change_is_read_from_its_json(TR, tmp_path):
    out = "progress line\n" + json.dumps(_td_doc(tmp_path, True), indent=2)
    got = TR.read_train_doctor(out)
    assert got["accepted"] and got["error"] is None
    assert (got["speedup"], got["ci_low"], got["ci_high"], got["rounds"]) == (1.31, 1.2, 1.4, 5)
    assert got["changes"] == {"num_workers": 2}
    assert got["candidates"][0]["fate"] == "keep" and got["patch_empty"] is False
    assert got["suggestions"] == ["persistent_workers"]


def test_train_doctor_without_a_win_keeps_nothing_and_falls_back_to_fix_json(TR, tmp_path):
    run = tmp_path / "runs" / "fix-1"
    run.mkdir(parents=True)
    (run / "fix.json").write_text(json.dumps(_td_doc(tmp_path, False)))
    got = TR.read_train_doctor("no json here", tmp_path / "runs")
    assert not got["accepted"] and got["speedup"] is None and got["patch_path"] is None
    assert got["candidates"][0]["fate"] == "reject" and got["candidates"][0]["ratio"] == 1.31
    assert TR.read_train_doctor("", None)["error"]


def test_perfpilot_record_plan_and_patch_are_read(TR, tmp_path):
    assert "no record.json" in TR.read_perfpilot(tmp_path)["error"]
    (tmp_path / "record.json").write_text(json.dumps({"format": "other"}))
    assert "format" in TR.read_perfpilot(tmp_path)["error"]
    rec = {"format": "perfpilot.script-tune/1", "elapsed_s": 290.0,
           "result": {"changes": {"num_workers": 1, "cpu_threads": 1}, "speedup": 1.4,
                      "ci_low": 1.3, "ci_high": 1.5, "verdict": "faster", "rounds": 6},
           "candidates": [{"name": "w1", "changes": {"num_workers": 1}, "fate": "kept",
                           "reason": "", "ratio": 1.2, "ci_low": 1.1, "ci_high": 1.3}],
           "patch": {"edits": [], "launcher": {"cpu_threads": "no set_num_threads call"}}}
    (tmp_path / "record.json").write_text(json.dumps(rec))
    (tmp_path / "train.patch").write_text("")
    (tmp_path / "plan.json").write_text("{}")
    got = TR.read_perfpilot(tmp_path)
    assert got["accepted"] and got["speedup"] == 1.4 and got["rounds"] == 6
    assert got["changes"] == {"num_workers": 1, "cpu_threads": 1}
    assert got["patch_empty"] is True and got["launcher"] == {"cpu_threads":
                                                               "no set_num_threads call"}
    rec["result"]["verdict"] = "same"
    (tmp_path / "record.json").write_text(json.dumps(rec))
    assert not TR.read_perfpilot(tmp_path)["accepted"]


def test_ab_summary_ratio_interval_and_sign_count(TR):
    orig = [{"wall_s": 10.0 + i, "step_s": 0.2} for i in range(5)]
    patched = [{"wall_s": (10.0 + i) / 1.25, "step_s": 0.1 if i else 0.3} for i in range(5)]
    got = TR.ab_summary(orig, patched)
    assert got["wall"]["speedup"] == pytest.approx(1.25)
    assert got["wall"]["ci_low"] <= 1.25 <= got["wall"]["ci_high"]
    assert got["wall"]["faster_rounds"] == 5 and got["step"]["faster_rounds"] == 4
    assert got["step"]["speedup"] == pytest.approx(2.0)
    few = TR.ab_summary(orig[:3], patched[:3])  # under 5 rounds: the median, no interval
    assert few["wall"]["speedup"] == pytest.approx(1.25) and few["wall"]["ci_low"] is None


def test_patch_check_applies_a_folder_relative_patch_to_a_clean_copy(TS, tmp_path):
    src = tmp_path / "proj"
    src.mkdir()
    (src / "train.py").write_text("a = 1\nb = 2\n")
    patch = tmp_path / "p.patch"
    patch.write_text("--- a/train.py\n+++ b/train.py\n@@ -1,2 +1,2 @@\n-a = 1\n+a = 3\n b = 2\n")
    entry = {"path": str(src / "train.py")}
    check, patched = TS.patch_check(entry, str(patch), tmp_path / "scratch", "t")
    assert check["applies"] is True and patched.read_text() == "a = 3\nb = 2\n"
    assert (src / "train.py").read_text() == "a = 1\nb = 2\n"  # the original is untouched
    patch.write_text(patch.read_text().replace("-a = 1", "-a = 9"))
    check, patched = TS.patch_check(entry, str(patch), tmp_path / "scratch2", "t")
    assert check["applies"] is False and patched is None
    assert TS.patch_check(entry, None, tmp_path, "t")[0]["why"] == "no patch written"


def test_commands_stop_and_pending_row(TS):
    td = TS.tool_command("train-doctor", "PY", "TD", Path("s.py"), ["--x"], Path("O"), "5m")
    assert td[:2] == ["TD", "fix"] and "--json" in td and td[-3:] == ["PY", "s.py", "--x"]
    pp = TS.tool_command("perfpilot", "PY", "TD", Path("s.py"), [], Path("O"), "2m")
    assert pp[pp.index("--budget") + 1] == "2m" and pp[pp.index("--out") + 1] == "O"
    assert pp[pp.index("--") + 1:] == ["PY", "s.py"]
    assert TS.stop_for(TS.EXAMPLE, quick=False) == "optimizer:60"
    assert TS.stop_for(TS.EXAMPLE, quick=True) == "optimizer:30"
    scripts = {"loader_bound": {"tools": {
        "perfpilot": {"error": "no record.json", "wall_s": 1.0},
        "train-doctor": {"accepted": True, "speedup": 1.3, "ci_low": 1.2, "ci_high": 1.4,
                         "changes": {"num_workers": 2}, "wall_s": 300.0,
                         "patch": {"applies": True},
                         "ab": {"step": {"speedup": 1.25, "ci_low": 1.1, "ci_high": 1.3,
                                         "faster_rounds": 5, "n": 5}}}}}}
    body = TS.rows(scripts)
    assert TS.PENDING in body[0][3] and body[0][1] == "perfpilot"
    assert body[1][5] == "yes" and body[1][7] == "applies" and "5/5" in body[1][8]
