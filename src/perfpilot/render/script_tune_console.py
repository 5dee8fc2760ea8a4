"""The script tuning's summary in the terminal, and the sentences the HTML report shares.

:func:`print_script_summary` prints a :class:`~perfpilot.script_tune_record.ScriptTuneRecord`:
the headline, seconds per sample before -> after, one line per candidate (fate, speedup
and interval, reason), what to do (``git apply`` the patch, or run under the launcher for
the knobs a patch cannot hold), the files, and the machine's load. Pure formatting: every
figure is read from the record (a record loaded from JSON may hold ``"nan"`` strings or
None where a number was not measured; those print as ``?`` or are left out).
"""

from __future__ import annotations

import math
import shlex
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfpilot.render.console import format_seconds
from perfpilot.render.tune_load import load_line as load_label_line
from perfpilot.script_plan import describe

if TYPE_CHECKING:
    from rich.console import Console

    from perfpilot.script_tune_record import Candidate, ScriptTuneRecord

PATCH_FILE, PLAN_FILE, RECORD_FILE, REPORT_FILE = ("train.patch", "plan.json", "record.json",
                                                   "report.html")
BUSY = "measured on a busy machine: gains from threads/workers may depend on that load"
FATE_STYLE = {"kept": "green", "slower": "red", "same": "dim", "rejected": "red",
              "skipped": "dim", "pending": "yellow"}
REASON_CHARS = 110


# ---------------------------------------------------------------- shared figures and sentences


