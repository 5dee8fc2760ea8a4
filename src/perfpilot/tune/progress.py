"""What the tuner tells a progress display, and the trial runner that feeds it.

The pipeline never prints: it calls a :class:`Progress` (the CLI's is a rich display on
stderr, :class:`perfpilot.render.tune_console.LiveProgress`; tests record the calls).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from perfpilot.record import Trial
    from perfpilot.tune.stage import Outcome, TrialRunner


class Progress(Protocol):
    """Live progress of a tuning: the phase, trials as they end, the best plan so far and
    the time left (``left()`` is a function: a display refreshes it on its own)."""

    def start(self, budget_s: float, left: Callable[[], float]) -> None: ...
    def phase(self, name: str, budget_s: float | None) -> None: ...
    def message(self, text: str) -> None: ...
    def trial(self, trial: Trial, recalled: bool) -> None: ...
    def best(self, text: str) -> None: ...
    def stop(self) -> None: ...


class NullProgress:
    """Shows nothing."""

    def start(self, budget_s: float, left: Callable[[], float]) -> None:
        pass

    def phase(self, name: str, budget_s: float | None) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def trial(self, trial: Trial, recalled: bool) -> None:
        pass

    def best(self, text: str) -> None:
        pass

    def stop(self) -> None:
        pass


CLOCK_KEY = "tuner_clock_s"  # in a trial's measurements: the tuner's clock when it ended


class ReplayClock:
    """A clock for budgets that replays the past, so that a resumed tuning sees, at each
    point of its replay, the time the original run had spent there, and budget decisions
    ("is there time for one more candidate?") come out the same.

    Every trial run now is stamped with this clock's reading (seconds since the tuning
    began, :data:`CLOCK_KEY` in its measurements). When a trial is recalled, the clock
    jumps forward to its stamp; that includes whatever the original run did between
    trials (storage writes, building things), which a sum of trial durations would miss.
    A trial without a stamp moves the clock by its duration. Intervals inside a trial that
    runs now are real time: the clock only jumps between trials."""

    def __init__(self, base: Callable[[], float]) -> None:
        self.base, self.offset = base, 0.0
        self.origin = base()

    def __call__(self) -> float:
        return self.base() + self.offset

    def elapsed(self) -> float:
        return self() - self.origin

    def replayed(self, trial: Trial) -> None:
        stamp = trial.measurements.get(CLOCK_KEY)
        if isinstance(stamp, (int, float)):
            self.offset += max(0.0, stamp - self.elapsed())
        else:
            self.offset += max(trial.finished_at - trial.started_at, 0.0)


class ProgressTrials:
    """A TrialRunner that reports every trial (run now, or recalled from the study),
    stamps trials with the replay clock and moves it over recalled ones."""

    def __init__(self, inner: TrialRunner, progress: Progress,
                 clock: ReplayClock | None = None) -> None:
        self.inner, self.progress, self.clock = inner, progress, clock

    def run(self, stage: str, key: dict[str, Any], fn: Callable[[], Outcome]) -> Trial:
        ran: list[bool] = []

        def call() -> Outcome:
            ran.append(True)
            if self.clock is None:
                return fn()
            import dataclasses

            from perfpilot.tune.stage import outcome_of_exception

            try:
                out = fn()
            except Exception as e:  # noqa: BLE001 - classified as execute_trial would
                out = outcome_of_exception(e)

            stamped = {**out.measurements, CLOCK_KEY: self.clock.elapsed()}
            return dataclasses.replace(out, measurements=stamped)

        trial = self.inner.run(stage, key, call)
        if not ran and self.clock is not None:
            self.clock.replayed(trial)
        self.progress.trial(trial, recalled=not ran)
        return trial

    def trials(self) -> list[Trial]:
        return self.inner.trials()
