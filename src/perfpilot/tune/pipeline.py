"""The tuner: baseline -> hardware -> loader -> batch/LR -> final check, durable, in a budget.

:func:`tune` is the whole of ``perfpilot tune``::

    record = tune(load_workload("digits"), budget_s=600, out_dir="out")
    record.plan            # what out/plan.json holds
    record                 # the TuneRecord (also out/record.json)

``tune()`` measures and decides; it renders nothing: the command writes the report from
the record it returns (:mod:`perfpilot.commands.tune`).

How it runs:

1. **Checks** before any measuring: the output directory is writable, the workload
   honours its contract, the baseline runs on this machine, the budget is not absurd,
   and the study in the directory (if any) is this tuning's (:class:`~perfpilot.tune.
   study.Study` refuses a foreign or stale one, and an existing one without ``resume``).
2. **Baseline**: the baseline plan trained to the target (or for a few seconds without
   one), as a trial. It gives the "before" record, the expected run length (horizon) the
   stages judge compile costs against, and the size of the final check, whose cost is
   reserved from the budget.
3. **Stages** in order, each from the previous stage's plan, each with a share of what is
   left (:mod:`perfpilot.tune.budget`, unused time carries over). A stage that fails
   with a user-level error keeps its incumbent and the tuning goes on.
4. **Final check** (:mod:`perfpilot.tune.final`): tuned vs baseline, interleaved, on
   throughput and time to target. ``plan.json`` gets the tuned plan unless the check
   measured it slower, missing the target, or failing; then the baseline.

Durability: every measurement is a trial of the study (Optuna journal storage), so a
killed run resumed with ``resume=True`` recalls every finished trial instead of repeating
it. Decisions depend only on trial results and on values fixed once and stored in the
study (each stage's budget, the final check's size), so the resumed run takes the same
path: the stages' and the pipeline's budget clock is a :class:`~perfpilot.tune.study.
ReplayClock`, which jumps over each recalled trial to the time the original run had
reached when it ended (stored with the trial), so budget checks replay as they first ran.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfpilot import interrupt
from perfpilot import tune_record as tr
from perfpilot.errors import UserError
from perfpilot.progress import NullProgress, Progress
from perfpilot.record import RunRecord
from perfpilot.tune import facts
from perfpilot.tune.budget import stage_share, too_small
from perfpilot.tune.final import (
    ROUNDS,
    FinalCheck,
    FinalSettings,
    keeps_tuned,
    plan_final,
    ttt_cost_s,
)
from perfpilot.tune.load_label import labelled
from perfpilot.tune.preflight import (
    ExecutorName,
    check_baseline,
    check_budget,
    fingerprint,
    open_study,
    prepare_out_dir,
    resolve_stages,
    started_executor,
    with_target,
)
from perfpilot.tune.proxy import (
    describe,
    proxy_from_baseline,
    record_of,
    why_none,
)
from perfpilot.tune.study import ReplayClock
from perfpilot.tune.units import Portable, WorkloadRef, portable_spec, run_unit

if TYPE_CHECKING:
    from perfpilot.plan import Plan
    from perfpilot.tune.stage import Stage, StageResult
    from perfpilot.workload import Workload

BASELINE_SHARE = 0.25  # the baseline run to the target may use this share of the budget
BASELINE_CAP_S = 120.0
NO_TARGET_RUN_S = 10.0  # the "before" run of a workload without a target
FINAL_SHARE = 0.4  # the most of the budget the final check's runs to the target may take
FINAL_AB_SHARE = 0.15  # the final throughput A/B shrinks (to 5 pairs) to fit in this share
MIN_STAGES_S = 10.0


class Stop(Exception):
    """The tuning cannot go on for a reason that is the user's to fix (kept in the record)."""