def num(x: Any) -> float | None:
    """A finite number as float, else None (records hold None or "nan" where unmeasured)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def median(values: Sequence[Any]) -> float | None:
    """The median of the finite values, None when there are none."""
    xs = [v for v in (num(x) for x in values) if v is not None]
    return statistics.median(xs) if xs else None


def script_name(rec: ScriptTuneRecord) -> str:
    """The script the command runs (``train.py``), else the command itself."""
    for word in rec.command:
        if word.endswith(".py"):
            return Path(word).name
    return " ".join(rec.command) or "the script"


def ratio_text(ratio: Any, lo: Any, hi: Any, *, dash: str = "-") -> str:
    """``1.21x [1.12-1.30]``; ``1.21x`` without an interval; ``""`` when not measured."""
    r, a, b = num(ratio), num(lo), num(hi)
    if r is None:
        return ""
    return f"{r:.2f}x" + (f" [{a:.2f}{dash}{b:.2f}]" if a is not None and b is not None else "")


def proven(rec: ScriptTuneRecord) -> bool:
    """Whether the record's result is a measured gain of some change (what the headline
    claims): changes chosen, a speedup measured, and not judged the same or slower."""
    res = rec.result
    return bool(res.changes) and num(res.speedup) is not None \
        and res.verdict not in ("same", "slower")


def headline(rec: ScriptTuneRecord, *, dash: str = "-") -> str:
    """One sentence: the gain with its interval, or why there is none."""
    name, res = script_name(rec), rec.result
    if rec.status == "failed":
        return f"{name}: the tuning failed: {rec.error or 'no error was recorded'}"
    if proven(rec):
        a, b = num(res.ci_low), num(res.ci_high)
        ci = f"95% CI {a:.2f}{dash}{b:.2f}, " if a is not None and b is not None else ""
        text = (f"{name}: {num(res.speedup):.2f}x faster ({ci}{res.rounds} rounds) with "
                f"{describe(res.changes)}")
        return text if rec.status == "complete" else f"{text} (the tuning was {rec.status})"
    if rec.status == "interrupted":
        return (f"{name}: the tuning was interrupted ({_progress(rec)}): no change is proven "
                "faster yet, the script is kept as it is")
    if rec.status == "running":
        return (f"{name}: the tuning did not finish (killed, or still running; "
                f"{_progress(rec)}): the script is kept as it is")
    return f"{name}: no change proven faster: the script is kept as it is"


def _progress(rec: ScriptTuneRecord) -> str:
    done = sum(1 for c in rec.candidates if c.fate not in ("pending",))
    pending = len(rec.candidates) - done
    text = f"{done} of {len(rec.candidates)} candidates decided"
    return text + (f", {pending} pending" if pending else "")


def seconds_per_sample(rec: ScriptTuneRecord) -> tuple[float | None, float | None, str]:
    """Before and after seconds per sample, and where "after" comes from.

    Before is the baseline's median over its runs. After is the median of the kept
    candidate holding exactly the chosen changes when there is one, else the baseline's
    median divided by the measured speedup (the final check stores the ratio, not the
    tuned arm's runs)."""
    before = median(rec.baseline.seconds_per_sample)
    if not proven(rec):
        return before, None, ""
    same = next((c for c in rec.candidates if c.changes == rec.result.changes
                 and median(c.seconds_per_sample) is not None), None)
    if same is not None:
        return before, median(same.seconds_per_sample), f"median of {same.name}'s runs"
    sp = num(rec.result.speedup)
    if before is None or sp is None:
        return before, None, ""
    return before, before / sp, "baseline median / speedup"


def short(text: str, n: int = REASON_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def patch_path(rec: ScriptTuneRecord, out: Path) -> Path:
    name = rec.patch.file if rec.patch.file and rec.patch.file.endswith(".patch") else None
    return out / (Path(name).name if name else PATCH_FILE)


def launcher_command(rec: ScriptTuneRecord, out: Path) -> str:
    """The command that runs the script with every change injected (``run-script``)."""
    if rec.patch.launcher_command:
        return rec.patch.launcher_command
    cmd = shlex.join(rec.command) if rec.command else "python train.py"
    return f"perfpilot run-script --plan {out / PLAN_FILE} -- {cmd}"


def needs_launcher(rec: ScriptTuneRecord) -> bool:
    """The launcher is the way to apply: knobs only it applies, or changes and no patch."""
    return bool(rec.patch.launcher) or (proven(rec) and not rec.patch.edits)


def load_line(machine: dict[str, Any]) -> tuple[str, bool]:
    """``load average 1.9 before, 3.2 after, 2 cores`` and whether the load exceeded the
    cores (``""`` when the record has no load)."""
    before, after = num(machine.get("load_before")), num(machine.get("load_after"))
    cores = num(machine.get("cores"))
    parts = [f"{v:.2f} {w}" for v, w in ((before, "before"), (after, "after")) if v is not None]
    if not parts:
        return "", False
    text = "load average " + ", ".join(parts) + (f" on {cores:g} cores" if cores else "")
    busy = cores is not None and any(v is not None and v > cores for v in (before, after))
    return text, busy


def candidate_figures(c: Candidate, *, dash: str = "-") -> str:
    """``1.31x [1.20-1.40], 5 rounds`` (or the empty string when it was not measured)."""
    text = ratio_text(c.ratio, c.ci_low, c.ci_high, dash=dash)
    return f"{text}, {c.rounds} rounds" if text and c.rounds else text


# ---------------------------------------------------------------- the terminal summary


def print_script_summary(rec: ScriptTuneRecord, out: Path, console: Console, *,
                         report: Path | None = None) -> None:
    """The headline, before -> after, each candidate, what to do, the files and the load."""
    from rich.markup import escape as esc

    con, out = console, Path(out)

    def say(text: str) -> None:
        con.print(text, highlight=False, soft_wrap=True)

    good = proven(rec) and rec.status == "complete"
    color = "green" if good else ("red" if rec.status == "failed" else "yellow")
    say(f"[bold {color}]{esc(headline(rec))}[/]")
    before, after, how = seconds_per_sample(rec)
    if before is not None:
        tail = (f" -> {format_seconds(after)} ({how})" if after is not None else "")
        say(f"seconds per sample: {format_seconds(before)}{esc(tail)}")
    if rec.result.summary:
        say(f"[dim]{esc(rec.result.summary)}[/]")
    if rec.candidates:
        say("candidates:")
    for c in rec.candidates:
        figures = candidate_figures(c)
        style = FATE_STYLE.get(c.fate, "")
        fate = f"[{style}]{esc(c.fate)}[/]" if style else esc(c.fate)
        say(f"  {esc(c.name)}: {fate}" + (f" {esc(figures)}" if figures else "")
            + (f": {esc(short(c.reason))}" if c.reason else ""))
    _print_apply(rec, out, say, esc)
    for note in rec.notes:
        say(f"[yellow]note:[/] {esc(note)}")
    load, busy = load_line(rec.machine)
    if load:
        say(f"machine: {esc(load)}")
    if busy:
        say(f"[yellow]warning:[/] {BUSY}")
    if (line := load_label_line(rec.machine.get("load_label"))) is not None:
        say(esc(line))
    files = [out / RECORD_FILE, out / PLAN_FILE]
    if rec.patch.edits:
        files.append(patch_path(rec, out))
    report = report or out / REPORT_FILE
    say(f"wrote {esc(', '.join(str(f) for f in files))} and the report "
        f"[bold]{esc(str(report))}[/]")


def _print_apply(rec: ScriptTuneRecord, out: Path, say: Any, esc: Any) -> None:
    if rec.patch.error:
        say(f"[yellow]no patch:[/] {esc(rec.patch.error)}")
    if rec.patch.edits:
        say(f"apply it to your files: [bold]git apply {esc(str(patch_path(rec, out)))}[/]")
        for edit in rec.patch.edits:
            say(f"  {esc(edit)}")
    if needs_launcher(rec):
        lead = ("for the knobs a patch cannot hold, run" if rec.patch.launcher
                else "run it with the changes injected")
        say(f"{lead}: [bold]{esc(launcher_command(rec, out))}[/]")
        for knob, why in rec.patch.launcher.items():
            say(f"  {esc(knob)}: {esc(why)}")
