"""The race: the baseline and the candidates run in interleaved rounds, decided by intervals.

Each round runs every arm still in the race once, in an order rotated from round to
round (drift and "who ran after whom" hit every arm alike). A candidate's speedup is
the median over rounds of ``baseline s/sample ÷ candidate s/sample`` from runs of the
same round, with a 95% interval (:func:`perfpilot.measure.compare_samples`, which needs
:data:`~perfpilot.measure.MIN_ROUNDS` rounds).

* A run that fails rejects its candidate at once, with the reason.
* Parity is judged on the candidate's first run against the baseline's of the same round
  (:mod:`perfpilot.tune.script.parity`); a candidate whose losses differ is rejected.
* After :data:`SCREEN_ROUNDS` rounds a candidate whose median is below
  ``1 + MIN_EFFECT`` leaves the race (``slower`` or ``same``): it could hardly be proven
  faster, and its rounds are better spent on the promising ones.
* From :data:`MIN_ROUNDS` rounds on, a candidate leaves when its interval decides
  (above ``1 + MIN_EFFECT``: ``kept``; below: ``slower``; inside ``±MIN_EFFECT``:
  ``same``), or at :data:`MAX_ROUNDS` (``same``).

Every run is a trial of the study (stage ``script``, key: arm, changes, round, window),
so a resumed tuning recalls the runs it has and makes the same decisions.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from perfpilot.measure import MIN_ROUNDS, compare_samples
from perfpilot.script_plan import changes_math, describe
from perfpilot.script_tune_record import Candidate
from perfpilot.tune.script.parity import judge_runs

if TYPE_CHECKING:
    from perfpilot.trial import Outcome, Trial, TrialRunner

STAGE = "script"
SCREEN_ROUNDS = 3
MAX_ROUNDS = 9
# Kept only when the whole interval is above 1 + this; "same" once it lies within ±this
# (run-to-run noise of a shared machine makes smaller gains unprovable in a few rounds).
MIN_EFFECT = 0.03
EARLY = 0.8  # a candidate's run with fewer steady steps than this share of the baseline's
BASELINE = "baseline"


class Race:
    """Runs rounds through ``trials`` (the study); ``run(changes) -> Outcome`` is one run."""

    def __init__(self, trials: TrialRunner, run: Callable[[dict[str, Any]], Outcome], *,
                 window: int, progress: Callable[[str], None] = lambda m: None) -> None:
        self.trials, self.run_fn, self.window = trials, run, window
        self.progress = progress
        self.runs: dict[str, dict[int, Trial]] = {BASELINE: {}}
        self.changes: dict[str, dict[str, Any]] = {BASELINE: {}}
        self.walls: list[float] = []  # seconds each measured run took (for the budget)
        self.ttl: dict[str, float] = {}  # arms judged by time to loss -> batch ratio

    # ------------------------------------------------------------ running

    def add(self, name: str, changes: dict[str, Any], *, batch_ratio: float | None = None
            ) -> None:
        """A candidate; ``batch_ratio`` (its batch over the baseline's) makes it judged by
        time to the baseline's loss (:mod:`perfpilot.tune.script.ttl`), not by speed."""
        self.runs.setdefault(name, {})
        self.changes[name] = dict(changes)
        if batch_ratio is not None:
            self.ttl[name] = float(batch_ratio)

    def run_once(self, name: str, rnd: int) -> Trial:
        changes = self.changes[name]
        key = {"arm": name, "changes": changes, "round": rnd, "window": self.window}
        trial = self.trials.run(STAGE, key, lambda: self.run_fn(changes))
        self.runs[name][rnd] = trial
        if trial.finished_at > trial.started_at > 0:
            self.walls.append(trial.finished_at - trial.started_at)
        return trial

    def round(self, rnd: int, names: list[str]) -> None:
        """Run the baseline and ``names`` once each, in an order rotated by ``rnd``."""
        arms = [BASELINE, *names]
        k = rnd % len(arms)
        for name in arms[k:] + arms[:k]:
            self.progress(f"round {rnd + 1}: {name}")
            self.run_once(name, rnd)

    def run_cost_s(self, default: float) -> float:
        """Median wall seconds of one run so far (``default`` before any)."""
        return statistics.median(self.walls) if self.walls else default

    # ------------------------------------------------------------ reading

    def value(self, name: str, rnd: int) -> float | None:
        t = self.runs.get(name, {}).get(rnd)
        if t is None or t.state != "complete":
            return None
        v = t.measurements.get("seconds_per_sample")
        return float(v) if isinstance(v, (int, float)) and v > 0 else None

    def paired(self, name: str) -> tuple[list[float], list[float]]:
        """Baseline and candidate costs from the rounds where both completed: seconds per
        sample, or for a time-to-loss arm seconds to the baseline's loss."""
        a, b = [], []
        for rnd in sorted(self.runs.get(name, {})):
            pair = self._ttl_pair(name, rnd) if name in self.ttl else \
                (self.value(BASELINE, rnd), self.value(name, rnd))
            if pair is not None and pair[0] is not None and pair[1] is not None:
                a.append(pair[0])
                b.append(pair[1])
        return a, b

    def _ended_early(self, name: str, rnd: int) -> str | None:
        """The candidate's run ended (exit code 0) with clearly fewer steady steps than
        the baseline's of the same round: the change made the script stop early. Not
        for a batch change: a larger batch legitimately runs fewer steps per epoch."""
        if name in self.ttl:
            return None
        base = self.runs[BASELINE].get(rnd)
        if base is None or base.state != "complete":
            return None
        nb = base.measurements.get("steps") or 0
        nc = self.runs[name][rnd].measurements.get("steps") or 0
        if nb and nc < EARLY * nb:
            return (f"the script ended early: {nc} steady steps, the baseline ran {nb} "
                    "in the same round")
        return None

    def _rows(self, name: str, rnd: int) -> list[Any]:
        t = self.runs.get(name, {}).get(rnd)
        return list(t.measurements.get("losses") or []) if t and t.state == "complete" else []

    def _ttl_pair(self, name: str, rnd: int) -> tuple[float, float | None] | None:
        """(baseline, candidate) seconds to the baseline's loss level in round ``rnd``;
        the candidate's is None when it never got there."""
        from perfpilot.tune.script.ttl import candidate_span, target_level, time_to

        base, cand = self._rows(BASELINE, rnd), self._rows(name, rnd)
        goal = target_level(base) if base and cand else None
        if goal is None:
            return None
        level, tb, span = goal
        return tb, time_to(cand, level, candidate_span(span, self.ttl[name]))

    def failure(self, name: str) -> str | None:
        for rnd in sorted(self.runs.get(name, {})):
            t = self.runs[name][rnd]
            if t.state != "complete":
                return f"round {rnd + 1}: {t.reason or t.state}"
            early = self._ended_early(name, rnd)
            if early:
                return f"round {rnd + 1}: {early}"
            if name in self.ttl:
                pair = self._ttl_pair(name, rnd)
                if pair is None and self.runs[BASELINE].get(rnd) is not None:
                    return (f"round {rnd + 1}: no timed training losses to compare (the "
                            "script's loss is not a scalar passed to backward)")
                if pair is not None and pair[1] is None:
                    return (f"round {rnd + 1}: did not reach the baseline's training loss "
                            f"within its {self.window} steps")
        return None

    def startup(self, name: str) -> float | None:
        vals = [t.measurements.get("startup_s") for t in self.runs.get(name, {}).values()
                if t.state == "complete"]
        vals = [float(v) for v in vals if isinstance(v, (int, float))]
        return statistics.median(vals) if vals else None

    def losses(self, name: str) -> list[list[float]]:
        for rnd in sorted(self.runs.get(name, {})):
            t = self.runs[name][rnd]
            if t.state == "complete" and t.measurements.get("losses"):
                return [list(r) for r in t.measurements["losses"]]
        return []

    # ------------------------------------------------------------ deciding

    def judge(self, cand: Candidate) -> Candidate:
        """The candidate's fate from its runs so far (``pending``: keep racing)."""
        name = cand.name
        fields: dict[str, Any] = {"seconds_per_sample": tuple(
            v for r in sorted(self.runs.get(name, {}))
            if (v := self.value(name, r)) is not None),
            "startup_s": self.startup(name)}
        fail = self.failure(name)
        refused = self._refused(name)
        if fail is not None:
            return dataclasses.replace(cand, fate="rejected", reason=fail, refused=refused,
                                       **fields)
        parity = self._parity(name) if name not in self.ttl else None
        if parity is not None:
            fields["parity"] = parity
            if not parity.ok:
                return dataclasses.replace(cand, fate="rejected", reason=parity.rule, **fields)
        a, b = self.paired(name)
        n = len(a)
        fields["rounds"] = n
        if n == 0:
            return dataclasses.replace(cand, **fields)
        med = statistics.median(x / y for x, y in zip(a, b, strict=True))
        fields["ratio"] = med
        if n < MIN_ROUNDS:
            if n >= SCREEN_ROUNDS and med < 1.0 + MIN_EFFECT:
                fate = "slower" if med < 1.0 / (1.0 + MIN_EFFECT) else "same"
                return dataclasses.replace(
                    cand, fate=fate, reason=f"left the race after {n} rounds: median "
                    f"{med:.2f}x, below the {1 + MIN_EFFECT:g}x a change must prove (the "
                    "rounds go to the promising ones)", **fields)
            return dataclasses.replace(cand, **fields)
        c = compare_samples(a, b, paired=True, min_effect=MIN_EFFECT)
        fields.update(ratio=c.ratio, ci_low=c.ci_low, ci_high=c.ci_high)
        what = " sooner to the baseline's training loss" if name in self.ttl else ""
        figures = (f"{c.ratio:.2f}x{what} (95% CI {c.ci_low:.2f}-{c.ci_high:.2f}, "
                   f"{n} rounds)")
        if c.verdict == "faster":
            return dataclasses.replace(cand, fate="kept", reason=f"faster: {figures}",
                                       **fields)
        if c.verdict == "slower":
            return dataclasses.replace(cand, fate="slower", reason=f"slower: {figures}",
                                       **fields)
        if c.equivalent:
            return dataclasses.replace(cand, fate="same", reason=f"no difference beyond "
                                       f"±{MIN_EFFECT:.0%}: {figures}", **fields)
        if n >= MAX_ROUNDS:
            return dataclasses.replace(cand, fate="same", reason=f"not proven faster: "
                                       f"{figures}", **fields)
        return dataclasses.replace(cand, **fields)

    def _parity(self, name: str) -> Any:
        for rnd in sorted(self.runs.get(name, {})):
            base, cand = self.runs[BASELINE].get(rnd), self.runs[name][rnd]
            if base is None or base.state != "complete" or cand.state != "complete":
                continue
            return judge_runs(base.measurements.get("losses") or [],
                              cand.measurements.get("losses") or [],
                              changes_math=changes_math(self.changes[name]),
                              noise=self.baseline_noise())
        return None

    def baseline_noise(self) -> float:
        """How far two baseline runs' losses (same seed) differ: the script's own
        nondeterminism, a floor under every parity tolerance."""
        from perfpilot.tune.script.parity import window_diff

        rows = [t.measurements.get("losses") or [] for _, t in sorted(self.runs[BASELINE].items())
                if t.state == "complete"]
        diffs = [window_diff(rows[0], r) for r in rows[1:3]]
        diffs = [d for d in diffs if d is not None]
        return max(diffs) if diffs else 0.0

    def _refused(self, name: str) -> dict[str, str]:
        for t in self.runs.get(name, {}).values():
            if t.measurements.get("refused"):
                return dict(t.measurements["refused"])
        return {}


def label(changes: dict[str, Any]) -> str:
    return describe(changes)
