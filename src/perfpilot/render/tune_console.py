"""The tune command in the terminal: live progress while tuning, and the summary after.

:class:`LiveProgress` implements :class:`perfpilot.tune.progress.Progress` with rich on
stderr (disabled when stderr is not a terminal): the phase and its budget, trials so far,
the best plan so far, the latest step and the time left. :func:`print_summary` prints a
TuneRecord's headline, the changes and where the files are. Pure formatting.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfpilot.render.console import format_seconds

if TYPE_CHECKING:
    from rich.console import Console

    from perfpilot.trial import Trial
    from perfpilot.tune_record import FinalResult, TuneRecord


class LiveProgress:
    """A rich live display: ``stage │ trials │ best so far │ time left`` and a message."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.enabled = self.console.is_terminal
        self.phase_name, self.phase_budget = "starting", None
        self.text, self.best_text = "", "baseline (no gain yet)"
        self.ran = self.recalled = 0
        self.left: Callable[[], float] = lambda: 0.0
        self.live: Any = None

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
                     f"time left [bold]{_clock(left)}[/]" if left >= 0
                     else f"[yellow]over budget by {_clock(-left)}[/]")
        grid.add_row(f"[dim]{self.text}[/]", "", "", "")
        return grid

    def phase(self, name: str, budget_s: float | None) -> None:
        self.phase_name, self.phase_budget = name, budget_s
        if not self.enabled:
            return
        self.console.print(f"[bold]▸ {name}[/]" + (f" (budget {format_seconds(budget_s)})"
                                                     if budget_s else ""), highlight=False)

    def message(self, text: str) -> None:
        self.text = text

    def trial(self, trial: Trial, recalled: bool) -> None:
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


def _clock(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` past an hour): a countdown that does not jitter."""
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else \
        f"{s // 60}:{s % 60:02d}"


def print_summary(rec: TuneRecord, out_dir: Path, console: Console | None = None, *,
                  report: Path | None = None, wrote_plan: bool = False) -> None:
    """The headline, each stage's summary, the changes, and where the files are."""
    from rich.console import Console
    from rich.markup import escape as esc

    con = console or Console()
    for st in rec.stages:
        con.print(f"[bold]{st.name}[/] ({format_seconds(st.elapsed_s)} of "
                  f"{format_seconds(st.budget_s)}): {esc(st.summary)}", highlight=False)
    _print_final(con, rec.final)
    base, plan = rec.baseline_plan, rec.plan
    changes = [f"{k} {a} -> {b}" for k, (a, b) in base.diff(plan).items()] \
        if base is not None and plan is not None else []
    if changes:
        con.print("plan: " + esc(", ".join(changes)), highlight=False)
    else:
        con.print("plan: the baseline (no change is a measured gain)", highlight=False)
    unchanged = rec.final is not None and rec.final.verdict == "unchanged"
    if rec.decision is not None and rec.decision.why and not unchanged:
        con.print(f"[dim]{esc(rec.decision.why)}[/]", highlight=False)
    for note in rec.notes:
        con.print(f"[yellow]note:[/] {esc(note)}", highlight=False)
    report = report or out_dir / "report.html"
    files = f"{out_dir / 'plan.json'}, {out_dir / 'record.json'} and " if wrote_plan else ""
    con.print(f"wrote {esc(files)}the report [bold]{esc(str(report))}[/]", highlight=False)


def _print_final(con: Console, final: FinalResult | None) -> None:
    if final is None:
        return
    ttt, thr = final.time_to_target, final.throughput
    if ttt is not None and ttt.measured and ttt.baseline and ttt.tuned:
        con.print(f"time to target: {format_seconds(ttt.baseline.median)} -> "
                  f"{format_seconds(ttt.tuned.median)}: [bold]{ttt.ratio:.2f}x[/] "
                  f"(95% CI {ttt.ci_low:.2f}-{ttt.ci_high:.2f}, {ttt.n} rounds, "
                  f"{ttt.verdict})", highlight=False)
    if thr is not None and thr.measured:
        con.print(f"throughput (steady steps): {thr.baseline_samples_per_s:,.0f} -> "
                  f"{thr.tuned_samples_per_s:,.0f} samples/s: [bold]{thr.ratio:.2f}x[/] "
                  f"(95% CI {thr.ci_low:.2f}-{thr.ci_high:.2f}, {thr.n} rounds, "
                  f"{thr.verdict})", highlight=False)
    if final.claim:
        color = "green" if final.verdict == "faster" else "yellow"
        con.print(f"[bold {color}]{final.claim}[/]", highlight=False)
