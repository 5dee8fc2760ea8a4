"""Terminal summary and self-contained HTML report of a profile (from synthetic records)."""

from __future__ import annotations

import dataclasses
import re

from rich.console import Console
from test_diagnose_rules import SCRIPT, changed, hot, record

from perfpilot.record import Finding
from perfpilot.record_sections import Verification
from perfpilot.render import html as h
from perfpilot.render.profile_console import print_profile
from perfpilot.render.profile_html import profile_page


def profiled(tmp_path):
    src = tmp_path / "train.py"
    lines = [f"line_{i} = {i}" for i in range(1, 40)]
    lines[19] = "y = x[idx]  # [bold] is not markup"
    src.write_text("\n".join(lines) + "\n")
    top = Finding("dataloader-bound", "Training waits for data loading",
                  "Waiting for the next batch is 74% of the run.",
                  "DataLoader(..., num_workers=4, persistent_workers=True).", 2.25,
                  location={"file": str(src), "line": 20}, confidence="high", time_share=0.74,
                  verified=Verification(ratio=2.1, ci_low=1.9, ci_high=2.3, n=5,
                                        verdict="faster", change={"num_workers": 4}))
    other = Finding("python-hotspot", "Python-level hot spot in f()", "f() runs Python 5%.",
                    "Vectorize.", 1.05, location={"file": str(src), "line": 7}, time_share=0.05)
    rec = record({"data": 0.06},
                 hot_lines=[{**hot(20, "main", 0.7, 0.0), "file": str(src)}],
                 hot_ops={"steps": 3, "window_s": 0.1, "state": "done",
                          "ops": [{"name": "aten::addmm", "device": "cpu", "count": 6,
                                   "self_s": 0.003, "total_s": 0.004, "per_step": 2}]},
                 memory={"peak_rss_bytes": 300 * 2**20, "series": [[0, 1e8], [1, 2e8],
                                                                    [2, 2e8]]})
    rec = changed(rec, timeline={"startup_s": 2.0, "imports_s": 1.5},
                  profile={"exit_code": 0, "stopped": "end", "argv": [str(src)]})
    return dataclasses.replace(rec, findings=(top, other))


def test_console_puts_the_top_finding_first(tmp_path):
    console = Console(record=True, width=120)
    print_profile(profiled(tmp_path), console)
    text = console.export_text()
    first = text.index("#1 dataloader-bound")
    assert first < text.index("Other findings") < text.index("Step breakdown")
    assert text.index("Step breakdown") < text.index("Hot lines") < text.index("Hot ops")
    assert "~2.25x faster run" in text and "measured 2.10x (95% CI 1.90-2.30" in text
    assert "train.py:20  y = x[idx]  # [bold] is not markup" in text  # escaped source
    assert "startup 2 s (imports 1.5 s)" in text


def test_console_reports_a_crash(tmp_path):
    rec = profiled(tmp_path)
    rec = changed(rec, profile={"exit_code": 1, "steps": 12, "error": {
        "type": "ValueError", "message": "boom", "site": [SCRIPT, 13, "main"]}})
    console = Console(record=True, width=200)
    print_profile(rec, console)
    assert "exited with code 1 (ValueError: boom at train.py:13) after 12 steps" in \
        console.export_text()


def test_html_report_is_self_contained(tmp_path):
    page = profile_page(profiled(tmp_path))
    assert page.startswith("<!DOCTYPE html>")
    for section in ("Findings", "Step breakdown", "Hot lines", "Hot ops", "Run"):
        assert f"<h2>{section}</h2>" in page
    assert page.count("<svg") >= 3  # phase split, wall time, RSS (inline)
    assert not re.search(r"<(script|link|img)\b", page)  # nothing fetched
    assert not re.search(r"""(src|href)=["']https?:""", page)
    assert "&gt;   20  y = x[idx]" in page  # the finding's source, marked
    assert "2.10x measured" in page


def test_page_builder_escapes_and_keeps_svg_ids_apart():
    plots = h.bar_chart(["a"], [1.0]) + h.bar_chart(["b"], [2.0])
    page = h.page("<t>", [h.Section("a&b", h.table(["x"], [["<b>"]])),
                          h.Section("plots", plots)])
    assert "&lt;t&gt;" in page and "a&amp;b" in page and "<td>&lt;b&gt;</td>" in page
    ids = re.findall(r'id="([^"]+)"', page)
    assert len(ids) == len(set(ids))


def test_console_counts_in_the_singular_and_skips_an_empty_step_table():
    one = record(steps=1, threads={"usable_cores": 1, "torch_threads": 1})
    one = changed(one, profile={"step_kind": "optimizer", "steps": 1, "exit_code": 1})
    console = Console(record=True, width=200)
    print_profile(one, console)
    text = console.export_text()
    assert "then 1 steady optimizer step over" in text and "(1 steady step;" in text
    assert "after 1 step;" in text and "torch 1 thread on 1 usable core" in text
    assert "1 steps" not in text

    none = record(steps=0)
    none = changed(none, profile={"step_kind": None, "steps": 0, "exit_code": 1})
    console = Console(record=True, width=200)
    print_profile(none, console)
    text = console.export_text()
    assert "No training step was seen" in text and "before any training step" in text
    assert "Step breakdown" not in text and "0 steady" not in text


def test_thin_findings_are_shown_apart_with_how_to_measure_more(tmp_path):
    from perfpilot.record_sections import Support

    rec = profiled(tmp_path)
    top, other = rec.findings
    top = dataclasses.replace(top, support=Support(
        n=120, unit="steps", needed=20, share_low=0.70, share_high=0.78,
        run_speedup=1.40, steady_fraction=0.3))
    other = dataclasses.replace(other, estimated_speedup=1.30, support=Support(
        n=12, unit="samples", needed=50, own=4, own_needed=20))
    rec = dataclasses.replace(rec, findings=(top, other))
    console = Console(record=True, width=160)
    print_profile(rec, console)
    text = " ".join(console.export_text().split())
    assert "#1 dataloader-bound" in text and "Other findings" not in text
    assert "share 74% (95% CI 70-78%)" in text
    assert "for this run 1.40x (its steady steps were 30% of the wall time" in text
    tail = text[text.index("Not enough evidence"):]
    assert "python-hotspot" in tail and "12 samples in the steady window, 50 needed" in tail
    assert "--duration" in tail
    page = profile_page(rec)
    assert "Not enough evidence: python-hotspot" in page and "Basis:" in page
    # nothing solid: the summary says so instead of naming the thin one as the bottleneck
    only_thin = dataclasses.replace(rec, findings=(other,))
    console = Console(record=True, width=160)
    print_profile(only_thin, console)
    text = console.export_text()
    assert "#1" not in text and "No finding rests on enough measurement" in text
