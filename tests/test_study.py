"""The durable study: recall, refusal of foreign/stale studies, and kill -9 resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from perfpilot.errors import UserError
from perfpilot.trial import Outcome
from perfpilot.tune.study import STUDY_FILE, Study

FP = {"workload": "w", "version": 1}


def test_finished_trials_are_recalled_not_rerun(tmp_path: Path) -> None:
    calls: list[int] = []

    def fn() -> Outcome:
        calls.append(1)
        return Outcome("complete", {"objective": 2.0, "speedup": 1.5})

    s = Study(tmp_path, fingerprint=FP, resume=False)
    first = s.run("hardware", {"candidate": {"precision": "bf16"}}, fn)
    again = s.run("hardware", {"candidate": {"precision": "bf16"}}, fn)
    assert calls == [1] and again == first
    reopened = Study(tmp_path, fingerprint=FP, resume=True)
    assert reopened.run("hardware", {"candidate": {"precision": "bf16"}}, fn) == first
    assert calls == [1]
    assert [t.state for t in reopened.trials()] == ["complete"]


def test_failures_are_data_and_also_recalled(tmp_path: Path) -> None:
    def boom() -> Outcome:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")

    s = Study(tmp_path, fingerprint=FP, resume=False)
    t = s.run("batch", {"batch_size": 4096}, boom)
    assert t.state == "oom" and "out of memory" in t.reason
    s2 = Study(tmp_path, fingerprint=FP, resume=True)
    assert s2.run("batch", {"batch_size": 4096}, lambda: Outcome("complete")).state == "oom"


def test_existing_study_needs_resume(tmp_path: Path) -> None:
    Study(tmp_path, fingerprint=FP, resume=False).run("s", {"k": 1}, lambda: Outcome("complete"))
    with pytest.raises(UserError, match="--resume"):
        Study(tmp_path, fingerprint=FP, resume=False)


def test_foreign_study_is_refused_naming_the_difference(tmp_path: Path) -> None:
    Study(tmp_path, fingerprint=FP, resume=False).run("s", {"k": 1}, lambda: Outcome("complete"))
    with pytest.raises(UserError, match="workload"):
        Study(tmp_path, fingerprint={**FP, "workload": "other"}, resume=True)


WORKER = textwrap.dedent(
    """
    import json, sys, time
    from perfpilot.trial import Outcome
    from perfpilot.tune.study import Study
    out, log, resume = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    s = Study(out, fingerprint={"workload": "w"}, resume=resume)
    def make(i):
        def fn():
            with open(log, "a") as f:
                f.write(json.dumps({"start": i}) + "\\n")
            time.sleep(0.15)
            with open(log, "a") as f:
                f.write(json.dumps({"end": i}) + "\\n")
            return Outcome("complete", {"objective": float(i)})
        return fn
    for i in range(12):
        s.run("stage", {"i": i}, make(i))
    print("DONE", len(s.trials()))
    """
)


def _run_worker(tmp_path: Path, resume: bool) -> subprocess.Popen[str]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    args = [sys.executable, str(script), str(tmp_path / "out"), str(tmp_path / "log"),
            "1" if resume else "0"]
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True)


def _events(tmp_path: Path) -> list[dict[str, int]]:
    p = tmp_path / "log"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


def test_sigkill_then_resume_loses_and_repeats_no_finished_trial(tmp_path: Path) -> None:
    proc = _run_worker(tmp_path, resume=False)
    deadline = time.time() + 60
    while sum("end" in e for e in _events(tmp_path)) < 4 and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_before = {e["end"] for e in _events(tmp_path) if "end" in e}
    assert len(finished_before) >= 4

    proc = _run_worker(tmp_path, resume=True)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "DONE 12" in out
    starts = [e["start"] for e in _events(tmp_path) if "start" in e]
    for i in finished_before:
        # A trial whose end was logged may still have been killed before its result was
        # stored; at most that one (the last) may run twice.
        if i != max(finished_before):
            assert starts.count(i) == 1, f"finished trial {i} ran again"
    s = Study(tmp_path / "out", fingerprint={"workload": "w"}, resume=True)
    keys = [t.plan["i"] for t in s.trials()]
    assert sorted(keys) == list(range(12)), "each trial stored exactly once"


def test_two_tuners_on_one_storage_do_not_corrupt_it(tmp_path: Path) -> None:
    Study(tmp_path / "out", fingerprint={"workload": "w"}, resume=False)
    procs = [_run_worker(tmp_path, resume=True) for _ in range(2)]
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0 and "DONE" in out
    lines = (tmp_path / "out" / STUDY_FILE).read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # every journal line parses
    s = Study(tmp_path / "out", fingerprint={"workload": "w"}, resume=True)
    assert sorted({t.plan["i"] for t in s.trials()}) == list(range(12))


class Seen:
    """An observer that keeps what it was told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def trial_started(self, stage: str, key: dict[str, Any]) -> None:
        self.events.append(("started", key["k"]))

    def trial_finished(self, trial: Any, recalled: bool) -> None:
        self.events.append(("finished", (trial.number, recalled)))


