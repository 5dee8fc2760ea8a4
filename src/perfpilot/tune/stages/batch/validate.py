"""Validation of batch/LR configurations on measured time to target, and the decision.

A configuration (batch, LR, warmup) has runs, one per *round* (seed offset). A run either
reached the target, or was stopped at a cutoff (its time is then a lower bound,
"censored"), or diverged. :class:`Validation` drives the runs.

Time to target is measured in two parts: the *samples* a real run needed to reach the
target (it depends on the seed, not on the machine's load) divided by the throughput at
that batch size (measured interleaved, with repeats, so machine drift hits every size
alike). On a shared machine, wall-clock times of runs made one after the other differ by
more than the effects being compared; the product does not. Each run's wall-clock
training time is kept next to it in the evidence. Cutoffs are in samples for the same
reason. The steps:

1. **Screen** the baseline and the predicted candidates, one run each; each run is cut
   off at ``(1 + slack) x`` the best time so far (it can no longer win).
2. **Refine** (optional, ``refine_runs`` > 0): a pattern search on the log2 grid around
   the best configuration: LR x2 and /2 at its batch, the neighbouring batch sizes with
   the LR moved by the rule, then with the LR kept; every improvement restarts the search
   from the new best, and it ends at a configuration no neighbour beats.
   The theory only ranks the starting points; this step measures where the optimum is,
   because the baseline's LR is rarely the best one.
3. **Repeat** the baseline and the finalists (the best configurations within reach) with
   new seeds, at a lenient cutoff, while a whole round fits in the budget; when it no
   longer does, the baseline and the best alone go on while their round fits.
4. **Decide** (:func:`decide`): the lowest median time wins among configurations that
   reached the target and never diverged, but replaces the baseline only when *shown*
   faster on the rounds both ran: :func:`perfpilot.measure.compare_samples` (paired by
   round) with at least :data:`~perfpilot.measure.MIN_ROUNDS` rounds; with 3 or 4 rounds,
   when the intervals of the two medians (:func:`perfpilot.measure.summarize`) do not
   overlap (at 3 runs each: all of B's below all of A's, 1 chance in 20); never on fewer.

A censored baseline time is a lower bound of its true time, so counting it at its cutoff
only makes the baseline look better: the comparison stays conservative.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from perfpilot.tune.stages.batch.runs import RunConfig

if TYPE_CHECKING:
    from perfpilot.trial import Trial

RunFn = Callable[[RunConfig, int, int], "Trial"]  # (config, round, max_samples) -> trial
MakeFn = Callable[[int, float], RunConfig]  # (batch, lr) -> config with its warmup
SecondsFn = Callable[[int, float], float]  # (batch, samples) -> seconds of training
# Screening and refinement stop early enough to leave this many repeat rounds (baseline +
# best): two more runs each make three, the fewest whose median intervals can separate.
RESERVED_ROUNDS = 2
# With 3 runs each, all of B's below all of A's happens by chance 1 time in 20
# (exchangeable runs): the fewest whose median intervals separating means something.
MIN_INTERVAL_RUNS = 3


@dataclass
class ConfigRuns:
    """The time-to-target runs of one configuration, by round, and how it was found."""

    config: RunConfig
    origin: str = "candidate"
    runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    skipped: str = ""

    def add(self, round_: int, trial: Trial, seconds: SecondsFn) -> None:
        """Record a run; its time is ``seconds(batch, samples)`` (censored when stopped)."""
        m = trial.measurements
        samples = m.get("samples_to_target", m.get("samples"))
        value = (seconds(self.config.batch_size, samples)
                 if samples is not None and trial.state in ("complete", "pruned") else None)
        # The cost of a run like it: its wall time without the noise-scale measurements
        # that only the baseline's first run makes.
        cost = max(trial.finished_at - trial.started_at - m.get("noise_cost_s", 0.0), 0.0)
        self.runs[round_] = {
            "round": round_, "state": trial.state, "reached": trial.state == "complete",
            "ttt_s": value, "samples": samples, "steps": m.get("steps"),
            "wall_ttt_s": m.get("ttt_s"), "train_time_s": m.get("train_time_s"),
            "eval_time_s": m.get("eval_time_s"), "cost_s": cost, "reason": trial.reason,
            "curve": m.get("curve", []),
        }

    def values(self) -> dict[int, float]:
        """Round -> time (reached or censored); diverged runs have none."""
        return {r: float(x["ttt_s"]) for r, x in self.runs.items()
                if x["ttt_s"] is not None and x["state"] in ("complete", "pruned")}

    def diverged(self) -> bool:
        return any(x["state"] not in ("complete", "pruned") for x in self.runs.values())

    def reached(self) -> bool:
        return not self.diverged() and any(x["reached"] for x in self.runs.values())

    def median(self) -> float:
        vals = list(self.values().values())
        return statistics.median(vals) if vals else float("inf")

    def cost_ratios(self) -> list[float]:
        """Each run's wall cost over its modelled time (evaluation, set-up, load)."""
        return [x["cost_s"] / x["ttt_s"] for x in self.runs.values() if x["ttt_s"]]

    def to_dict(self, predicted_ttt_s: float | None = None) -> dict[str, Any]:
        from perfpilot.measure import summarize

        vals = list(self.values().values())
        measured = summarize(vals).to_dict() if len(vals) >= 2 else (
            {"median": vals[0], "n": 1} if vals else None)
        return {**self.config.key(), "origin": self.origin, "predicted_ttt_s": predicted_ttt_s,
                "measured_ttt_s": measured, "reached": self.reached(),
                "diverged": self.diverged(), "skipped": self.skipped,
                "runs": [self.runs[r] for r in sorted(self.runs)]}


