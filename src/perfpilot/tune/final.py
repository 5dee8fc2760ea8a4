"""The final check: the tuned plan against the baseline, interleaved, with intervals.

Two comparisons, both through :mod:`perfpilot.measure` (paired, interleaved):

* **Throughput**: one interleaved A/B (chunks A B B A ...) on seconds per training
  sample, in windows long enough for each plan to reach its steady state (untimed settle
  steps after every switch, at least 5 timed steps: :func:`~perfpilot.tune.split_ab.windowed`);
  both Trainers in one process (:func:`~perfpilot.tune.abtest.ab_test`), or each in a
  worker process of its own when the plans differ in a process-wide setting such as
  threads or loader workers (:mod:`perfpilot.tune.split_ab`). Then it is cross-checked
  against the stages' measured gains (:mod:`perfpilot.tune.final_cross`); a disagreement
  beyond both intervals repeats it with separate processes, and the repeat is kept.
* **Time to target**: ``rounds`` pairs of full runs to the workload's target, in the
  order A B | B A | A B ..., round ``r`` of both arms with seed ``seed + r`` (paired), on
  training seconds to the target (evaluation excluded).

The verdict is about the primary comparison (time to target when the workload has a
target and the rounds ran, else throughput) and is ``faster`` only when the whole interval
is above 1. A run that did not reach the target counts with the time it trained (a lower
bound): that is conservative for the baseline, and for the tuned plan it forbids any
claim (verdict ``not-reached``). Nothing here is estimated: every figure is a median of
measured samples, and a comparison that could not be measured says so.

Every run is one trial of the study (a :class:`~perfpilot.tune.units.Portable` unit), so a
killed final check resumes at the next unfinished run and executors may run it elsewhere.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from perfpilot.tune.units import Portable, WorkloadRef, run_unit, throughput_unit

if TYPE_CHECKING:
    from perfpilot.plan import Plan
    from perfpilot.trial import Trial, TrialRunner
    from perfpilot.tune_record import StageRecord

STAGE = "final"
ROUNDS = 5  # measure.MIN_ROUNDS: fewer pairs cannot give a ~95% interval of a median
CAP_FACTOR = 2.0  # a run to the target may train this many times the baseline's time
AB_PAIRS = 10
EVAL_POINTS = 20  # evaluations before the baseline's time to target: the ttt's resolution


@dataclass(frozen=True)
class FinalSettings:
    """What the final check measures; fixed once (stored in the study) so a resumed run
    asks for the same trials. ``skip_ttt`` says why there are no runs to the target."""

    rounds: int
    cap_s: float
    seed: int
    ab: dict[str, Any]
    ab_budget_s: float
    estimate_s: float
    eval_every_s: float | None = None
    skip_ttt: str = ""
    skip_throughput: str = ""
    ab_min_s: float = 0.0  # the throughput A/B's cost with its fewest pairs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FinalSettings:
        return cls(**d)


def plan_final(baseline: dict[str, Any], *, has_target: bool, seed: int,
               budget_left_s: float, rounds: int = ROUNDS, ab_pairs: int = AB_PAIRS,
               chunk_s: float | None = None, ab_max_s: float | None = None) -> FinalSettings:
    """Size the final check from the baseline run's measurements (``run_unit``'s).

    The throughput A/B gets ``ab_pairs`` pairs of chunks, fewer (down to 5) when that would
    take more than ``ab_max_s``. Time to target needs ``rounds`` pairs of runs; when they
    would take more than ``budget_left_s`` (or there is no target, or the baseline missed
    it) they are skipped, and the reason is kept."""
    from perfpilot.tune import abtest as ab
    from perfpilot.tune.split_ab import windowed

    rec = baseline.get("record") or {}
    step_s = float((rec.get("step_time_s") or {}).get("median") or 0.05)
    setup_s = float(baseline.get("setup_s") or 0.5)
    pairs = max(ab_pairs, ab.MIN_PAIRS)

    def cost(settings: Any, pairs: int) -> float:
        # Two arms, each: build, warm-up, then per pair the settle steps and a chunk.
        return 2 * (setup_s + (settings.warmup_steps + pairs * (
            settings.chunk_steps + max(2, settings.min_settle_steps))) * step_s)

    while True:
        settings = windowed(ab.size_settings(step_s, chunk_s=chunk_s or ab.CHUNK_S,
                                             pairs=pairs, max_pairs=pairs))
        ab_cost = cost(settings, settings.pairs)
        if ab_max_s is None or ab_cost <= ab_max_s or pairs <= ab.MIN_PAIRS:
            break
        pairs -= 1
    skip_ttt, cap, total, every = "", 0.0, ab_cost, None
    if not has_target:
        skip_ttt = "the workload has no target"
    elif not baseline.get("reached"):
        skip_ttt = "the baseline did not reach the target"
    else:
        ttt = float(baseline["time_to_target_s"])
        cap = CAP_FACTOR * ttt + 1.0
        every = min(1.0, max(0.02, ttt / EVAL_POINTS))
        ttt_cost = ttt_cost_s(baseline, {}, rounds)  # as slow as the baseline until measured
        if ab_cost + ttt_cost > budget_left_s:
            skip_ttt = (f"budget: {rounds} interleaved pairs of runs to the target need about "
                        f"{ttt_cost:.0f} s, {max(budget_left_s - ab_cost, 0):.0f} s left")
        else:
            total += ttt_cost
    return FinalSettings(rounds=0 if skip_ttt else rounds, cap_s=cap, seed=seed,
                         ab=dict(asdict(settings)), ab_budget_s=ab_cost,
                         estimate_s=total, eval_every_s=every, skip_ttt=skip_ttt,
                         ab_min_s=cost(settings, ab.MIN_PAIRS))


@dataclass
class FinalCheck:
    """Runs the final check through ``trials``; :meth:`run` returns the JSON-able result."""

    trials: TrialRunner
    ref: WorkloadRef
    baseline: Plan
    tuned: Plan
    settings: FinalSettings
    progress: Callable[[str], None] = lambda message: None
    allowed_s: float | None = None  # seconds the whole check may take (None: no limit)
    stages: tuple[StageRecord, ...] = ()  # what the stages measured: the cross-check's side
    runs: dict[str, list[Trial]] = field(default_factory=lambda: {"baseline": [], "tuned": []})
    throughput_s: float = 0.0  # seconds the throughput trials took (as recorded)

    def run(self, rounds: Callable[[dict[str, Any]], tuple[int, str]] | None = None
            ) -> dict[str, Any]:
        """Throughput first, then the runs to the target. ``rounds(throughput)`` may
        revise how many pairs of runs fit, knowing how much faster the tuned plan is
        (it must decide the same on a resume: the pipeline stores its answer)."""
        s = self.settings
        out: dict[str, Any] = {"settings": s.to_dict()}
        out["throughput"] = self.throughput()
        if self.stages:
            self.cross_check(out)
        n, skip = (s.rounds, s.skip_ttt) if rounds is None else rounds(out["throughput"])
        out["time_to_target"] = {"skipped": skip} if n == 0 else self.time_to_target(n)
        out.update(verdict_of_final(out))
        return out

    # ------------------------------------------------------------ throughput

    def throughput(self, *, split: str | None = None, repeat: int = 0) -> dict[str, Any]:
        """The interleaved A/B; ``split``: why each plan must run in its own process
        (default: :func:`~perfpilot.tune.split_ab.split_reason`); ``repeat`` > 0 makes it
        a new trial (the cross-check's repeat)."""
        from perfpilot.tune.split_ab import split_reason, split_throughput_unit

        s = self.settings
        if s.skip_throughput:
            return {"skipped": s.skip_throughput}
        budget = s.ab_budget_s if self.allowed_s is None else min(
            s.ab_budget_s, self.allowed_s - self.throughput_s)
        if budget < s.ab_min_s:
            return {"skipped": f"budget: the interleaved comparison needs about "
                               f"{s.ab_min_s:.1f} s, {max(budget, 0):.1f} s are left"}
        why = split_reason(self.baseline, self.tuned) if split is None else split
        if why and not self.ref.portable:
            why, arms = "", ("one process: the workload has no spec, so another process "
                             "cannot load it")
        else:
            arms = why or "one process: the plans share their process-wide settings"
        self.progress("final check: throughput, baseline vs tuned, interleaved" +
                      (", each plan in its own process" if why else ""))
        a, b = self.baseline.to_dict(), self.tuned.to_dict()
        key = {"check": "throughput", "baseline": a, "tuned": b, "settings": s.ab,
               **({"split": True} if why else {}), **({"repeat": repeat} if repeat else {})}
        fn = Portable(split_throughput_unit if why else throughput_unit,
                      (self.ref, a, b, s.ab, budget), timeout_s=10 * budget + 120)
        trial = self.trials.run(STAGE, key, fn)
        self.throughput_s += max(0.0, trial.finished_at - trial.started_at)
        if trial.state != "complete":
            return {"trial": trial.number, "state": trial.state, "reason": trial.reason,
                    "arms": arms}
        return {"trial": trial.number, **throughput_summary(trial.measurements), "arms": arms,
                "split": bool(why)}

    def cross_check(self, out: dict[str, Any]) -> None:
        """Compare the throughput with the stages' gains; on a disagreement repeat it with
        separate processes and keep the repeat (both are in ``out["cross_check"]``)."""
        from perfpilot.tune import final_cross as fc

        first = out["throughput"]
        cross = fc.compare(first, self.stages, self.baseline)
        if cross["agree"] is False:
            if not self.ref.portable:
                cross = fc.not_repeated(cross, "the workload has no spec, so another process "
                                               "cannot load it")
            elif first.get("split"):  # the same method again would only spend budget
                cross = fc.not_repeated(cross, "it already ran each plan in its own process")
            else:
                self.progress("final check: the throughput disagrees with the stages; "
                              "repeating it with each plan in its own process")
                repeat = self.throughput(split="repeated after the cross-check, each plan "
                                               "in a worker process of its own", repeat=1)
                cross = fc.with_repeat(cross, first, repeat)
                if cross["repeated"]:
                    out["throughput"] = repeat
        out["cross_check"] = cross

    # ------------------------------------------------------------ time to target

    def time_to_target(self, rounds: int) -> dict[str, Any]:
        from perfpilot.measure import round_order

        s = self.settings
        plans = {"baseline": self.baseline, "tuned": self.tuned}
        for r in range(rounds):
            first, second = round_order(r)
            for side in (first, second):
                arm = "baseline" if side == "a" else "tuned"
                self.progress(f"final check: run to the target, round {r + 1}/{rounds}, "
                              f"{arm}")
                trial = self._run(arm, plans[arm], s.seed + r)
                self.runs[arm].append(trial)
                if trial.state != "complete":
                    return self._broken(arm, trial)
        return ttt_summary(self.runs["baseline"], self.runs["tuned"])

    def _run(self, arm: str, plan: Plan, seed: int) -> Trial:
        s = self.settings
        key = {"check": "time-to-target", "arm": arm, "plan": plan.to_dict(), "seed": seed,
               "cap_s": s.cap_s, "eval_every_s": s.eval_every_s}
        fn = Portable(run_unit, (self.ref, plan.to_dict(), seed, True, s.cap_s, s.eval_every_s),
                      timeout_s=10 * s.cap_s + 120)
        return self.trials.run(STAGE, key, fn)

    def _broken(self, arm: str, trial: Trial) -> dict[str, Any]:
        return {"state": trial.state, "arm": arm, "trial": trial.number,
                "reason": f"the {arm} plan's run to the target ended with {trial.state}: "
                          f"{trial.reason}",
                "rounds": _rounds(self.runs["baseline"], self.runs["tuned"])}

    def record_of(self, arm: str) -> dict[str, Any] | None:
        """The RunRecord of the arm's first run to the target (round 0), if any."""
        runs = self.runs.get(arm) or []
        return runs[0].measurements.get("record") if runs and runs[0].state == "complete" \
            else None


# ---------------------------------------------------------------- summaries (pure)


def ttt_cost_s(baseline: dict[str, Any], throughput: dict[str, Any], rounds: int) -> float:
    """Seconds ``rounds`` pairs of runs to the target should take, the tuned run scaled by
    the measured throughput ratio (never below the baseline's cost over 10, never above
    twice the baseline's)."""
    wall = float(baseline.get("wall_s") or baseline.get("time_to_target_s") or 0.0)
    ratio = throughput.get("ratio")
    tuned = wall / min(max(float(ratio), 0.5), 10.0) if isinstance(ratio, (int, float)) \
        else wall
    return rounds * (wall + tuned) * 1.3


def throughput_summary(m: dict[str, Any]) -> dict[str, Any]:
    """Samples/s of each arm and the paired speedup from an A/B's measurements."""
    a, b = m["a"]["s_per_sample"], m["b"]["s_per_sample"]
    return {"verdict": m["verdict"], "ratio": m["ratio"], "ci_low": m["ci_low"],
            "ci_high": m["ci_high"], "n": m["n"], "confidence": m["confidence"],
            "baseline_samples_per_s": 1.0 / statistics.median(a),
            "tuned_samples_per_s": 1.0 / statistics.median(b),
            "baseline_step_s": m["a"]["step_s"], "tuned_step_s": m["b"]["step_s"],
            "samples": {"baseline": list(a), "tuned": list(b)},
            "chunk_steps": m["chunk_steps"], "settle_steps": m.get("settle_steps")}


def _value(t: Trial) -> float:
    m = t.measurements
    return float(m["time_to_target_s"] if m.get("reached") else m["train_s"])


def _rounds(base: list[Trial], tuned: list[Trial]) -> list[dict[str, Any]]:
    rows = []
    for i, (a, b) in enumerate(zip(base, tuned, strict=False)):
        if a.state == "complete" and b.state == "complete":
            rows.append({"round": i, "baseline_s": _value(a), "tuned_s": _value(b),
                         "baseline_reached": bool(a.measurements.get("reached")),
                         "tuned_reached": bool(b.measurements.get("reached")),
                         "trials": [a.number, b.number]})
    return rows


def ttt_summary(base: list[Trial], tuned: list[Trial]) -> dict[str, Any]:
    """The paired comparison of training seconds to the target (lower is better)."""
    from perfpilot.measure import compare_samples

    rows = _rounds(base, tuned)
    a = [r["baseline_s"] for r in rows]
    b = [r["tuned_s"] for r in rows]
    c = compare_samples(a, b, paired=True, lower_is_better=True)
    missed = sum(not r["tuned_reached"] for r in rows)
    base_missed = sum(not r["baseline_reached"] for r in rows)
    verdict: str = c.verdict
    if missed and verdict != "slower":
        verdict = "not-reached"
    return {"verdict": verdict, "ratio": c.ratio, "ci_low": c.ci_low, "ci_high": c.ci_high,
            "n": c.n, "confidence": c.confidence, "baseline": c.a.to_dict(),
            "tuned": c.b.to_dict(), "rounds": rows, "tuned_missed": missed,
            "baseline_missed": base_missed}


def verdict_of_final(out: dict[str, Any]) -> dict[str, Any]:
    """The primary comparison, its verdict and the one-sentence claim it supports."""
    ttt, thr = out.get("time_to_target", {}), out.get("throughput", {})
    primary = "time_to_target" if "ratio" in ttt or "state" in ttt else "throughput"
    res = ttt if primary == "time_to_target" else thr
    if "state" in thr and "state" not in res:  # NaN or a crash while timing: no claim
        res = {**thr, "reason": f"the throughput comparison ended with {thr['state']}: "
                                f"{thr.get('reason', '')}"}
    if "state" in res:  # a run failed or produced NaN
        return {"primary": primary, "verdict": "failed", "claim": res["reason"]}
    if "ratio" not in res:
        why = res.get("skipped", "not measured")
        return {"primary": primary, "verdict": "unmeasured",
                "claim": f"no comparison was measured ({why}); no gain is claimed"}
    what = "time to the target" if primary == "time_to_target" else "throughput"
    ci = f"{res['ratio']:.2f}x (95% CI {res['ci_low']:.2f}-{res['ci_high']:.2f}, " \
         f"{res['n']} interleaved rounds)"
    verdict = res["verdict"]
    claims = {
        "faster": f"the tuned plan is faster: {what} {ci}",
        "same": f"the tuned plan is not significantly faster than the baseline on {what}: {ci}",
        "slower": f"the tuned plan is slower than the baseline on {what}: {ci}",
        "not-reached": f"the tuned plan missed the target in {res.get('tuned_missed')} of "
                       f"{res['n']} runs; no gain is claimed ({ci} counting those runs' "
                       "training time)",
    }
    return {"primary": primary, "verdict": verdict, "claim": claims[verdict]}


def keeps_tuned(final: dict[str, Any], batch_win: str | None = None) -> tuple[bool, str]:
    """Whether plan.json gets the tuned plan, and why (measured slower, missing the target
    or failing in the final check sends the baseline back).

    ``batch_win``: the batch stage's words when it changed the batch size or LR on measured
    time to the target (or to a proxy level). A batch size that needs fewer samples can
    have *lower* throughput; when the final check measured throughput only (no time to
    target fitted) and its "slower" agrees with the stages' own throughput ratios (the
    cross-check), that loss is the one the batch stage already counted, so the tuned plan
    is kept and the words say both."""
    v = final.get("verdict")
    cross = final.get("cross_check") or {}
    if v == "slower" and batch_win and final.get("primary") == "throughput" \
            and cross.get("agree") is True:
        return True, (f"the final check measured throughput only ({final['claim']}), and "
                      f"{cross.get('words', 'it agrees with the stages')}: the batch stage "
                      "traded samples/s for fewer samples to the target, measured on time to "
                      f"target there ({batch_win})")
    if v in ("slower", "not-reached", "failed"):
        return False, f"the baseline is kept: {final['claim']}"
    if v == "faster":
        return True, "the final check measured it faster than the baseline"
    if v == "same":
        return True, ("each change was a measured gain in its own stage; the final check "
                      "did not show the whole plan faster, so no overall gain is claimed")
    return True, "each change was a measured gain in its own stage; no overall comparison " \
                 "was measured"
