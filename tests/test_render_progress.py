"""The progress displays: plain timestamped lines without a terminal (injected clock and
stream), the choice between them, and the key figure of a trial."""

from __future__ import annotations

import io
import time

from rich.console import Console

from perfpilot.progress import NullProgress
from perfpilot.render.progress import (
    RUN_EVERY_S,
    LineProgress,
    LiveProgress,
    command_progress,
    key_figure,
)
from perfpilot.trial import Trial

T0 = 1_700_000_000.0


def stamp(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class Flushes(io.StringIO):
    """Counts flushes: every line must be flushed as it is written."""

    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_plain_lines_for_a_tuning() -> None:
    now = [T0]
    out = Flushes()
    p = LineProgress(out, clock=lambda: now[0])
    left = [240.0]
    p.start(240.0, lambda: left[0])
    p.phase("hardware", 96.0)
    now[0] += 12
    left[0] = 200.0
    p.trial_finished(Trial(number=3, stage="hardware", plan={}, state="complete",
                           measurements={"ratio": 1.234, "ci_low": 1.1, "ci_high": 1.39,
                                         "verdict": "faster"},
                           started_at=10.0, finished_at=22.5), recalled=False)
    p.trial_finished(Trial(number=4, stage="hardware", plan={}, state="oom",
                           reason="CUDA out of memory.\nTried to allocate 2 GiB"),
                     recalled=True)
    now[0] += 60
    left[0] = -5.0
    p.phase_done("hardware", "chose precision bf16", 72.0)
    p.stop()
    s0, s1, s2 = stamp(T0), stamp(T0 + 12), stamp(T0 + 72)
    assert out.getvalue().splitlines() == [
        f"{s0} tune: budget 4 min",
        f"{s0} hardware: started, budget 96 s (time left 4:00)",
        f"{s1}   trial 3 hardware: complete, 1.23x [1.10, 1.39] faster, 12.5 s "
        "(time left 3:20)",
        f"{s1}   trial 4 hardware: oom, recalled from the study: CUDA out of memory. Tried "
        "to allocate 2 GiB (time left 3:20)",
        f"{s2} hardware: finished in 72 s: chose precision bf16 (over budget by 0:05)",
        f"{s2} tune: ended after 4.08 min of 4 min",
    ]
    assert out.flushes == 6


def test_plain_lines_for_a_training_run_are_throttled() -> None:
    now = [T0]
    out = io.StringIO()
    p = LineProgress(out, clock=lambda: now[0])
    p.run_started("digits", 100, "steps")
    for step in range(1, 101):
        now[0] += 0.25  # 25 s in all: two lines in between, not a hundred
        p.run_step(step, f"step {step}  loss 0.5")
    p.run_finished()
    lines = out.getvalue().splitlines()
    assert lines[0] == f"{stamp(T0)} run digits: training for 100 steps"
    assert lines[-1] == (f"{stamp(T0 + 25)} run digits: finished at 100/100 steps  "
                         "step 100  loss 0.5")
    assert len(lines) == 2 + int(25 // RUN_EVERY_S)
    assert lines[1].endswith("run digits: 40/100 steps  step 40  loss 0.5")


def test_the_command_chooses_lines_without_a_terminal() -> None:
    assert isinstance(command_progress(io.StringIO()), LineProgress)
    assert isinstance(command_progress(Tty()), LiveProgress)
    assert isinstance(LineProgress(io.StringIO()), NullProgress)  # every method exists


def test_a_closed_stream_does_not_stop_the_measuring() -> None:
    out = io.StringIO()
    out.close()
    LineProgress(out).message("still measuring")


def test_key_figure() -> None:
    assert key_figure({"time_to_target_s": 3.2, "samples_per_s": 10.0}) == "time to target 3.2 s"
    assert key_figure({"samples_per_s": 12345.6}) == "12,346 samples/s"
    assert key_figure({"step_s": 0.0123}) == "step 12.3 ms"
    assert key_figure({"ratio": True}) == ""
    assert key_figure({}) == ""


def test_live_progress_shows_stage_trials_best_and_time_left() -> None:
    con = Console(file=io.StringIO(), force_terminal=True, width=140, color_system=None)
    live = LiveProgress(con)
    left = [90.0]
    live.start(120.0, lambda: left[0])
    live.phase("hardware", 30.0)
    live.message("hardware: precision=bf16 vs incumbent")
    for number, recalled in ((0, False), (1, True)):
        trial = Trial(number=number, stage="hardware", plan={}, state="complete")
        live.trial_finished(trial, recalled=recalled)
    live.best("precision=bf16")
    left[0] = -5.0
    con.print(live)
    live.stop()
    text = con.file.getvalue()
    assert "▸ hardware (budget 30 s)" in text and "trials 1 run, 1 recalled" in text
    assert "best: precision=bf16" in text and "over budget by 0:05" in text
    assert "precision=bf16 vs incumbent" in text


def test_live_progress_is_silent_off_a_terminal() -> None:
    con = Console(file=io.StringIO(), force_terminal=False)
    live = LiveProgress(con)
    live.start(10.0, lambda: 5.0)
    live.phase("loader", 3.0)
    live.stop()
    assert con.file.getvalue() == ""
