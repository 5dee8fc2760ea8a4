"""``tune_script()``: tune an unmodified script by measuring changes on the script itself.

1. **Profile** the script once (its first :data:`PROFILE_STEPS` steady steps, with the
   operator window): step time, phases, loaders and where they were built, findings.
2. **Candidates** (:mod:`perfpilot.tune.script.space`): the findings' fixes plus a joint
   search of the knobs that interact (workers × threads, precision × compile).
3. **Race** (:mod:`perfpilot.tune.script.race`): baseline and candidates in interleaved
   rounds of real runs, each with the same seed; kept only when the interval says faster
   and the losses match.
4. **Combine**: the winners of different knob groups are run together against the
   baseline again; the combination is chosen only if it beats the best single winner.
5. **Write** ``DIR/plan.json`` (a :class:`~perfpilot.script_plan.ScriptPlan`),
   ``DIR/train.patch`` (:mod:`perfpilot.script_patch`) and ``DIR/record.json`` (a
   :class:`~perfpilot.script_tune_record.ScriptTuneRecord`, rewritten after every round:
   a killed tuning keeps what it measured; ``--resume`` recalls every finished run from
   ``DIR/study.journal``).

Time: every run costs the script's start-up plus its window; the number of candidates
raced is what the budget can take for :data:`~perfpilot.measure.MIN_ROUNDS` rounds (the
rest are ``skipped`` with that reason).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfpilot import interrupt
from perfpilot.errors import UserError
from perfpilot.measure import MIN_ROUNDS
from perfpilot.progress import NullProgress, Progress
from perfpilot.script_tune_record import Baseline, Candidate, Result, ScriptTuneRecord
from perfpilot.tune.script.arms import ArmSpec, run_arm
from perfpilot.tune.script.race import BASELINE, MAX_ROUNDS, SCREEN_ROUNDS, Race
from perfpilot.tune.script.space import (
    ScriptFacts,
    batch_ratio,
    candidates,
    combine,
    window_steps,
)

if TYPE_CHECKING:
    from perfpilot.probes.launch import Target
    from perfpilot.record import RunRecord

PROFILE_STEPS = 30
WINDOW_S = 2.5  # seconds of steady steps per measured run (at least 20 steps)
DEFAULT_HORIZON_S = 3600.0
COMBINED = "combined"
PLANNED_NOTE = "script.planned"
WAVE = 3  # candidates racing at once (more join as they leave)
ROUND_LIMIT = 60
STAGE_OF = {"num_workers": "loader", "prefetch_factor": "loader", "pin_memory": "loader",
            "persistent_workers": "loader", "batch_size": "batch", "lr_scale": "batch"}


def tune_script(target: Target, *, budget_s: float, out_dir: str | Path,
                resume: bool = False, stages: Sequence[str] | None = None,
                horizon_s: float | None = None, progress: Progress | None = None,
                origin: float | None = None, seed: int = 0, window_s: float = WINDOW_S,
                clock: Callable[[], float] = time.monotonic) -> ScriptTuneRecord:
    """Tune the script ``target`` within ``budget_s`` seconds of wall time (counted from
    ``origin``, a ``clock`` reading; default now) and write the outputs to ``out_dir``.
    ``stages`` limits the knobs (``loader``, ``hardware``, ``batch``; default all);
    ``window_s`` is about how long each run's measured window lasts."""
    from perfpilot.tune.study import Study

    out = Path(out_dir)
    _check_out(out, resume)
    out.mkdir(parents=True, exist_ok=True)
    command = (os.path.basename(target.interpreter), *target.interp_flags, *target.args)
    study = Study(out, fingerprint={"kind": "script", "command": list(command),
                                    "stages": sorted(stages or []), "seed": seed},
                  resume=resume)
    job = _Job(target, study, out, budget_s, progress or NullProgress(),
               origin if origin is not None else clock(), clock, command, seed,
               set(stages) if stages else {"loader", "hardware", "batch"},
               horizon_s or DEFAULT_HORIZON_S, window_s)
    return job.go()


