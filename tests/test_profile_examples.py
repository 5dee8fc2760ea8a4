"""Each planted-bottleneck example is named first by `perfpilot profile`; the clean one
raises nothing above 1.1x (no false alarms).

Every example runs once (through the real CLI, in a child process, as a user would run
it); the CUDA-only examples are skipped without a GPU (their rules are unit-tested on
synthetic records in test_diagnose_cuda.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from perfpilot.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "bottlenecks"
CPU_EXAMPLES = {
    "dataloader_bound.py": "dataloader-bound",
    "small_batch.py": "small-batch",
    "python_hotspot.py": "python-hotspot",
    "inefficient_membership.py": "inefficient-membership",
    "repeated_concat.py": "repeated-concat",
    "thread_oversubscription.py": "thread-oversubscription",
    "eval_dominates.py": "eval-dominates",
    "io_in_loop.py": "io-in-loop",
    "grad_in_eval.py": "grad-in-eval",
    "alloc_churn.py": "system-time",
}
CUDA_EXAMPLES = {
    "host_device_sync.py": "host-device-sync",
    "pageable_memcpy.py": "pageable-memcpy",
    "fp32_on_tensor_cores.py": "fp32-on-tensor-cores",
    "gpu_idle.py": "gpu-idle",
    "memory_headroom.py": "memory-headroom",
}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def profile(script: str, tmp: Path) -> dict:
    out = tmp / (Path(script).stem + ".json")
    code = main(["profile", "--quiet", "--json", str(out), "--", sys.executable,
                 str(EXAMPLES / script)])
    assert code == 0
    return json.loads(out.read_text())


def _describe(record: dict) -> str:
    return "; ".join(f"{f['id']} {f['estimated_speedup']:.2f}x"
                     for f in record.get("findings", [])) or "no findings"


def test_every_finding_id_has_an_example():
    from perfpilot.diagnose import RULES

    ids = set(CPU_EXAMPLES.values()) | set(CUDA_EXAMPLES.values())
    assert set(RULES) <= ids
    for script in [*CPU_EXAMPLES, *CUDA_EXAMPLES, "clean.py"]:
        assert (EXAMPLES / script).is_file(), script


_RECORDS: dict[str, dict] = {}  # one profile per example, shared by the tests below


def profile_once(script: str, tmp: Path) -> dict:
    if script not in _RECORDS:
        record = profile(script, tmp)
        if not record["findings"] and script in MEASURED:
            # Its rule speaks only when a timing measured on this machine says so; on a
            # shared CI machine one unlucky measurement can say nothing: profile again once.
            record = profile(script, tmp)
        _RECORDS[script] = record
    return _RECORDS[script]


# Examples whose finding rests on a timing measured at the end of the run (calibration),
# not only on what the run did.
MEASURED = {"thread_oversubscription.py"}


@pytest.mark.parametrize("script", sorted(CPU_EXAMPLES))
def test_example_is_named_first(script, tmp_path):
    record = profile_once(script, tmp_path)
    findings = record["findings"]
    assert findings, (f"{script}: nothing found; threads {record.get('threads')}, "
                      f"calibration {record.get('calibration')}")
    top = findings[0]
    assert top["id"] == CPU_EXAMPLES[script], f"{script}: {_describe(record)}"
    assert top["estimated_speedup"] > 1.1
    assert top["evidence"] and top["fix"]
    if top["location"] is not None:
        assert Path(top["location"]["file"]).name == script


def test_hottest_line_of_the_membership_example_is_the_membership_test(tmp_path):
    # The GIL is handed over at the loop's back edge after `t not in stop_ids` ran; the
    # time belongs to that line, not to `kept.append(t)` below it (issue 21, item 6).
    script = "inefficient_membership.py"
    record = profile_once(script, tmp_path)
    hottest = max(record["hot_lines"], key=lambda h: h["self_share"])
    text = (EXAMPLES / script).read_text().splitlines()[hottest["line"] - 1]
    assert "if t not in stop_ids" in text, (hottest, text)
    assert hottest["self_share"] > 0.3


def test_clean_script_raises_no_alarm(tmp_path):
    record = profile("clean.py", tmp_path)
    loud = [f for f in record["findings"] if f["estimated_speedup"] > 1.1]
    assert not loud, _describe(record)
    assert record["profile"]["steady_steps"] >= 10


@pytest.mark.parametrize("script", sorted(CUDA_EXAMPLES))
def test_cuda_example_is_named_first(script, tmp_path):
    if not _cuda():
        pytest.skip("needs a CUDA GPU")
    record = profile(script, tmp_path)
    assert record["findings"][0]["id"] == CUDA_EXAMPLES[script], _describe(record)
