"""The tune command's terminal output: live progress and the summary (formatting only)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from perfpilot.render.tune_console import LiveProgress, print_summary
from perfpilot.trial import Trial
from perfpilot.tune_record import TuneRecord

RECORD = Path(__file__).parent / "fixtures" / "tune_record.json"


def console() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=140, color_system=None)


def test_live_progress_shows_stage_trials_best_and_time_left() -> None:
    con = console()
    live = LiveProgress(con)
    left = [90.0]
    live.start(120.0, lambda: left[0])
    live.phase("hardware", 30.0)
    live.message("hardware: precision=bf16 vs incumbent")
    live.trial(Trial(number=0, stage="hardware", plan={}, state="complete"), recalled=False)
    live.trial(Trial(number=1, stage="hardware", plan={}, state="complete"), recalled=True)
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


def test_summary_names_the_result_the_changes_and_the_files() -> None:
    rec = json.loads(RECORD.read_text())
    con = console()
    print_summary(TuneRecord.load(RECORD), Path("out"), con, wrote_plan=True)
    text = con.file.getvalue()
    ttt = rec["final"]["time_to_target"]
    assert f"{ttt['ratio']:.2f}x" in text and rec["final"]["claim"][:40] in text.replace(
        "\n", " ")
    assert "cpu_threads None -> 1" in text and "out/plan.json" in text
    assert "out/report.html" in text
