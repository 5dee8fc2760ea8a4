"""The tune command's summary in the terminal: :func:`print_summary` prints a TuneRecord's
headline, the changes and where the files are. Pure formatting. (Progress while tuning is
:mod:`perfpilot.render.progress`.)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from perfpilot.render.console import format_seconds
from perfpilot.render.tune_load import load_line

if TYPE_CHECKING:
    from rich.console import Console

    from perfpilot.tune_record import FinalResult, TuneRecord


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
    label = rec.load_label or {}
    if (line := load_line(label)) is not None:  # the load the plan won at, and now
        con.print(esc(line), highlight=False,
                  style="yellow" if label.get("holds") is False else None)
    unchanged = rec.final is not None and rec.final.verdict == "unchanged"
    if rec.decision is not None and rec.decision.why and not unchanged:
        con.print(f"[dim]{esc(rec.decision.why)}[/]", highlight=False)
    for note in rec.notes:
        con.print(f"[yellow]note:[/] {esc(note)}", highlight=False)
    report = report or out_dir / "report.html"
    files = f"{out_dir / 'plan.json'}, {out_dir / 'record.json'} and " if wrote_plan else ""
    con.print(f"wrote {esc(files)}the report [bold]{esc(str(report))}[/]", highlight=False)


def _print_final(con: Console, final: FinalResult | None) -> None:
    from rich.markup import escape

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
    cross = final.cross_check.get("words") if final.cross_check else None
    if cross:  # the throughput against the stages' gains (tune/final_cross.py)
        color = "yellow" if final.cross_check.get("agree") is False else "dim"
        con.print(f"[{color}]cross-check: {escape(cross)}[/]", highlight=False)
    if final.claim:
        color = "green" if final.verdict == "faster" else "yellow"
        con.print(f"[bold {color}]{final.claim}[/]", highlight=False)
