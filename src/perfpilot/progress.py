"""What measuring code tells a progress display, and the display that shows nothing.

The engine (``perfpilot run``'s training loop) and the tuner never print: they call a
:class:`Progress` that the command supplies (:mod:`perfpilot.render.progress` has the
terminal's rich display and the plain timestamped lines used without a terminal).
Library callers and tests pass nothing and get :class:`NullProgress`.

A progress is also a :class:`~perfpilot.trial.TrialObserver`: the tuner hands it to its
trial runner, which reports each trial as it starts and ends (or is recalled).

Every method is optional to implement: subclass :class:`NullProgress` and override what
you show. A display must not raise (measuring goes on whatever it does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from perfpilot.trial import Trial


class Progress(Protocol):
    """Live progress of a tuning (the ``start`` .. ``stop`` part) or of one training run
    (``run_*``). ``left()`` is the tuning's time left in seconds (a function: a display
    refreshes it on its own)."""

    # a tuning
    def start(self, budget_s: float, left: Callable[[], float]) -> None: ...
    def phase(self, name: str, budget_s: float | None) -> None: ...
    def phase_done(self, name: str, summary: str, elapsed_s: float) -> None: ...
    def message(self, text: str) -> None: ...
    def trial_started(self, stage: str, key: dict[str, Any]) -> None: ...
    def trial_finished(self, trial: Trial, recalled: bool) -> None: ...
    def best(self, text: str) -> None: ...
    def stop(self) -> None: ...

    # one training run: ``total`` steps or seconds (``unit``), None when unbounded
    def run_started(self, name: str, total: float | None, unit: str) -> None: ...
    def run_step(self, completed: float, info: str) -> None: ...
    def run_finished(self) -> None: ...


class NullProgress:
    """Shows nothing; the base class of displays (override what you show)."""

    def start(self, budget_s: float, left: Callable[[], float]) -> None:
        pass

    def phase(self, name: str, budget_s: float | None) -> None:
        pass

    def phase_done(self, name: str, summary: str, elapsed_s: float) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def trial_started(self, stage: str, key: dict[str, Any]) -> None:
        pass

    def trial_finished(self, trial: Trial, recalled: bool) -> None:
        pass

    def best(self, text: str) -> None:
        pass

    def stop(self) -> None:
        pass

    def run_started(self, name: str, total: float | None, unit: str) -> None:
        pass

    def run_step(self, completed: float, info: str) -> None:
        pass

    def run_finished(self) -> None:
        pass
