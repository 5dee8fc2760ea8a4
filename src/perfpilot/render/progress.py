"""Progress displays the commands supply to the engine and the tuner.

Both implement :class:`perfpilot.progress.Progress`:

- :class:`LiveProgress`: rich, on stderr, for a terminal: a live line ``stage │ trials │
  best so far │ time left`` while tuning, a transient bar while ``perfpilot run`` trains.
- :class:`LineProgress`: plain timestamped lines, each flushed as it is written, for
  output that is not a terminal (a file, ``| tee``, CI logs): stage start and end, each
  trial's result (state, key figure, reason), the time left, and a training run's
  progress at most every :data:`RUN_EVERY_S` seconds. What was printed survives a
  ``kill -9``.

:func:`command_progress` picks one: plain lines on stdout when stdout is not a terminal
(so they land where the command's output goes), else the rich display.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from perfpilot.progress import NullProgress
from perfpilot.render.console import format_seconds

if TYPE_CHECKING:
    from rich.console import Console

    from perfpilot.progress import Progress
    from perfpilot.trial import Trial

RUN_EVERY_S = 10.0  # plain lines: at most one training-progress line this often
REASON_CHARS = 200  # plain lines: a trial's reason is cut to this length


def command_progress(stdout: IO[str] | None = None) -> Progress:
    """The display for a command: :class:`LineProgress` on ``stdout`` (default
    ``sys.stdout``) when it is not a terminal, else :class:`LiveProgress` on stderr."""
    out = stdout if stdout is not None else sys.stdout
    if not _isatty(out):
        return LineProgress(out)
    return LiveProgress()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


# ---------------------------------------------------------------- plain lines


class LineProgress(NullProgress):
    """Timestamped lines on ``stream``, flushed one by one. ``clock`` gives the wall time
    of each line (seconds since the epoch; injected by tests)."""

    def __init__(self, stream: IO[str], clock: Callable[[], float] = time.time) -> None:
        self.stream, self.clock = stream, clock
        self.left: Callable[[], float] | None = None
        self.budget_s = 0.0
        self.run_name, self.run_total, self.run_unit = "", None, ""
        self.run_last = (0.0, "")
        self.run_shown = 0.0

    def line(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(self.clock()))
        try:
            self.stream.write(f"{stamp} {text}\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe must not stop the measuring
            pass

    def _left(self) -> str:
        if self.left is None:
            return ""
        left = self.left()
        return f" (time left {clock_text(left)})" if left >= 0 else \
            f" (over budget by {clock_text(-left)})"

    def start(self, budget_s: float, left: Callable[[], float]) -> None:
        self.left, self.budget_s = left, budget_s
        self.line(f"tune: budget {format_seconds(budget_s)}")

    def phase(self, name: str, budget_s: float | None) -> None:
        budget = f", budget {format_seconds(budget_s)}" if budget_s else ""
        self.line(f"{name}: started{budget}{self._left()}")

    def phase_done(self, name: str, summary: str, elapsed_s: float) -> None:
        self.line(f"{name}: finished in {format_seconds(elapsed_s)}: {_one_line(summary)}"
                  f"{self._left()}")

    def message(self, text: str) -> None:
        self.line(f"  {_one_line(text)}")

    def trial_finished(self, trial: Trial, recalled: bool) -> None:
        self.line(f"  {trial_text(trial, recalled)}{self._left()}")

    def best(self, text: str) -> None:
        self.line(f"  best so far: {_one_line(text)}")

    def stop(self) -> None:
        used = self.budget_s - self.left() if self.left is not None else 0.0
        self.line(f"tune: ended after {format_seconds(max(used, 0.0))} of "
                  f"{format_seconds(self.budget_s)}")

    def run_started(self, name: str, total: float | None, unit: str) -> None:
        self.run_name, self.run_total, self.run_unit = name, total, unit
        self.run_shown = self.clock()
        what = f"{total:g} {unit}" if total is not None else "until the target"
        self.line(f"run {name}: training for {what}")

    def run_step(self, completed: float, info: str) -> None:
        self.run_last = (completed, info)
        if self.clock() - self.run_shown >= RUN_EVERY_S:
            self.run_shown = self.clock()
            self.line(f"run {self.run_name}: {self._run_done(completed)}  {info}")

    def run_finished(self) -> None:
        completed, info = self.run_last
        self.line(f"run {self.run_name}: finished at {self._run_done(completed)}  {info}".rstrip())

    def _run_done(self, completed: float) -> str:
        total = f"/{self.run_total:g}" if self.run_total is not None else ""
        return f"{completed:.0f}{total} {self.run_unit}"


def trial_text(trial: Trial, recalled: bool = False) -> str:
    """``trial 3 hardware: complete, 1.24x [1.10, 1.39] faster, 12.3 s`` (and the reason
    of a trial that did not complete)."""
    parts = [trial.state]
    figure = key_figure(trial.measurements)
    if figure:
        parts.append(figure)
    if trial.finished_at > trial.started_at:
        parts.append(format_seconds(trial.finished_at - trial.started_at))
    if recalled:
        parts.append("recalled from the study")
    text = f"trial {trial.number} {trial.stage}: " + ", ".join(parts)
    if trial.reason:
        text += f": {_one_line(trial.reason)[:REASON_CHARS]}"
    return text


def key_figure(m: dict[str, Any]) -> str:
    """The one number that says what a trial measured ("" when none is known)."""
    if _num(m.get("ratio")) and _num(m.get("ci_low")) and _num(m.get("ci_high")):
        verdict = f" {m['verdict']}" if isinstance(m.get("verdict"), str) else ""
        return f"{m['ratio']:.2f}x [{m['ci_low']:.2f}, {m['ci_high']:.2f}]{verdict}"
    if _num(m.get("time_to_target_s")):
        return f"time to target {format_seconds(m['time_to_target_s'])}"
    if _num(m.get("samples_per_s")):
        return f"{m['samples_per_s']:,.0f} samples/s"
    if _num(m.get("step_s")):
        return f"step {format_seconds(m['step_s'])}"
    return ""


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def clock_text(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` past an hour): a countdown that does not jitter."""
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else \
        f"{s // 60}:{s % 60:02d}"