def tune(workload: Workload, *, stages: Sequence[str | Stage] | None = None,
         budget_s: float = 600.0, out_dir: str | Path = "perfpilot-out", resume: bool = False,
         executor: ExecutorName = "inline", target: float | None = None,
         horizon_s: float | None = None, progress: Progress | None = None,
         spec: str | None = None, options: dict[str, Any] | None = None,
         final_rounds: int | None = None, restart: bool = False,
         origin: float | None = None, reserve_s: float = 0.0,
         clock: Callable[[], float] = time.monotonic) -> tr.TuneRecord:
    """Tune ``workload`` within ``budget_s`` seconds; write plan.json and record.json
    under ``out_dir`` and return the record (see the module docstring). The record's
    ``plan`` is what plan.json holds.

    ``stages``: names from :data:`~perfpilot.tune.stage.STAGE_ORDER` (default: all that are
    installed) or Stage objects. ``resume``: continue the study in ``out_dir``;
    ``restart``: delete it first (the demo does). ``executor``: where portable trials run
    (see :mod:`perfpilot.tune.units`). ``target``: overrides the workload's target metric.
    ``spec``: the workload's spec string, needed to run trials in other processes.
    ``options``: passed to every stage as ``ctx.options`` (the pipeline itself reads
    ``baseline_cap_s``, ``final_pairs`` and ``chunk_s``). ``final_rounds``: pairs of runs
    to the target in the final check (default 5). ``origin``: the ``clock()`` reading the
    budget counts from (default: now; the command passes its own start, so the budget is
    its wall time); ``reserve_s``: seconds at the end of the budget kept for the caller
    (the command's report), which no measurement may use. Raises :class:`UserError` for the user's
    mistakes; when measuring had started, the record is written first (on any exception:
    ``out_dir/record.json`` then says what happened, for the command to report).
    """
    from perfpilot.workload import check_workload

    # Every check before prepare_out_dir: a mistake in the input leaves nothing behind.
    check_budget(budget_s)
    w = with_target(workload, target)
    check_workload(w)
    check_baseline(w.baseline)
    out = prepare_out_dir(Path(out_dir))
    if restart:  # the demo: a previous run's plan must not outlive its study
        (out / tr.PLAN_FILE).unlink(missing_ok=True)
    replay = ReplayClock(clock, origin)
    names, objects = resolve_stages(stages, replay)
    study = open_study(out, fingerprint(w, names, budget_s, options), resume=resume,
                       restart=restart)
    run = _Run(w, WorkloadRef(portable_spec(spec), target, live=w), study, out, names,
               objects, budget_s, horizon_s, progress or NullProgress(), options or {},
               final_rounds, executor, replay, reserve_s)
    with started_executor(executor, run.ref, run.progress) as ex, \
            study.observe(run.progress):
        study.executor, study.clock = ex, replay
        return run.go()


# ---------------------------------------------------------------- one tuning