def _check_out(out: Path, resume: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    if resume and not (out / "study.journal").is_file():
        raise UserError(f"--resume: no tuning to continue in {out} (no study.journal)")


class _Job:
    def __init__(self, target: Target, study: Any, out: Path, budget_s: float,
                 progress: Progress, origin: float, clock: Callable[[], float],
                 command: tuple[str, ...], seed: int, stages: set[str],
                 horizon_s: float, window_s: float) -> None:
        self.target, self.study, self.out = target, study, out
        self.budget_s, self.progress, self.origin, self.clock = budget_s, progress, origin, clock
        self.seed, self.stages, self.horizon_s = seed, stages, horizon_s
        self.window_s = window_s
        self.rec = ScriptTuneRecord(command=command, budget_s=budget_s, seed=seed,
                                    machine={"cores": _cores(), "load_before": _load()},
                                    versions=_versions())
        self.race: Race | None = None
        self.cands: list[Candidate] = []

    # ------------------------------------------------------------ time

    def elapsed(self) -> float:
        return self.clock() - self.origin

    def left(self) -> float:
        return self.budget_s - self.elapsed()

    # ------------------------------------------------------------ the steps

    def go(self) -> ScriptTuneRecord:
        self.progress.start(self.budget_s, self.left)
        try:
            with self.study.observe(self.progress):
                record = self.profile()
                self.plan_race(record)
                self.run_race()
                self.decide()
            self.finish("complete", None)
        except KeyboardInterrupt as e:
            why = interrupt.signal_name(interrupt.signum_of(e))
            self.finish("interrupted", f"interrupted ({why}); resume with --resume")
            raise
        except UserError as e:
            self.finish("failed", str(e))
            raise
        except Exception as e:
            self.finish("failed", f"{type(e).__name__}: {e}")
            raise
        finally:
            self.progress.stop()
        return self.rec

    def profile(self) -> RunRecord:
        """The profiling run (recalled on --resume: ``DIR/profile.json``)."""
        from perfpilot.record import RunRecord

        self.progress.phase("profile", None)
        path = self.out / "profile.json"
        if path.is_file() and self.study.resumed:
            record = RunRecord.load(path)
        else:
            self.progress.message(f"profiling {self.target.display} "
                                  f"({PROFILE_STEPS} steady steps)")
            record = _profile_run(self.target, self.seed, max(5.0, 0.15 * self.budget_s))
            record.save(path)
        steps = int(record.step_phases.steps or 0)
        if record.profile.error or (record.profile.exit_code or 0) != 0 or steps == 0:
            raise UserError(_profile_failure(record))
        return record

    def plan_race(self, record: RunRecord) -> None:
        from perfpilot import devices
        from perfpilot.diagnose import diagnose

        cores = record.cpu.usable_cores or record.threads.usable_cores or _cores()
        facts = ScriptFacts.of(record, int(cores))
        findings = diagnose(record, lint=False)
        machine = devices.discover()
        compile_ok = devices.compile_support(facts.device, machine)
        step_s = float(record.step_time_s.median or 0.0)
        window = window_steps(step_s, target_s=self.window_s)
        cands = candidates(facts, findings, machine, compile_ok=compile_ok)
        cands = [c if self._allowed(c) else dataclasses.replace(
            c, fate="skipped", reason=f"not in --only {','.join(sorted(self.stages))}")
            for c in cands]
        self.race = Race(self.study, lambda ch: run_arm(self.target, ch, self._spec()),
                         window=window, progress=self.progress.message)
        self.rec = self.rec.replace(window_steps=window)
        # One baseline run first (it is round 1's): it proves the script runs under the
        # tuner, and what a run costs is what the race's time checks use.
        self.progress.message(f"timing one run of the script ({window} steady steps)")
        first = self.race.run_once(BASELINE, 0)
        if first.state != "complete":
            raise UserError(f"the script as it is failed when run for the tuning: "
                            f"{first.reason}")
        planned = cands
        # A resumed tuning races the candidates the first one listed (in its order), so
        # it recalls their runs.
        stored = self.study.note(PLANNED_NOTE)
        if stored:
            planned = [Candidate.from_dict(d) for d in stored]
        else:
            self.study.set_note(PLANNED_NOTE, [c.to_dict() for c in planned])
        self.cands = planned
        self.rec = self.rec.replace(
            baseline=Baseline(step_s=step_s, samples_per_step=record.step_phases.samples_per_step,
                              startup_s=float(record.timeline.steady_from or 0.0),
                              phases=_shares(record), findings=tuple(
                                  {"id": f.id, "title": f.title,
                                   "estimated_speedup": f.estimated_speedup,
                                   "plan_change": f.plan_change} for f in findings[:8]),
                              loader_sites=_sites(record), threads=facts.threads,
                              usable_cores=facts.cores, device=facts.device),
            candidates=tuple(planned))
        self.facts = facts
        for c in planned:
            if c.fate == "pending":
                self.race.add(c.name, c.changes,
                              batch_ratio=batch_ratio(c.changes, facts.batch_size))
        self.save()
        self.progress.phase("race", self.left())

    def _allowed(self, c: Candidate) -> bool:
        return all(STAGE_OF.get(k, "hardware") in self.stages for k in c.changes)

    def _spec(self) -> ArmSpec:
        return ArmSpec(window_steps=self.rec.window_steps, seed=self.seed)

    def run_race(self) -> None:
        """Rounds over a *wave* of at most :data:`WAVE` candidates at a time, in priority
        order: a candidate joins when one leaves and the time left can still finish the
        ones in the race (a small budget then decides a few candidates instead of
        leaving many half-measured)."""
        race = self.race
        assert race is not None
        queue = [c.name for c in self.cands if c.fate == "pending"]
        active: list[str] = []
        rnd = 0
        while rnd < ROUND_LIMIT:
            while queue and len(active) < WAVE and self._can_admit(active):
                active.append(queue.pop(0))
            if not active:
                break
            if race.run_cost_s(self._run_guess()) * (1 + len(active)) > self.left() - 2.0:
                self.progress.message(f"out of time after {rnd} rounds")
                break
            race.round(rnd, active)
            self.cands = [race.judge(c) if c.name in active else c for c in self.cands]
            active = [c.name for c in self.cands if c.name in active and c.fate == "pending"]
            self.rec = self.rec.replace(candidates=tuple(self.cands))
            self.save()
            rnd += 1
        self.cands = [_undecided(race.judge(c)) if c.fate == "pending" else c
                      for c in self.cands]
        self.cands = [self._pays_back(c) for c in self.cands]
        self.next_round = rnd
        self.rec = self.rec.replace(candidates=tuple(self.cands))
        self.save()

    def _can_admit(self, active: list[str]) -> bool:
        """Whether the time left covers finishing the candidates in the race (to
        MIN_ROUNDS) and screening one more (SCREEN_ROUNDS), baseline runs included."""
        race = self.race
        assert race is not None
        done = [len(race.paired(n)[0]) for n in active]
        rounds = max([SCREEN_ROUNDS, *(MIN_ROUNDS - d for d in done)])
        runs = rounds * (1 + len(active) + 1)
        return runs * race.run_cost_s(self._run_guess()) <= self.left() - 2.0

    def _run_guess(self) -> float:
        b = self.rec.baseline
        return (b.startup_s or 2.0) + self.rec.window_steps * (b.step_s or 0.05) + 1.0

    def _pays_back(self, c: Candidate) -> Candidate:
        """A kept candidate whose extra start-up (compile) does not pay back within the
        horizon is not kept."""
        if c.fate != "kept" or c.ratio is None:
            return c
        gain = run_speedup(self.rec.baseline.startup_s, c.startup_s, c.ratio, self.horizon_s)
        if gain is not None and gain <= 1.0:
            return dataclasses.replace(c, fate="slower", reason=(
                f"{c.ratio:.2f}x per step, but its start-up ({c.startup_s:.1f} s vs "
                f"{self.rec.baseline.startup_s:.1f} s) does not pay back within a "
                f"{self.horizon_s / 60:.0f}-minute run (--horizon)"))
        return c

    def decide(self) -> None:
        from perfpilot.tune.load_label import script_labelled
        from perfpilot.tune.script.outputs import write_outputs

        race = self.race
        assert race is not None
        kept = sorted((c for c in self.cands if c.fate == "kept"),
                      key=lambda c: c.ratio or 0.0, reverse=True)
        chosen: Candidate | None = kept[0] if kept else None
        merged = combine(kept)
        if merged is not None:
            chosen = self._combined(merged, chosen)
        result = self._result(chosen)
        losses = {BASELINE: race.losses(BASELINE)}
        for c in self.cands:
            if c.parity is not None and (not c.parity.ok or c.fate == "kept"):
                losses[c.name] = race.losses(c.name)
        if chosen is not None:
            losses["tuned"] = race.losses(chosen.name)
        self.rec = self.rec.replace(result=result, losses=losses)
        self.rec = script_labelled(self.rec, self.study.trials())  # the load it won at
        self.rec = write_outputs(self.rec, self.target, self.out)

    def _combined(self, merged: dict[str, Any], best: Candidate | None) -> Candidate | None:
        race = self.race
        assert race is not None
        comb = Candidate(COMBINED, merged, "combined winners")
        race.add(COMBINED, merged, batch_ratio=batch_ratio(merged, self.facts.batch_size))
        self.progress.message(f"re-measuring the winners together: {comb.name}")
        rnd = self.next_round
        while comb.fate == "pending" and rnd < self.next_round + MAX_ROUNDS:
            if race.run_cost_s(self._run_guess()) * 2 > self.left() - 2.0:
                break
            race.round(rnd, [COMBINED])
            comb = race.judge(comb)
            rnd += 1
        comb = self._pays_back(_undecided(race.judge(comb)) if comb.fate == "pending"
                               else comb)
        self.cands.append(comb)
        self.rec = self.rec.replace(candidates=tuple(self.cands))
        if comb.fate == "kept" and (best is None or (comb.ratio or 0) >= (best.ratio or 0)):
            return comb
        return best

    def _result(self, chosen: Candidate | None) -> Result:
        if chosen is None:
            return Result(summary="no change was proven faster: the script is kept as it is")
        b = self.rec.baseline.startup_s
        delta = (chosen.startup_s - b) if (chosen.startup_s is not None and b) else None
        return Result(changes=dict(chosen.changes), speedup=chosen.ratio,
                      ci_low=chosen.ci_low, ci_high=chosen.ci_high, verdict="faster",
                      rounds=chosen.rounds, startup_delta_s=delta, horizon_s=self.horizon_s,
                      run_speedup=run_speedup(b, chosen.startup_s, chosen.ratio or 1.0,
                                              self.horizon_s),
                      summary=f"{chosen.name}: {chosen.reason}")

    # ------------------------------------------------------------ saving

    def save(self) -> None:
        from perfpilot.tune_record import RECORD_FILE

        if self.race is not None:
            runs = tuple(v for r in sorted(self.race.runs[BASELINE])
                         if (v := self.race.value(BASELINE, r)) is not None)
            self.rec = self.rec.replace(baseline=dataclasses.replace(
                self.rec.baseline, seconds_per_sample=runs))
        self.rec = self.rec.replace(elapsed_s=round(self.elapsed(), 2))
        self.rec.save(self.out / RECORD_FILE)

    def finish(self, status: str, error: str | None) -> None:
        machine = {**self.rec.machine, "load_after": _load()}
        self.rec = self.rec.replace(status=status, error=error, machine=machine)
        try:
            self.save()
        except Exception:  # noqa: BLE001 - the tuning's own error is the one to show
            pass


def run_speedup(base_startup: float | None, cand_startup: float | None, ratio: float,
                horizon_s: float) -> float | None:
    """Whole-run speedup over a run of ``horizon_s`` seconds as the baseline runs it:
    start-up once, then the steady part ``ratio`` times faster."""
    if base_startup is None or cand_startup is None or ratio <= 0 or horizon_s <= base_startup:
        return None
    tuned = cand_startup + (horizon_s - base_startup) / ratio
    return horizon_s / tuned if tuned > 0 else None


def _undecided(c: Candidate) -> Candidate:
    """A candidate the race had to leave before its interval decided."""
    if c.fate != "pending":
        return c
    why = (f"not decided in {c.rounds} rounds (median {c.ratio:.2f}x): the budget ran out"
           if c.ratio is not None else "not raced: the time went to the candidates ranked "
           "before it (a longer --budget tries it)")
    return dataclasses.replace(c, fate="same" if c.rounds else "skipped", reason=why)


def _profile_run(target: Target, seed: int, duration_s: float) -> RunRecord:
    from perfpilot.probes.assemble import build_record
    from perfpilot.probes.launch import run_profiled

    config = {"steps": PROFILE_STEPS, "duration_s": duration_s, "overrides": {"seed": seed},
              "save_every_s": 0}
    res = run_profiled(target, config, quiet=True)
    if res.interrupted:
        raise KeyboardInterrupt
    if res.raw is None:
        raise UserError(f"{target.display} ended (exit code {res.exit_code}) before its "
                        "first training step: nothing to tune (run it alone to see why)")
    record = build_record(res.raw)
    if res.exit_code and record.profile.exit_code is None:
        record.profile = dataclasses.replace(record.profile, exit_code=res.exit_code)
    return record


def _profile_failure(record: RunRecord) -> str:
    err = record.profile.error
    if err:
        return (f"the script failed while being profiled ({err.get('type')}: "
                f"{str(err.get('message', ''))[:200]}): fix it, then tune")
    if record.profile.exit_code:
        return f"the script exited with code {record.profile.exit_code} while being profiled"
    return ("the script ran no training step perfpilot could see (no backward and "
            "optimizer step): nothing to tune")


def _shares(record: RunRecord) -> dict[str, float]:
    per = record.step_phases.per_step_s_core or {}
    total = sum(per.values())
    return {k: round(v / total, 4) for k, v in per.items()} if total > 0 else {}


def _sites(record: RunRecord) -> tuple[tuple[str, int], ...]:
    return tuple((s[0], int(s[1])) for x in record.loaders if (s := x.site) is not None)


def _cores() -> int:
    from perfpilot.devices import usable_cores

    return int(usable_cores())


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _versions() -> dict[str, str]:
    import platform

    from perfpilot import __version__

    return {"perfpilot": __version__, "python": platform.python_version()}