@dataclass(frozen=True)
class Decision:
    config: RunConfig
    why: str
    verdict: str  # "faster" (switched), "baseline-best", "same", "undecided", "none-reached"
    comparison: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.config.key(), "why": self.why, "verdict": self.verdict,
                "comparison": self.comparison}


class Validation:
    """Runs configurations through ``run`` within the budget ``left_s()`` reports.

    ``throughput``: samples/s per batch size (the sizes the refinement may move between);
    ``box``: the most seconds of training a run may take; ``make(batch, lr)`` builds a
    config (adding its warmup); ``rescale(lr, b_from, b_to)`` moves an LR between sizes.
    """

    def __init__(self, run: RunFn, left_s: Callable[[], float], *, box: float,
                 slack: float, throughput: dict[int, float], make: MakeFn,
                 rescale: Callable[[float, int, int], float], lr_factor: float = 2.0,
                 progress: Callable[[str], None] = lambda m: None) -> None:
        self._run, self.left_s, self.box, self.slack = run, left_s, box, slack
        self.throughput = dict(throughput)
        self.sizes, self.make, self.rescale = sorted(throughput), make, rescale
        self.lr_factor, self.progress = lr_factor, progress
        self.pool: dict[RunConfig, ConfigRuns] = {}

    # ------------------------------------------------------------ bookkeeping

    def seconds(self, batch: int, samples: float) -> float:
        return samples / self.throughput[batch]

    def max_samples(self, batch: int, seconds: float) -> int:
        return max(1, math.ceil(seconds * self.throughput[batch]))

    def record(self, cfg: RunConfig, round_: int, trial: Trial, origin: str) -> ConfigRuns:
        runs = self.pool.setdefault(cfg, ConfigRuns(cfg, origin))
        runs.add(round_, trial, self.seconds)
        return runs

    def best(self) -> ConfigRuns | None:
        ok = [x for x in self.pool.values() if x.reached()]
        return min(ok, key=lambda x: (x.median(), x.config.batch_size)) if ok else None

    def screen_cutoff(self) -> float:
        best = self.best()
        return self.box if best is None else min(self.box, (1 + self.slack) * best.median())

    def try_config(self, cfg: RunConfig, origin: str, reserve: bool = True) -> bool:
        """One screening run (round 0) if the budget allows, keeping (with ``reserve``)
        enough for the repeats a decision needs; whether it became the best."""
        if cfg in self.pool:
            return False
        cutoff = self.screen_cutoff()
        kept = self.reserve() if reserve else 0.0
        if self.left_s() < self.cost(cutoff) + kept:
            self.pool[cfg] = ConfigRuns(cfg, origin, skipped=(
                f"budget left ({max(self.left_s(), 0):.0f} s) below its cutoff"
                + (f" plus {kept:.0f} s kept for repeats" if kept else "")))
            return False
        self.progress(f"batch: time to target at batch {cfg.batch_size} (lr {cfg.lr:.3g}, "
                      f"{origin})")
        before = self.best()
        trial = self._run(cfg, 0, self.max_samples(cfg.batch_size, cutoff))
        runs = self.record(cfg, 0, trial, origin)
        return runs.reached() and (before is None or runs.median() < before.median())

    # ------------------------------------------------------------ the steps

    def screen(self, configs: Sequence[RunConfig],
               origin_of: Mapping[RunConfig, str] | None = None) -> None:
        """The candidates, best first (``origin_of`` names how a config was found when it
        was not ``predicted``); the first one may use the repeats' reserve (the stage's
        purpose is to test at least one)."""
        for i, cfg in enumerate(configs):
            self.try_config(cfg, (origin_of or {}).get(cfg, "predicted"), reserve=i > 0)

    def reserve(self) -> float:
        """The cost of :data:`RESERVED_ROUNDS` repeats of the baseline and the best."""
        best = self.best()
        base = next((x for x in self.pool.values() if x.origin == "baseline"), None)
        if best is None or base is None:
            return 0.0
        return RESERVED_ROUNDS * self.round_cost([base] if best is base else [base, best])

    def refine(self, max_runs: int) -> None:
        """Pattern search around the best (see the module docstring), ``max_runs`` runs."""
        used = 0
        while used < max_runs and self.left_s() > 0:
            best = self.best()
            if best is None:
                return
            moves = [m for m in self.neighbours(best.config) if m not in self.pool]
            if not moves:
                return
            for cfg, origin in ((m, "refined") for m in moves):
                used += 1
                if self.try_config(cfg, origin) or used >= max_runs:
                    break
            else:
                return  # no neighbour improved: a local optimum on the grid

    def neighbours(self, cfg: RunConfig) -> list[RunConfig]:
        """LR up and down; the neighbouring batch sizes with the LR moved by the rule;
        then the same sizes with the LR kept (the rule is a prior, not a law)."""
        b, lr, f = cfg.batch_size, cfg.lr, self.lr_factor
        out = [self.make(b, lr * f), self.make(b, lr / f)]
        i = self.sizes.index(b) if b in self.sizes else -1
        near = [self.sizes[j] for j in (i + 1, i - 1) if i >= 0 and 0 <= j < len(self.sizes)]
        out += [self.make(nb, self.rescale(lr, b, nb)) for nb in near]
        out += [self.make(nb, lr) for nb in near]
        return list(dict.fromkeys(out))  # a rule of "none" makes both kinds equal

    def repeat(self, baseline: RunConfig, rounds: int, finalists: int) -> None:
        """Rounds 1.. for the baseline and the ``finalists`` best configs within reach of
        the best (fixed before the first repeat, so all are paired by round), at a lenient
        cutoff (twice the slowest median), while a whole round fits in the budget; the
        slowest finalists are dropped (:meth:`trim`) before the baseline and the best
        give up."""
        best = self.best()
        if best is None:
            return
        reach = (1 + self.slack) * best.median()
        others = sorted((x for x in self.pool.values() if x.config != baseline
                         and x.reached() and x.median() <= reach),
                        key=lambda x: (x.median(), x.config.batch_size))[:finalists]
        group = [self.pool[baseline]] + others
        # Fewer finalists rather than too few rounds to decide: drop the slowest until
        # the reserved rounds fit, and again before each round.
        self.trim(group, RESERVED_ROUNDS)
        if len(group) < 2:
            return
        cutoff = min(self.box, 2 * max(x.median() for x in group))
        for r in range(1, rounds):
            self.trim(group, 1)
            if self.left_s() < self.round_cost(group):
                return
            for x in group if r % 2 else group[::-1]:  # alternate who runs first
                self.progress(f"batch: time to target at batch {x.config.batch_size} "
                              f"(lr {x.config.lr:.3g}, run {r + 1})")
                trial = self._run(x.config, r, self.max_samples(x.config.batch_size, cutoff))
                x.add(r, trial, self.seconds)

    def trim(self, group: list[ConfigRuns], rounds: int) -> None:
        """Drop the last (slowest) finalists of ``group`` until ``rounds`` rounds fit in
        the budget or only the baseline and the best are left."""
        while len(group) > 2 and self.left_s() < rounds * self.round_cost(group):
            group.pop()

    def round_cost(self, group: Sequence[ConfigRuns]) -> float:
        """The expected wall time of one run of each configuration in ``group``."""
        return sum(self.cost(x.median(), x) for x in group)

    def cost(self, seconds: float, runs: ConfigRuns | None = None) -> float:
        """Wall time a run of ``seconds`` modelled training time is expected to take.

        Modelled time excludes evaluation, set-up and the machine's load; a run's wall
        time includes them, so the time is scaled by the *median* ratio wall / modelled
        of ``runs``' own runs when it has any (evaluation cost differs between batch
        sizes), else of every run so far. The median, not the largest: on charlm one run
        whose training took 136 s of wall time for 61 s modelled (ratio 2.7x; the other six
        1.2-2.0x, median 1.5x) made every later run look unaffordable. Never below 1.
        """
        seen = runs.cost_ratios() if runs is not None else []
        seen = seen or [q for r in self.pool.values() for q in r.cost_ratios()]
        return seconds * max(1.0, statistics.median(seen)) if seen else seconds


