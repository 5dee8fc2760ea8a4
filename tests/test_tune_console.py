"""The tune command's terminal summary (formatting only)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from perfpilot.render.tune_console import print_summary
from perfpilot.tune_record import TuneRecord

RECORD = Path(__file__).parent / "fixtures" / "tune_record.json"


def console() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=140, color_system=None)


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