# ---------------------------------------------------------------- rich, for a terminal


class LiveProgress(NullProgress):
    """A rich live display on stderr (nothing when stderr is not a terminal)."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.enabled = self.console.is_terminal
        self.phase_name, self.phase_budget = "starting", None
        self.text, self.best_text = "", "baseline (no gain yet)"
        self.ran = self.recalled = 0
        self.left: Callable[[], float] = lambda: 0.0
        self.live: Any = None
        self.bar: Any = None

    def start(self, budget_s: float, left: Callable[[], float]) -> None:
        self.left = left
        if self.enabled:
            from rich.live import Live

            self.live = Live(self, console=self.console, refresh_per_second=4,
                             transient=False)
            self.live.start()

    def __rich__(self) -> Any:
        from rich.table import Table

        grid = Table.grid(padding=(0, 2))
        budget = f" ({format_seconds(self.phase_budget)})" if self.phase_budget else ""
        left = self.left()
        grid.add_row(f"[bold cyan]{self.phase_name}[/]{budget}",
                     f"trials [bold]{self.ran}[/] run"
                     + (f", {self.recalled} recalled" if self.recalled else ""),
                     f"best: [green]{self.best_text}[/]",
                     f"time left [bold]{clock_text(left)}[/]" if left >= 0
                     else f"[yellow]over budget by {clock_text(-left)}[/]")
        grid.add_row(f"[dim]{self.text}[/]", "", "", "")
        return grid

    def phase(self, name: str, budget_s: float | None) -> None:
        self.phase_name, self.phase_budget = name, budget_s
        if self.enabled:
            self.console.print(f"[bold]▸ {name}[/]" + (f" (budget {format_seconds(budget_s)})"
                                                         if budget_s else ""), highlight=False)

    def phase_done(self, name: str, summary: str, elapsed_s: float) -> None:
        if self.enabled:
            from rich.markup import escape

            self.console.print(f"[bold]✓ {name}[/] ({format_seconds(elapsed_s)}): "
                               f"{escape(summary)}", highlight=False)

    def message(self, text: str) -> None:
        self.text = text

    def trial_finished(self, trial: Trial, recalled: bool) -> None:
        if recalled:
            self.recalled += 1
        else:
            self.ran += 1

    def best(self, text: str) -> None:
        self.best_text = text

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def run_started(self, name: str, total: float | None, unit: str) -> None:
        if not self.enabled:
            return
        from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        self.bar = Bar(TextColumn("[bold]{task.description}"), BarColumn(),
                       TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                       console=self.console, transient=True)
        self.bar.start()
        self.task = self.bar.add_task(name, total=total, info="starting")

    def run_step(self, completed: float, info: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=completed, info=info)

    def run_finished(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