def decide(all_runs: Sequence[ConfigRuns], baseline: RunConfig,
           goal: str = "the target") -> Decision:
    """The measured winner (see the module docstring); ``goal`` names what the runs were
    timed to in the words (under a proxy target, the decision level)."""
    base = next(x for x in all_runs if x.config == baseline)
    eligible = [x for x in all_runs if x.reached()]
    if not eligible:
        return Decision(baseline, f"no configuration reached {goal} within its time box; "
                        "the baseline is kept", "none-reached")
    # The best measured: among the configurations with the most runs (the finalists that
    # were repeated), the lowest median; a single lucky screening run does not count more.
    most = max(len(x.values()) for x in eligible)
    best = min((x for x in eligible if len(x.values()) == most),
               key=lambda x: (x.median(), x.config != baseline))
    if best is base:
        return Decision(baseline, f"no candidate beat the baseline's median time to {goal} "
                        f"({base.median():.3g} s over {most} run(s))", "baseline-best")
    rounds = sorted(set(base.values()) & set(best.values()))
    a = [base.values()[r] for r in rounds]
    b = [best.values()[r] for r in rounds]
    verdict, comparison, detail = _compare(a, b)
    name = f"batch {best.config.batch_size} (lr {best.config.lr:.3g})"
    if verdict == "faster":
        return Decision(best.config, f"{name} reached {goal} faster: {detail}",
                        verdict, comparison)
    return Decision(baseline, f"{name} had the lowest median time to {goal} but was not "
                    f"shown faster than the baseline: {detail}; the baseline is kept",
                    verdict, comparison)