class _Run:
    """The state of one tuning: the record being built, the budget, the study."""

    def __init__(self, w: Workload, ref: WorkloadRef, study: Any, out: Path,
                 names: list[str], stages: list[Stage], budget_s: float,
                 horizon_s: float | None, progress: Progress, options: dict[str, Any],
                 final_rounds: int | None, executor: str, clock: ReplayClock,
                 reserve_s: float = 0.0) -> None:
        self.w, self.ref, self.study, self.out = w, ref, study, out
        self.stages, self.budget_s, self.horizon_s = stages, budget_s, horizon_s
        # Measuring ends here (seconds since the origin); the rest is the caller's.
        self.end_s = budget_s - max(0.0, min(reserve_s, 0.1 * budget_s))
        self.progress, self.options, self.clock = progress, options, clock
        self.final_rounds = final_rounds
        self.runner: Any = study
        self.target_dropped = ""
        self.machine = facts.machine()  # the stages read it as a mapping
        self.rec = tr.TuneRecord(
            workload=facts.workload_info(w, ref.spec), budget_s=budget_s, resumed=study.resumed,
            settings=tr.TuneSettings(stages=tuple(names), executor=executor,
                                     options=tr.sanitize(options), horizon_s=horizon_s),
            baseline_plan=w.baseline, started_at=time.time(),
            machine=tr.MachineInfo.from_dict(self.machine), versions=facts.versions())

    # -------------------------------------------------- budget

    def elapsed(self) -> float:
        """Seconds of this tuning so far; on a resume, the replay clock jumps over recalled
        trials to where the original run was when each ended."""
        return self.clock.elapsed()

    def left(self) -> float:
        """Seconds measuring may still take (the caller's reserve excluded)."""
        return self.end_s - self.elapsed()

    def fixed(self, name: str, compute: Callable[[], Any]) -> Any:
        """A value decided once per study (stored), so a resumed run decides the same."""
        value = self.study.note(name)
        if value is None:
            value = compute()
            self.study.set_note(name, value)
        return value

    # -------------------------------------------------- the pipeline

    def go(self) -> tr.TuneRecord:
        self.progress.start(self.budget_s, lambda: self.budget_s - self.elapsed())
        try:
            self.baseline()
            plan = self.run_stages()
            final = self.final_check(plan)
            result = self.decide(plan, final)
        except Stop as e:
            self.finish("stopped", str(e))
            raise UserError(f"{e} (what was measured is in {self.out / tr.RECORD_FILE})") \
                from None
        except UserError as e:
            self.finish("stopped", str(e))
            raise
        except KeyboardInterrupt as e:
            why = interrupt.signal_name(interrupt.signum_of(e))
            self.finish("interrupted", f"interrupted ({why}); resume with --resume")
            raise
        except Exception as e:
            self.finish("failed", f"{type(e).__name__}: {e}")
            raise
        finally:
            self.progress.stop()
        return result

    def baseline(self) -> None:
        w = self.w
        has_target = w.target is not None
        cap = min(BASELINE_CAP_S, max(10.0, BASELINE_SHARE * self.budget_s)) if has_target \
            else min(NO_TARGET_RUN_S, max(3.0, 0.05 * self.budget_s))
        cap = float(self.options.get("baseline_cap_s", cap))
        self.progress.phase("baseline", cap)
        what = f"to {w.metric_name} {facts.sign(w)} {w.target:g}" if has_target else \
            f"for {cap:.0f} s"
        self.progress.message(f"training the baseline {what}")
        key = {"check": "run", "plan": w.baseline.to_dict(), "seed": w.seed, "cap_s": cap,
               "until_target": has_target}
        trial = self.runner.run("baseline", key, Portable(
            run_unit, (self.ref, w.baseline.to_dict(), w.seed, has_target, cap),
            timeout_s=10 * cap + 120))
        if trial.state != "complete":
            raise Stop(facts.baseline_failure(w, trial))
        m = trial.measurements
        self.base_m = m
        self.rec = self.rec.replace(baseline=RunRecord.from_dict(m["record"]),
                                    horizon=self._horizon(m, trial.number))
        if has_target and not m["reached"]:
            self._proxy_target(cap, m)
        self.settings = FinalSettings.from_dict(self.fixed("final.settings", self._size_final))
        self.save()

    def _proxy_target(self, cap: float, m: dict[str, Any]) -> None:
        """The baseline missed the target: decide on the level it reached (the proxy
        target, :mod:`perfpilot.tune.proxy`), or, when its curve gives none, tune
        throughput only; either way, say so."""
        w, p = self.w, self.w.baseline
        missed = (f"the baseline did not reach {w.metric_name} {facts.sign(w)} {w.target:g} "
                  f"within {cap:.0f} s of training")
        proxy = proxy_from_baseline(m, metric=w.metric_name, direction=w.direction,
                                    target=float(w.target or 0), samples_per_step=p.batch_size
                                    * p.grad_accum)
        if proxy is None:
            self.rec = self.rec.with_note(
                f"{missed} (last value {facts.fmt(m.get('metric'))}) and {why_none(m)}: tuned "
                "for throughput only. Lower the target with --target, give a larger --budget, "
                "or check the workload's metric and direction.")
            self.target_dropped = f"{missed} and its curve gives no proxy target"
            self.w = dataclasses.replace(w, target=None)
        else:
            self.rec = self.rec.replace(proxy=record_of(proxy)).with_note(
                f"{missed}; decided on the proxy target {w.metric_name} {facts.sign(w)} "
                f"{proxy.level:.4g} (the level it reached). " + " ".join(describe(proxy)))
            self.w = dataclasses.replace(w, target=proxy.level)
            if self.horizon_s is None and proxy.horizon_s() is not None:
                self.rec = self.rec.replace(horizon=tr.Horizon(
                    proxy.horizon_s(), "extrapolated: the baseline's learning curve to the "
                    "real target (see the proxy target)"))
        self.progress.message(self.rec.notes[-1])

    def _horizon(self, m: dict[str, Any], number: int) -> tr.Horizon:
        if self.horizon_s is not None:
            return tr.Horizon(self.horizon_s, "given (--horizon)")
        if m.get("reached"):
            return tr.Horizon(m["time_to_target_s"],
                              f"measured: the baseline reached the target in "
                              f"{m['time_to_target_s']:.1f} s of training (trial {number})")
        return tr.Horizon(None, "not known: each stage assumes its default")

    def _size_final(self) -> dict[str, Any]:
        rounds = 5 if self.final_rounds is None else self.final_rounds
        left = max(self.left(), 0.0)
        s = plan_final(self.base_m, has_target=self.rec.workload.target is not None,
                       seed=self.w.seed,
                       budget_left_s=FINAL_SHARE * self.budget_s if rounds else 0.0,
                       rounds=max(rounds, 1), chunk_s=self.options.get("chunk_s"),
                       ab_pairs=int(self.options.get("final_pairs", 10)),
                       ab_max_s=FINAL_AB_SHARE * self.budget_s)
        if rounds == 0 and not s.skip_ttt:
            s = dataclasses.replace(s, rounds=0, skip_ttt="final_rounds=0")
        if s.skip_ttt:  # then the report's "after" run (see _tuned_run) is part of it
            s = dataclasses.replace(s, estimate_s=s.estimate_s + self._after_run_cost_s())
        stages_s = left - s.estimate_s
        if stages_s < MIN_STAGES_S:
            raise Stop(f"--budget {self.budget_s:.0f}s is too small for this workload: the "
                       f"baseline took {self.elapsed():.0f} s and the final check needs about "
                       f"{s.estimate_s:.0f} s, which leaves {max(stages_s, 0):.0f} s to tune; "
                       f"try --budget {facts.suggest(self.elapsed() + s.estimate_s)}")
        return s.to_dict()

    # -------------------------------------------------- stages

    def run_stages(self) -> Plan:
        from perfpilot.tune.stage import StageContext

        plan: Plan = self.w.baseline
        pool_end = self.end_s - self.settings.estimate_s
        for i, stage in enumerate(self.stages):
            share = float(self.fixed(f"budget.{stage.name}", lambda i=i: self._share(
                i, pool_end)))
            self.progress.phase(stage.name, share)
            skip = too_small(stage.name, share)
            if skip is not None:
                self.rec = self.rec.replace(stages=(*self.rec.stages, tr.StageRecord(
                    stage.name, skip, share, 0.0, plan, ())))
                self.progress.phase_done(stage.name, skip, 0.0)
                continue
            ctx = StageContext(workload=self.w, incumbent=plan, trials=self.runner,
                               budget_s=share, horizon_s=self.rec.horizon.horizon_s,
                               machine=self.machine, progress=self.progress.message,
                               options=self._stage_options())
            entry = self._run_stage(stage, ctx, share)
            self.progress.phase_done(stage.name, entry.summary, entry.elapsed_s)
            plan = entry.plan or plan
            self.rec = self.rec.replace(stages=(*self.rec.stages, entry), tuned_plan=plan)
            self.progress.best(facts.changes_text(self.w.baseline, plan))
            self.save()
        return plan

    def _share(self, index: int, pool_end: float) -> float:
        return stage_share([s.name for s in self.stages], index, pool_end - self.elapsed())

    def _stage_options(self) -> dict[str, Any]:
        opts = dict(self.options)
        opts.setdefault("horizon_source", self.rec.horizon.source)
        if self.rec.proxy:  # the baseline missed the target (ProxyTarget reads its fields)
            opts["proxy"] = dict(self.rec.proxy)
        if self.target_dropped:
            opts["target_dropped"] = self.target_dropped
        return opts

    def _run_stage(self, stage: Stage, ctx: Any, share: float) -> tr.StageRecord:
        before = {t.number for t in self.runner.trials()}
        t0 = self.clock()
        try:
            result: StageResult = stage.run(ctx)
        except Exception as e:  # noqa: BLE001 - keep the incumbent, keep the other stages
            # A user-level error (this stage cannot work here) or a bug in the stage: either
            # way the trials it finished are in the study and the next stage can still run.
            bug = not isinstance(e, UserError)
            error = f"{type(e).__name__}: {e}" if bug else str(e)
            where = " (a perfpilot bug: traceback in record.json)" if bug else ""
            self.rec = self.rec.with_note(f"stage {stage.name} stopped{where}: {error}")
            return tr.StageRecord(
                stage.name, f"stopped: {error}", share, self.clock() - t0, ctx.incumbent,
                tuple(sorted({t.number for t in self.runner.trials()} - before)), error,
                traceback.format_exc() if bug else None)
        return tr.StageRecord(stage.name, result.summary, share, self.clock() - t0,
                              result.plan, tuple(t.number for t in result.trials),
                              evidence=tr.sanitize(result.evidence))

    # -------------------------------------------------- final check and decision

    def final_check(self, tuned: Plan) -> dict[str, Any]:
        if tuned == self.w.baseline:
            return {"verdict": "unchanged", "primary": None,
                    "claim": "no stage found a measured gain, so the baseline stays; there is "
                             "nothing to compare"}
        # What the stages left is all the final check may take: it shrinks or skips a
        # comparison that does not fit (and says so) rather than overrun the budget. Fixed
        # once, so a resumed run sizes it the same.
        allowed = float(self.fixed("final.allowed_s", lambda: max(self.left(), 0.0)))
        self.progress.phase("final check", allowed)
        after = self._after_run_cost_s() if self.settings.skip_ttt else 0.0  # out of it too
        check = FinalCheck(self.runner, self.ref, self.w.baseline, tuned, self.settings,
                           progress=self.progress.message, allowed_s=allowed - after,
                           stages=self.rec.stages)  # the cross-check's side (final_cross)
        result = check.run(rounds=lambda thr: tuple(self.fixed(
            "final.rounds", lambda: list(self._ttt_rounds(thr)))))
        tuned_run = check.record_of("tuned") or self._tuned_run(tuned)
        base_run = check.record_of("baseline")
        self.rec = self.rec.replace(
            tuned=RunRecord.from_dict(tuned_run) if tuned_run else None,
            baseline_check=RunRecord.from_dict(base_run) if base_run else None)
        return result

    def _ttt_rounds(self, throughput: dict[str, Any]) -> tuple[int, str]:
        """Runs to the target skipped for budget may fit after all once the throughput
        check says how much faster the tuned plan trains."""
        s = self.settings
        # Planned rounds are checked again too: the stages or the A/B may have left less.
        revisable = s.rounds or (s.skip_ttt.startswith("budget") and "ratio" in throughput)
        if not revisable:
            return s.rounds, s.skip_ttt
        rounds = s.rounds or ROUNDS
        cost, left = ttt_cost_s(self.base_m, throughput, rounds), self.left()
        if cost <= max(left, 0.0):
            return rounds, ""
        tuned = " (the tuned plan's from its measured throughput)" if "ratio" in throughput \
            else ""
        return 0, (f"budget: {rounds} interleaved pairs of runs to the target need about "
                   f"{cost:.0f} s{tuned}, {max(left, 0):.0f} s left")

    def _setup_s(self) -> float:
        return float(self.base_m.get("setup_s") or 0.5)

    def _after_run_cost_s(self) -> float:
        """Wall seconds of the "after" run: its training and its set-up."""
        return self._tuned_run_s() + self._setup_s()

    def _tuned_run_s(self) -> float:
        """Training seconds of the "after" run: as long as the baseline trained, at most
        :data:`NO_TARGET_RUN_S`."""
        engine = self.base_m["record"].get("engine") or {}
        return max(1.0, min(NO_TARGET_RUN_S, float(engine.get("train_time_s") or 5.0)))

    def _tuned_run(self, plan: Plan) -> dict[str, Any] | None:
        """An "after" record when the final check had no runs to the target: the tuned
        plan trained for at most :data:`NO_TARGET_RUN_S` (to the target, when there is
        one, so its curves compare with the baseline's; one run, not a comparison), or
        less, to end within the budget; none when not even a second of training fits."""
        secs = float(self.fixed("final.tuned_run_s", lambda: min(
            self._tuned_run_s(), self.left() - self._setup_s())))
        if secs < 1.0:
            self.rec = self.rec.with_note(
                "the tuned plan's own run (the report's \"after\" curves) was skipped: the "
                "budget was spent")
            return None
        to_target = self.w.target is not None
        every = self.settings.eval_every_s if to_target else None
        self.progress.message("recording the tuned plan's run")
        key = {"check": "run", "plan": plan.to_dict(), "seed": self.w.seed, "time_s": secs,
               "until_target": to_target, "eval_every_s": every}
        trial = self.runner.run("final", key, Portable(
            run_unit, (self.ref, plan.to_dict(), self.w.seed, to_target, secs, every),
            timeout_s=10 * secs + 120))
        return trial.measurements.get("record") if trial.state == "complete" else None

    def _batch_win(self) -> str | None:
        """The batch stage's words when it changed batch size or LR on measured time to
        the target (verdict "faster"), else None (see :func:`keeps_tuned`)."""
        st = next((s for s in self.rec.stages if s.name == "batch"), None)
        chosen = ((st.evidence or {}).get("chosen") or {}) if st is not None else {}
        return chosen.get("why") if chosen.get("verdict") == "faster" else None

    def decide(self, tuned: Plan, final: dict[str, Any]) -> tr.TuneRecord:
        from perfpilot.plan import save_plan

        keep, why = (True, final["claim"]) if final["verdict"] == "unchanged" \
            else keeps_tuned(final, self._batch_win())
        plan = tuned if keep else self.w.baseline
        self.rec = self.rec.replace(
            final=tr.FinalResult.from_dict(tr.sanitize(final)), plan=plan,
            decision=tr.Decision("tuned" if keep and plan != self.w.baseline else "baseline",
                                 why))
        self.rec = labelled(self.rec, self.runner.trials())  # the load the plan won at
        save_plan(plan, self.out / tr.PLAN_FILE, self.rec.load_label)  # the plan first
        self.finish("complete", None)
        return self.rec

    # -------------------------------------------------- output

    def save(self) -> None:
        """Rewrite record.json (atomically): what was measured so far survives a kill."""
        self.rec = self.rec.replace(
            elapsed_s=self.elapsed(), trials=tuple(self.runner.trials()),
            placement=dict(getattr(self.runner, "placed", None) or {}))
        self.rec.save(self.out / tr.RECORD_FILE)

    def finish(self, status: str, error: str | None) -> None:
        """Write the final record; called once, whatever happened. No report: the
        command renders it from the record."""
        self.rec = self.rec.replace(status=status, error=error, finished_at=time.time())
        self.save()
