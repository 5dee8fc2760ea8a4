"""build_record: raw profile -> RunRecord (steady steps, timeline, hot lines)."""

from __future__ import annotations

import pytest

from perfpilot.probes.assemble import build_record, expand_stacks, hot_lines, import_seconds
from perfpilot.record import RunRecord
from perfpilot.record_sections import StackSamples

USER = "/home/me/train.py"
LIB = "/usr/lib/python3.11/site-packages/torch/nn/modules/module.py"


def step(start: float, phases: dict, samples: int = 32, excluded: bool = False) -> dict:
    return {"start": start, "end": start + sum(phases.values()), "phases": phases,
            "samples": samples, "excluded": excluded}


def raw(**over) -> dict:
    steps = [step(1.0 + 0.1 * i, {"data": 0.06, "forward": 0.02, "backward": 0.02})
             for i in range(10)]
    steps[5]["excluded"] = True  # the profiler window
    steps[7]["phases"]["eval"] = 0.5  # an eval pass inside this step's interval
    base = {
        "format": "perfpilot.profile-raw/1", "argv": [USER, "--lr", "1"], "mode": "script",
        "exit_code": 0, "stopped": "end", "error": None, "partial": False,
        "config": {"overrides": {}},
        "tracker": {
            "step_kind": "optimizer", "boundaries": {"optimizer": 10, "data": 10, "forward": 10},
            "steps": steps,
            "clock": {"process_start": 0.0, "script_start": 0.1, "first_activity": 1.0,
                      "warmup_end": 1.2, "last_activity": 2.6, "end": 2.7},
            "eval": {"seconds": 0.5, "count": 1, "segments": [[1.8, 2.3, 0.5]]},
            "profiled_s": 0.1, "skipped_s": 0.0,
        },
        "stacks": {"interval_s": 0.005, "total": 4, "seconds": 1.0, "busy_s": 0.01,
                   "files": [USER, LIB, "<frozen importlib._bootstrap>"],
                   "stacks": [
                       {"thread": "MainThread", "tag": "data", "count": 2, "seconds": 0.6,
                        "python_s": 0.0, "handoff_s": 0.0,
                        "frames": [[0, 10, "<module>"], [0, 3, "__getitem__"]]},
                       {"thread": "MainThread", "tag": "forward", "count": 1, "seconds": 0.3,
                        "python_s": 0.3, "handoff_s": 0.0,
                        "frames": [[0, 12, "<module>"], [1, 1500, "_call_impl"]]},
                       {"thread": "MainThread", "tag": "other", "count": 1, "seconds": 0.1,
                        "python_s": 0.0, "handoff_s": 0.1,
                        "frames": [[0, 14, "<module>"]]},
                       {"thread": "MainThread", "tag": "startup", "count": 1,
                        "seconds": 0.4, "python_s": 0.0, "handoff_s": 0.0,
                        "frames": [[0, 1, "<module>"], [2, 1000, "_find_and_load"]]},
                       {"thread": "pin", "tag": "", "count": 4, "seconds": 1.0,
                        "python_s": 0.0, "handoff_s": 0.0, "frames": [[0, 30, "pin"]]},
                   ]},
        "hooks": {"loaders": [{"role": "train", "batches": 10, "num_workers": 0}],
                  "io": [], "grad_in_eval": {"calls": [], "grad_over_nograd": []},
                  "optimizers": [{"type": "SGD", "steps": 10}], "errors": []},
        "memory": {"peak_rss_bytes": 123},
        "threads": {"usable_cores": 2}, "calibration": {},
    }
    base.update(over)
    return base


def test_core_fields_describe_steady_steps():
    rec = build_record(raw())
    # steps 0-1 are warm-up (start < 1.2), step 5 is in the profiler window
    assert rec.profile.steady_steps == 7
    assert rec.step_time_s.median == pytest.approx(0.1)
    assert rec.phases_s["data"] == pytest.approx(0.06)
    assert set(rec.phases_s) == {"data", "h2d", "forward", "backward", "optimizer", "other"}
    assert rec.samples_per_s == pytest.approx(320.0)
    assert rec.workload == "train.py" and rec.peak_memory_bytes == 123
    assert rec.step_phases.per_step_s["eval"] == pytest.approx(0.5 / 7)


def test_timeline_separates_startup_and_evaluation():
    tl = build_record(raw()).timeline
    assert tl.startup_s == pytest.approx(1.0)
    assert tl.imports_s == pytest.approx(0.4)
    assert tl.warmup_s == pytest.approx(0.2)
    assert tl.steady_s == pytest.approx(2.7 - 1.2 - 0.1)
    assert tl.eval_s == pytest.approx(0.5) and tl.eval_passes == 1


def test_hot_lines_contract_and_handoffs():
    lines = {(h.file, h.line): h for h in build_record(raw()).hot_lines}
    getitem = lines[(USER, 3)]
    # the steady window's main-thread time is 1.0 s (startup and other threads left out)
    assert getitem.self_share == pytest.approx(0.6)
    assert getitem.tags == {"data": 0.6}
    fwd = lines[(USER, 12)]
    assert fwd.self_share == pytest.approx(0.3)
    assert fwd.python_share == pytest.approx(0.3)
    assert fwd.own_python_share == 0.0  # the Python ran in torch's module code
    # a hand-off sample counts for the frames above its leaf line only
    assert lines[(USER, 14)].self_share == 0.0
    assert all(h.file == USER for h in lines.values())
    assert fwd.function == "<module>" and fwd.total_share >= fwd.self_share


def test_record_round_trips_through_json(tmp_path):
    rec = build_record(raw())
    path = tmp_path / "r.json"
    rec.save(path)
    again = RunRecord.load(path)
    assert again == rec
    frames = again.stack_samples.stacks[0].frames
    assert frames[0][0] == USER  # contract: absolute paths in every frame


def test_crash_and_partial_records_keep_what_ran():
    data = raw(exit_code=1, stopped="crash", partial=True,
               error={"type": "ValueError", "message": "x", "site": [USER, 9, "f"]})
    prof = build_record(data).profile
    assert prof.exit_code == 1 and prof.partial and prof.error["site"][1] == 9


def test_expand_and_imports():
    stacks = expand_stacks(raw()["stacks"])
    assert stacks["stacks"][0]["frames"][0] == [USER, 10, "<module>"]
    assert import_seconds(StackSamples.from_dict(stacks)) == pytest.approx(0.4)
    assert hot_lines(StackSamples()) == ()