def _compare(a: list[float], b: list[float]) -> tuple[str, dict[str, Any] | None, str]:
    from perfpilot.measure import MIN_ROUNDS, compare_samples, summarize

    n = len(a)
    if n >= MIN_ROUNDS:
        c = compare_samples(a, b, paired=True, lower_is_better=True)
        return c.verdict, {"method": "compare_samples", **c.to_dict()}, c.describe()
    if n >= MIN_INTERVAL_RUNS:
        sa, sb = summarize(a), summarize(b)
        faster = sb.ci_high < sa.ci_low
        detail = (f"median {sb.median:.3g} s (95% CI {sb.ci_low:.3g}-{sb.ci_high:.3g}) vs "
                  f"baseline {sa.median:.3g} s ({sa.ci_low:.3g}-{sa.ci_high:.3g}), {n} runs each"
                  f"{'' if faster else ', intervals overlap'}")
        cmp = {"method": "median intervals", "a": sa.to_dict(), "b": sb.to_dict(),
               "ratio": sa.median / sb.median, "n": n}
        return ("faster" if faster else "same"), cmp, detail
    detail = (f"only {n} paired run(s) fit in the budget (at least {MIN_INTERVAL_RUNS} are "
              f"needed to decide): {', '.join(f'{y:.3g}' for y in b)} s vs "
              f"{', '.join(f'{x:.3g}' for x in a)} s")
    return "undecided", None, detail
