"""The tuning pipeline on a tiny real workload: outputs, resume, bad input, executors.

Stages are small fakes that go through ``ctx.trials`` like the real ones (the real stages
have their own tests; ``test_cli_tune_resume.py`` runs them end to end). Baseline, final
check are real; tune() returns the TuneRecord and renders nothing (the command does).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from perfpilot.errors import UserError
from perfpilot.plan import load_plan
from perfpilot.progress import NullProgress
from perfpilot.trial import Outcome
from perfpilot.tune.pipeline import tune
from perfpilot.tune.stage import StageResult
from perfpilot.tune_record import Comparison, TuneRecord
from perfpilot.workload import load_workload

FIXTURE = Path(__file__).parent / "fixtures" / "tune_tiny.py"
FAST = {"final_pairs": 5, "chunk_s": 0.02}


def spec(name: str = "workload") -> str:
    return f"{FIXTURE}:{name}"


class Recorder(NullProgress):
    """A Progress that keeps what it was told."""

    def __init__(self, on_trial: Any = None) -> None:
        self.events: list[tuple[str, Any]] = []
        self.on_trial = on_trial

    def start(self, budget_s: float, left: Any) -> None:
        self.events.append(("start", budget_s))

    def phase(self, name: str, budget_s: float | None) -> None:
        self.events.append(("phase", name))

    def message(self, text: str) -> None:
        self.events.append(("message", text))

    def phase_done(self, name: str, summary: str, elapsed_s: float) -> None:
        self.events.append(("phase_done", (name, summary)))

    def trial_finished(self, trial: Any, recalled: bool) -> None:
        self.events.append(("trial", (trial.stage, recalled)))
        if self.on_trial:
            self.on_trial(trial)

    def best(self, text: str) -> None:
        self.events.append(("best", text))

    def stop(self) -> None:
        self.events.append(("stop", None))

    def ran(self) -> list[str]:
        return [s for k, (s, recalled) in self._trials() if not recalled]

    def recalled(self) -> list[str]:
        return [s for k, (s, recalled) in self._trials() if recalled]

    def _trials(self) -> list[tuple[str, Any]]:
        return [(k, v) for k, v in self.events if k == "trial"]


class BatchUp:
    """A fake stage: one measured trial, then batch 64 / lr 0.1 with evidence."""

    name = "batchup"

    def __init__(self, calls: list[str] | None = None) -> None:
        self.calls = calls if calls is not None else []

    def run(self, ctx: Any) -> StageResult:
        self.calls.append("run")
        t = ctx.trials.run(self.name, {"check": "probe", "plan": ctx.incumbent.to_dict()},
                           lambda: Outcome("complete", {"objective": 1.0}))
        plan = ctx.incumbent.replace(batch_size=64, lr=0.1)
        entry = {"label": "batch 64", "fate": "accepted", "changes": {"batch_size": 64},
                 "speedup": 1.8, "ci_low": 1.4, "ci_high": 2.2, "rounds": 5, "reason": "faster"}
        return StageResult(self.name, plan, (t,), {"candidates": [entry]}, "chose batch 64")


class Keeps:
    """A fake stage that measures once and keeps the incumbent."""

    name = "keeps"

    def run(self, ctx: Any) -> StageResult:
        t = ctx.trials.run(self.name, {"check": "probe"}, lambda: Outcome("complete"))
        return StageResult(self.name, ctx.incumbent, (t,), {}, "kept the incumbent")


class Refuses:
    name = "refuses"

    def run(self, ctx: Any) -> StageResult:
        ctx.trials.run(self.name, {"check": "x"}, lambda: Outcome("complete"))
        raise UserError("this stage needs a GPU")


def test_tune_returns_the_record_writes_plan_and_record_but_no_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    progress = Recorder()
    w = load_workload(spec())
    # A generous budget: the runs to the target must fit in 40% of it even on a busy
    # machine; the fake stage uses none of it.
    res = tune(w, stages=[BatchUp()], budget_s=300, out_dir=out, spec=spec(), options=FAST,
               final_rounds=5, progress=progress)
    rec = json.loads((out / "record.json").read_text())
    assert isinstance(res, TuneRecord) and json.loads(res.dumps()) == rec
    assert rec["status"] == "complete" and rec["schema"] == "perfpilot.tunerecord/2"
    assert load_plan(out / "plan.json") == res.plan
    assert rec["plan"] == res.plan.to_dict() and rec["tuned_plan"]["batch_size"] == 64
    assert rec["baseline"]["plan"]["batch_size"] == 16 and rec["tuned"]["plan"]["batch_size"] == 64
    final = rec["final"]
    assert final["primary"] == "time_to_target"
    assert final["time_to_target"]["n"] == 5 and len(final["time_to_target"]["rounds"]) == 5
    assert final["throughput"]["n"] >= 5
    assert final["verdict"] in ("faster", "same", "slower", "not-reached"), final
    assert rec["decision"]["plan"] == ("baseline" if final["verdict"] in ("slower",
                                                                          "not-reached")
                                       else "tuned")
    states = [(t["number"], t["state"], t["reason"]) for t in rec["trials"]]
    # baseline, stage, tuned run, 10 runs to the target; one more when the final throughput
    # disagreed with the fake stage's claimed 1.8x and was repeated in separate processes
    repeated = bool((final.get("cross_check") or {}).get("repeated"))
    assert {s for _, s, _ in states} == {"complete"}, states
    assert len(states) == 1 + 1 + 1 + 10 + repeated, states
    assert rec["horizon"]["source"].startswith("measured")
    assert not (out / "report.html").exists()  # rendering is the command's job
    from perfpilot.render.tune_html import report_page

    html = report_page(res)
    assert "<svg" in html and "Headline" in html and "batch 64" in html
    phases = [v for k, v in progress.events if k == "phase"]
    assert phases == ["baseline", "batchup", "final check"]
    assert ("best", "batch_size=64, lr=0.1") in progress.events
    assert ("phase_done", ("batchup", "chose batch 64")) in progress.events


def test_resume_recalls_every_finished_trial(tmp_path: Path) -> None:
    out = tmp_path / "out"
    w = load_workload(spec())
    kw = {"budget_s": 40, "out_dir": out, "spec": spec(), "options": FAST, "final_rounds": 0}
    first = tune(w, stages=[BatchUp()], **kw)
    with pytest.raises(UserError, match="--resume"):
        tune(w, stages=[BatchUp()], **kw)
    progress, calls = Recorder(), []
    again = tune(w, stages=[BatchUp(calls)], resume=True, progress=progress, **kw)
    assert progress.ran() == [] and len(progress.recalled()) == len(first.trials)
    assert again.plan == first.plan and again.final == first.final
    assert again.resumed is True and calls == ["run"]


def test_foreign_study_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = tune(load_workload(spec()), stages=[Keeps()], budget_s=40, out_dir=out,
               spec=spec(), options=FAST)
    assert res.final is not None and res.final.verdict == "unchanged" and res.tuned is None
    assert res.decision is not None and res.decision.plan == "baseline"
    assert res.plan == res.baseline_plan
    with pytest.raises(UserError, match="another tuning.*target"):
        tune(load_workload(spec()), stages=[Keeps()], budget_s=40, out_dir=out,
             target=0.8, resume=True, options=FAST)


def test_nan_baseline_stops_with_a_message_and_keeps_the_trial(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(UserError, match="non-finite loss") as e:
        tune(load_workload(spec("nan_workload")), stages=[BatchUp()], budget_s=40,
             out_dir=out, options=FAST)
    assert "record.json" in str(e.value)
    rec = json.loads((out / "record.json").read_text())
    assert rec["status"] == "stopped" and [t["state"] for t in rec["trials"]] == ["nan"]
    assert not (out / "report.html").exists() and not (out / "plan.json").exists()


def test_crashing_workload_is_reported_not_raised(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(UserError, match="crashed: .*corrupt sample"):
        tune(load_workload(spec("crashes")), stages=[BatchUp()], budget_s=40, out_dir=out,
             options=FAST)
    rec = json.loads((out / "record.json").read_text())
    assert rec["trials"][0]["state"] == "failed" and "corrupt sample" in rec["error"]


def test_unreachable_target_tunes_throughput_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = tune(load_workload(spec()), stages=[BatchUp()], budget_s=40, out_dir=out,
               target=1.5, options={**FAST, "baseline_cap_s": 1.0})
    from perfpilot.render.tune_html import report_page

    assert res.status == "complete" and "did not reach val_accuracy >= 1.5" in res.notes[0]
    assert res.final is not None and res.final.primary == "throughput"
    assert res.final.time_to_target == Comparison(
        skipped="the baseline did not reach the target")
    assert "tuned for throughput only" in report_page(res)


class SeesProxy:
    """A fake stage that keeps what the pipeline gave it."""

    name = "sees"

    def __init__(self) -> None:
        self.ctx: Any = None

    def run(self, ctx: Any) -> StageResult:
        self.ctx = ctx
        t = ctx.trials.run(self.name, {"check": "probe"}, lambda: Outcome("complete"))
        return StageResult(self.name, ctx.incumbent, (t,), {}, "kept the incumbent")


def test_a_target_beyond_the_baseline_share_is_decided_on_a_proxy(tmp_path: Path) -> None:
    stage = SeesProxy()
    # val_loss 0.001 is below where this run levels off (~0.011): never reached in 5 s
    res = tune(load_workload(spec("slow_learner")), stages=[stage], budget_s=40,
               out_dir=tmp_path / "out", target=0.001,
               options={**FAST, "baseline_cap_s": 5.0})
    from perfpilot.render.tune_html import report_page

    assert res.proxy is not None
    level = res.proxy["level"]
    note = next(n for n in res.notes if "did not reach val_loss <= 0.001" in n)
    assert f"decided on the proxy target val_loss <= {level:.4g}" in note
    assert "measured: the baseline trained" in note and "extrapolated:" in note
    assert "no target" not in note
    assert stage.ctx.options["proxy"]["level"] == level  # the stages decide on it
    assert stage.ctx.workload.target == level
    assert res.workload.target == 0.001  # the record keeps the real target
    assert 'id="proxy"' in report_page(res)


def test_budget_too_small(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--budget: 5 s is too small"):
        tune(load_workload(spec()), budget_s=5, out_dir=tmp_path / "a")
    # After the baseline: pretend it took most of the budget (an injected clock).
    now = [0.0]
    progress = Recorder(on_trial=lambda t: now.__setitem__(0, now[0] + 30.0))
    with pytest.raises(UserError, match="too small for this workload.*try --budget"):
        tune(load_workload(spec()), stages=[Keeps()], budget_s=40, out_dir=tmp_path / "b",
             options=FAST, progress=progress, clock=lambda: now[0])
    rec = json.loads((tmp_path / "b" / "record.json").read_text())
    assert rec["status"] == "stopped" and rec["baseline"] is not None


def test_unwritable_out_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="not a directory"):
        tune(load_workload(spec()), budget_s=40, out_dir=blocker)


def test_a_stage_that_refuses_keeps_the_incumbent_and_the_next_stage_runs(
        tmp_path: Path) -> None:
    res = tune(load_workload(spec()), stages=[Refuses(), Keeps()], budget_s=40,
               out_dir=tmp_path, options=FAST)
    first, second = res.stages
    assert first.error == "this stage needs a GPU" and first.trials
    assert first.plan == res.baseline_plan and second.error is None
    assert second.summary == "kept the incumbent"
    assert any("refuses stopped" in n for n in res.notes)


def test_process_executor_runs_the_portable_trials_elsewhere(tmp_path: Path) -> None:
    # The budget is generous: starting a worker counts against it (seconds, on a busy
    # machine tens of seconds).
    res = tune(load_workload(spec()), stages=[Keeps()], budget_s=300, out_dir=tmp_path,
               spec=spec(), executor="process", options=FAST)
    # The baseline run leaves (a portable unit); the fake stage's closure does not.
    assert res.placement == {"process": 1, "inline": 1}
    assert res.baseline is not None and res.baseline.time_to_target_s is not None


def test_replay_clock_jumps_to_where_the_original_run_was() -> None:
    from perfpilot.trial import Trial
    from perfpilot.tune.study import CLOCK_KEY, ReplayClock

    now = [100.0]
    clock = ReplayClock(lambda: now[0])
    now[0] = 101.0
    clock.replayed(Trial(number=0, stage="s", plan={}, state="complete",
                         measurements={CLOCK_KEY: 30.0}, started_at=0.0, finished_at=5.0))
    assert clock.elapsed() == pytest.approx(30.0)  # the stamp, not the 5 s duration
    clock.replayed(Trial(number=1, stage="s", plan={}, state="failed", started_at=0.0,
                         finished_at=4.0))
    assert clock.elapsed() == pytest.approx(34.0)  # no stamp: the duration
    clock.replayed(Trial(number=2, stage="s", plan={}, state="complete",
                         measurements={CLOCK_KEY: 10.0}))
    assert clock.elapsed() == pytest.approx(34.0)  # never backwards


def test_without_a_terminal_progress_is_timestamped_lines_as_it_happens(tmp_path: Path) -> None:
    import io
    import re

    from perfpilot.render.progress import LineProgress, command_progress

    stream = io.StringIO()  # not a terminal: the command would choose plain lines
    progress = command_progress(stream)
    assert isinstance(progress, LineProgress)
    seen: list[int] = []  # lines written by the time each trial ended: nothing is held back

    class Counting(LineProgress):
        def trial_finished(self, trial: Any, recalled: bool) -> None:
            super().trial_finished(trial, recalled)
            seen.append(stream.getvalue().count("\n"))

    res = tune(load_workload(spec()), stages=[Keeps()], budget_s=40, out_dir=tmp_path,
               options=FAST, final_rounds=0, progress=Counting(stream))
    lines = stream.getvalue().splitlines()
    assert all(re.match(r"\d\d:\d\d:\d\d ", line) for line in lines), lines
    text = "\n".join(lines)
    assert "keeps: started, budget" in text and "keeps: finished in" in text
    assert "kept the incumbent" in text and "time left" in text
    trials = res.trials
    for t in trials:  # each trial's result: its state and stage
        assert re.search(rf"trial {t.number} {t.stage}: {t.state}", text), text
    assert len(seen) == len(trials) and seen == sorted(seen) and seen[0] > 0


class Overruns:
    """A fake stage that changes the plan and then runs past its share and the budget
    (an injected clock jumps): the final check must fit in what is left, not overrun."""

    name = "overruns"

    def __init__(self, now: list[float], until: float) -> None:
        self.now, self.until = now, until

    def run(self, ctx: Any) -> StageResult:
        t = ctx.trials.run(self.name, {"check": "probe"}, lambda: Outcome("complete"))
        self.now[0] = self.until
        return StageResult(self.name, ctx.incumbent.replace(batch_size=32), (t,), {},
                           "batch 32")


def test_budget_counts_from_the_command_start(tmp_path: Path) -> None:
    # The command passes its process start: seconds spent before tune() was called
    # (imports, loading the workload) come out of the budget, not on top of it.
    now = [1000.0]
    res = tune(load_workload(spec()), stages=[Keeps()], budget_s=60, out_dir=tmp_path,
               options=FAST, final_rounds=0, origin=now[0] - 25.0, clock=lambda: now[0])
    assert res.elapsed_s == pytest.approx(25.0)
    # The stage's share is of the 35 s left (less the final check's reserve), not 60 s.
    assert res.stages[0].budget_s < 35.0
    with pytest.raises(UserError, match="too small for this workload"):
        tune(load_workload(spec()), stages=[Keeps()], budget_s=60, out_dir=tmp_path / "b",
             options=FAST, origin=now[0] - 55.0, clock=lambda: now[0])


def test_the_final_check_skips_what_the_budget_no_longer_holds(tmp_path: Path) -> None:
    now = [0.0]
    res = tune(load_workload(spec()), stages=[Overruns(now, 58.0)], budget_s=60,
               out_dir=tmp_path, options=FAST, final_rounds=5, reserve_s=2.0,
               clock=lambda: now[0])
    # The stage used its share, the final check's and all up to the command's reserve.
    assert res.elapsed_s == pytest.approx(58.0) and res.stages[0].budget_s < 50
    final = res.final
    assert final is not None and final.verdict == "unmeasured"
    assert final.throughput.skipped.startswith("budget: the interleaved comparison needs")
    assert final.time_to_target.skipped.startswith("budget:")
    assert res.tuned is None and any("budget was spent" in n for n in res.notes)
    assert res.status == "complete" and res.decision is not None
    trials = [t.stage for t in res.trials]
    assert "final" not in trials, trials  # nothing ran past the budget