def test_in_memory_study_recalls_and_tells_observers_only_inside_the_block() -> None:
    from perfpilot.trial import TrialLog

    s = Study()  # no directory: the same runner, in memory
    seen, log = Seen(), TrialLog()
    with s.observe(seen), s.observe(log):
        a = s.run("s", {"k": 1}, lambda: Outcome("complete", {"v": 1.0}))
        b = s.run("s", {"k": 1}, lambda: Outcome("failed"))
    s.run("s", {"k": 2}, lambda: Outcome("complete"))
    assert a == b and a.state == "complete" and s.path is None and not s.resumed
    assert seen.events == [("started", 1), ("finished", (0, False)), ("finished", (0, True))]
    assert log.trials() == (a,)
    assert [t.number for t in s.trials()] == [0, 1]
    s.set_note("n", {"x": 1})
    assert s.note("n") == {"x": 1} and s.note("other", 3) == 3


def test_trials_are_stamped_with_the_replay_clock_and_recalls_move_it(tmp_path: Path) -> None:
    from perfpilot.tune.study import CLOCK_KEY, ReplayClock

    now = [0.0]

    def slow() -> Outcome:
        now[0] += 7.0
        return Outcome("complete")

    first = Study(tmp_path, fingerprint=FP, clock=ReplayClock(lambda: now[0]))
    assert first.run("s", {"k": 1}, slow).measurements[CLOCK_KEY] == 7.0
    now[0] = 100.0  # a later process: its clock starts again at 0 and jumps to the stamp
    clock = ReplayClock(lambda: now[0])
    again = Study(tmp_path, fingerprint=FP, resume=True, clock=clock)
    again.run("s", {"k": 1}, slow)
    assert clock.elapsed() == 7.0 and now[0] == 100.0


def test_only_portable_trials_go_to_the_executor_and_placement_is_counted() -> None:
    from perfpilot.execute import InlineExecutor
    from perfpilot.tune.units import Portable

    submitted: list[Any] = []

    class Spy(InlineExecutor):
        kind = "spy"

        def submit(self, fn: Any, *args: Any, timeout_s: float | None = None, **kw: Any) -> Any:
            submitted.append((fn, timeout_s))
            return super().submit(fn, *args, timeout_s=timeout_s, **kw)

    s = Study(executor=Spy())
    s.run("s", {"k": 1}, Portable(_complete, timeout_s=30.0))
    s.run("s", {"k": 2}, lambda: Outcome("complete"))  # a closure stays in this process
    assert submitted == [(_complete, 30.0)] and s.placed == {"spy": 1, "inline": 1}


def _complete() -> Outcome:
    return Outcome("complete")
