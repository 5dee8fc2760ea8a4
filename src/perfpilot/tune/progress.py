"""What the tuner tells a progress display, and the trial runner that feeds it.

The pipeline never prints: it calls a :class:`Progress` (the CLI's is a rich display on
stderr, :class:`perfpilot.render.report_console.LiveProgress`; tests record the calls).
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


class ProgressTrials:
    """A TrialRunner that reports every trial (run now, or recalled from the study)."""

    def __init__(self, inner: TrialRunner, progress: Progress) -> None:
        self.inner, self.progress = inner, progress

    def run(self, stage: str, key: dict[str, Any], fn: Callable[[], Outcome]) -> Trial:
        ran: list[bool] = []

        def call() -> Outcome:
            ran.append(True)
            return fn()

        trial = self.inner.run(stage, key, call)
        self.progress.trial(trial, recalled=not ran)
        return trial

    def trials(self) -> list[Trial]:
        return self.inner.trials()
