"""The script tuning's renderers (terminal summary, HTML report) and ``perfpilot report`` on
a script record: records of several shapes built here, every key figure asserted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from rich.console import Console

from perfpilot.cli import main
from perfpilot.render.script_tune_console import BUSY, print_script_summary
from perfpilot.render.script_tune_html import NO_PLOT, script_report_page, write_script_report
from perfpilot.script_tune_record import (
    Baseline,
    Candidate,
    Parity,
    PatchInfo,
    Result,
    ScriptTuneRecord,
)

OUT = Path("out")
LAUNCH = "perfpilot run-script --plan out/plan.json -- python train.py --epochs 3"


def baseline() -> Baseline:
    return Baseline(seconds_per_sample=(0.0121, 0.0125, 0.0119, 0.0122), startup_s=2.5,
                    step_s=0.39, samples_per_step=32.0,
                    phases={"data": 0.62, "forward": 0.2, "backward": 0.15, "optimizer": 0.03},
                    findings=({"id": "dataloader-bound", "title": "The loop waits for data",
                               "estimated_speedup": 1.8, "plan_change": {"num_workers": 2}},),
                    loader_sites=(("train.py", 41),), threads=2, usable_cores=2)


def kept() -> Candidate:
    return Candidate(name="workers-2", changes={"num_workers": 2, "cpu_threads": 1},
                     source="finding:dataloader-bound", fate="kept",
                     reason="faster (interval above 1) and its losses match",
                     ratio=1.2134, ci_low=1.121, ci_high=1.304, rounds=7,
                     seconds_per_sample=(0.0101, 0.0099, 0.0102, 0.01),
                     parity=Parity(ok=True, baseline_loss=0.6931, candidate_loss=0.6931,
                                   tolerance=0.0, steps=40, max_step_diff=0.0, rule="exact"))


def slower() -> Candidate:
    return Candidate(name="threads-1", changes={"cpu_threads": 1}, source="search:threads",
                     fate="slower", reason="its interval is below 1", ratio=0.91,
                     ci_low=0.85, ci_high=0.97, rounds=5,
                     seconds_per_sample=(0.0133, 0.0135, 0.0131))


def parity_reject() -> Candidate:
    return Candidate(name="bf16", changes={"precision": "bf16"}, source="search:precision",
                     fate="rejected",
                     reason="losses differ: window mean 0.912 vs 0.693 (tolerance 0.05)",
                     ratio=1.4, ci_low=1.3, ci_high=1.5, rounds=3,
                     seconds_per_sample=(0.008, 0.0082, 0.0081),
                     parity=Parity(ok=False, baseline_loss=0.6931, candidate_loss=0.9124,
                                   tolerance=0.05, steps=40, max_step_diff=0.4,
                                   rule="window mean within 0.05"))


def skipped() -> Candidate:
    return Candidate(name="pin-memory", changes={"pin_memory": True}, source="search:loader",
                     fate="skipped", reason="pin_memory needs a CUDA device")


def losses(*names: str) -> dict[str, list[list[float]]]:
    out = {"baseline": [[s, 1.0 / (s + 1)] for s in range(10)]}
    for n in names:
        bump = 0.3 if n == "bf16" else 0.0
        out[n] = [[s, 1.0 / (s + 1) + bump] for s in range(10)]
    return out


def complete() -> ScriptTuneRecord:
    return ScriptTuneRecord(
        command=("python", "train.py", "--epochs", "3"), status="complete", budget_s=600.0,
        elapsed_s=412.0, window_steps=40, seed=7, baseline=baseline(),
        candidates=(kept(), slower(), parity_reject(), skipped()),
        result=Result(changes={"num_workers": 2, "cpu_threads": 1}, speedup=1.2134,
                      ci_low=1.121, ci_high=1.304, verdict="faster", rounds=7,
                      startup_delta_s=0.8, horizon_s=3600.0, run_speedup=1.19,
                      summary="num_workers=2 and cpu_threads=1 re-measured together"),
        losses=losses("workers-2", "bf16", "tuned"),
        patch=PatchInfo(file="train.patch", edits=("train.py:41 DataLoader(num_workers=2)",),
                        launcher={"cpu_threads": "set inside a library the patch cannot edit"}),
        machine={"cores": 2, "load_before": 3.1, "load_after": 2.4, "cpu": "Xeon"},
        notes=("the script's first epoch is slower",), versions={"torch": "2.4.0"})


def no_gain() -> ScriptTuneRecord:
    return complete().replace(candidates=(slower(), skipped()), result=Result(),
                              losses=losses(), patch=PatchInfo(),
                              machine={"cores": 8, "load_before": 0.5}, notes=())


def interrupted() -> ScriptTuneRecord:
    pending = Candidate(name="workers-4", changes={"num_workers": 4},
                        source="search:workers×threads", fate="pending", rounds=1,
                        seconds_per_sample=(0.011,))
    return complete().replace(status="interrupted", candidates=(slower(), pending),
                              result=Result(), patch=PatchInfo(), machine={}, losses={})


def failed() -> ScriptTuneRecord:
    return ScriptTuneRecord(command=("python", "train.py"), status="failed",
                            error="the baseline exited with code 1: ModuleNotFoundError: "
                                  "No module named 'foo'")


def render_console(rec: ScriptTuneRecord) -> str:
    con = Console(record=True, width=120)
    print_script_summary(rec, OUT, con)
    return con.export_text()


def test_complete_with_a_gain_in_the_terminal() -> None:
    text = render_console(complete())
    assert "train.py: 1.21x faster (95% CI 1.12-1.30, 7 rounds) with num_workers=2, " \
           "cpu_threads=1" in text
    assert "12.2 ms -> 10.1 ms" in text  # baseline median -> the kept candidate's median
    for c in complete().candidates:
        assert c.name in text and c.reason in text and c.fate in text
    assert "1.21x [1.12-1.30], 7 rounds" in text and "0.91x [0.85-0.97]" in text
    assert "git apply out/train.patch" in text and "train.py:41 DataLoader" in text
    assert LAUNCH in text and "cpu_threads: set inside a library" in text
    assert "load average 3.10 before, 2.40 after on 2 cores" in text
    assert BUSY in text  # 3.1 > 2 cores
    assert "out/record.json, out/plan.json, out/train.patch" in text and "out/report.html" in text
    assert "note: the script's first epoch is slower" in text


def test_no_gain_in_the_terminal_has_nothing_to_apply() -> None:
    text = render_console(no_gain())
    assert "train.py: no change proven faster: the script is kept as it is" in text
    assert "git apply" not in text and "run-script" not in text and "train.patch" not in text
    assert "load average 0.50 before on 8 cores" in text and BUSY not in text


def test_interrupted_and_failed_in_the_terminal() -> None:
    text = render_console(interrupted())
    assert "interrupted" in text and "1 of 2 candidates decided, 1 pending" in text
    assert "workers-4: pending" in text and "load average" not in text
    text = render_console(failed())
    assert "the tuning failed: the baseline exited with code 1" in text
    assert "No module named 'foo'" in text


def test_html_of_a_complete_tuning_has_every_figure_and_command() -> None:
    rec = complete()
    page = script_report_page(rec, OUT)
    assert page.startswith("<!DOCTYPE html>")
    for anchor in ("headline", "changes", "apply", "candidates", "rounds", "losses", "profile",
                   "notes", "machine"):
        assert f'id="{anchor}"' in page
    assert "1.21x faster (95% CI 1.12–1.30, 7 rounds) with num_workers=2" in page
    assert "1.21×" in page and "12.2 ms → 10.1 ms" in page and "+800 ms" in page
    assert "6.87 min" in page  # tool wall time
    for c in rec.candidates:
        assert c.name in page and c.reason in page
    assert "git apply out/train.patch" in page and LAUNCH in page
    assert "set inside a library the patch cannot edit" in page
    assert "DataLoader worker processes" in page and "torch.set_num_threads" in page
    assert "differs: 0.6931 vs 0.9124 (tolerance 0.05)" in page
    assert "ok: 0.6931 vs 0.6931" in page
    assert "dataloader-bound" in page and "62.0%" in page and "train.py:41" in page
    assert "busy machine" in page and "Xeon" in page
    assert page.count("<svg") == 2  # the runs by round, the losses
    assert "This section could not be rendered" not in page
    for needle in ("<script", "<link", 'src="http', "<img"):
        assert needle not in page.lower()


def test_loss_plot_draws_baseline_tuned_and_parity_rejections_only() -> None:
    page = script_report_page(complete(), OUT)
    losses_section = page[page.index('id="losses"'):page.index('id="profile"')]
    for name in ("baseline", "tuned", "bf16"):
        assert f">{name}<" in losses_section, name
    assert ">workers-2<" not in losses_section.split("<table")[0]


def running() -> ScriptTuneRecord:
    return interrupted().replace(status="running")


@pytest.mark.parametrize("make", [no_gain, interrupted, failed, running])
def test_html_of_every_other_shape(make: object) -> None:
    rec = make()  # type: ignore[operator]
    page = script_report_page(rec, OUT)
    assert "This section could not be rendered" not in page
    for c in rec.candidates:
        assert c.name in page and c.reason in page
    assert "git apply" not in page and "run-script" not in page
    if rec.status == "failed":
        assert "This tuning failed" in page and "No module named &#x27;foo&#x27;" in page
        assert "No candidate" in page and "No losses recorded" in page
    elif rec.status == "interrupted":
        assert "This tuning was interrupted" in page and "1 pending" in page
    elif rec.status == "running":
        assert "This tuning did not finish" in page and "killed, or still running" in page
    else:
        assert "no change proven faster" in page and "No change: the script is kept" in page


def test_unmeasured_values_render_as_none_and_as_nan_strings(tmp_path: Path) -> None:
    nan = float("nan")
    c = Candidate(name="odd[bold]<b>", changes={"num_workers": 1}, source="search", fate="same",
                  reason="no figures", ratio=nan, ci_low=None, ci_high=nan, rounds=2,
                  seconds_per_sample=(nan, 0.01), startup_s=None,
                  parity=Parity(ok=False, baseline_loss=None, candidate_loss=nan))
    rec = complete().replace(
        candidates=(c,), result=Result(changes={"num_workers": 1}, speedup=nan, ci_low=None,
                                       startup_delta_s=nan),
        baseline=Baseline(seconds_per_sample=(nan,), phases={"data": nan}, step_s=None),
        losses={"baseline": [[0, nan], [1, 0.5]], "bf16": [["nan", 1.0]]},
        machine={"cores": None, "load_before": "nan"})
    rec.save(tmp_path / "record.json")  # NaN becomes "nan" strings on disk
    for r in (rec, ScriptTuneRecord.load(tmp_path / "record.json")):
        page = script_report_page(r, OUT)
        assert "This section could not be rendered" not in page
        assert "odd[bold]&lt;b&gt;" in page and "<b>" not in page
        assert "no change proven faster" in page
        text = render_console(r)
        assert "odd[bold]<b>: same: no figures" in text and "load average" not in text


def test_plots_missing_matplotlib_leave_a_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    page = script_report_page(complete(), OUT)
    assert "<svg" not in page and page.count(NO_PLOT) == 2
    assert "This section could not be rendered" not in page and "workers-2" in page


def test_report_command_renders_a_script_record(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    complete().save(tmp_path / "record.json")
    assert main(["report", str(tmp_path), "--json", str(tmp_path / "copy.json")]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "1.21x faster" in printed and "report.html" in printed
    page = (tmp_path / "report.html").read_text()
    assert "workers-2" in page and f"git apply {tmp_path / 'train.patch'}" in page
    assert f"run-script --plan {tmp_path / 'plan.json'}" in page
    copy = json.loads((tmp_path / "copy.json").read_text())
    assert copy["format"] == "perfpilot.script-tune/1" and len(copy["candidates"]) == 4
    assert main(["report", str(tmp_path / "record.json"), "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "complete"


def test_write_script_report_names_commands_from_its_folder(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    write_script_report(complete(), tmp_path / "r" / "report.html")
    page = (tmp_path / "r" / "report.html").read_text()
    assert f"git apply {tmp_path / 'r' / 'train.patch'}" in page
    assert f"--plan {tmp_path / 'r' / 'plan.json'} -- python train.py --epochs 3" in page
