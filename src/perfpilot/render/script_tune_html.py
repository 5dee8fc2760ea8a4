"""The script tuning's report: one self-contained HTML page from a ScriptTuneRecord.

Sections, top to bottom: the headline (speedup with its interval, seconds per sample
before -> after, the start-up delta, the tool's wall time), what changed (each knob with
what it is, :data:`perfpilot.script_plan.KNOBS`), how to apply it (the patch's edits, the
launcher command and the knobs only the launcher applies, with why), every candidate
(fate, speedup, interval, rounds, loss parity, reason), seconds per sample of every run by
round, the loss trajectories overlaid (baseline, tuned, candidates rejected for their
losses), the baseline's profile (phase shares, findings), notes, and the machine with its
load. Built with :mod:`perfpilot.render.html` (inline CSS and SVG, no scripts); the shared
sentences are in :mod:`perfpilot.render.script_tune_console`. Everything is read from the
record; a plot that cannot be drawn (matplotlib missing) becomes a line saying so, and a
section that fails becomes a card, never a missing page.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from perfpilot.jsonio import write_text_atomic
from perfpilot.render import html as h
from perfpilot.render import script_tune_console as sc
from perfpilot.render.console import PHASE_LABELS, format_seconds
from perfpilot.render.tune_html import EXTRA_CSS
from perfpilot.render.tune_load import load_card
from perfpilot.render.tune_sections import pill, sentence
from perfpilot.script_plan import KNOBS, describe
from perfpilot.script_tune_record import Candidate, ScriptTuneRecord

BASE, TUNED, BAD = "#8a94a6", "#2f6fdd", "#d1495b"
SCRIPT_CSS = """
.pill.kept{background:#e3f4ea;color:#1f7a45}.pill.pending,.pill.interrupted{background:#fff4d6;
color:#8a6100}ul.edits{margin:4px 0 8px;padding-left:20px}ul.edits li{font:12px/1.5 ui-monospace,
SFMono-Regular,Menlo,Consolas,monospace}
"""
STATE_TEXT = {
    "running": ("bad", "This tuning did not finish",
                "It was killed or is still running; the record holds what it measured."),
    "interrupted": ("warn", "This tuning was interrupted",
                    "It was stopped before every candidate was decided; pending candidates "
                    "were not measured to the end."),
    "failed": ("bad", "This tuning failed", ""),
}
NO_PLOT = "Plots need matplotlib (pip install matplotlib); the figures are in record.json."


def script_report_page(rec: ScriptTuneRecord, out: Path | None = None) -> str:
    """The whole report as one HTML string; ``out`` is the directory named in commands."""
    out = Path(out) if out is not None else Path(".")
    sections = [h.Section("Headline", _safe(_headline, rec), "headline"),
                h.Section("What changed", _safe(_changes, rec), "changes"),
                h.Section("How to apply", _safe(_apply, rec, out), "apply"),
                h.Section("Candidates", _safe(_candidates, rec), "candidates"),
                h.Section("Seconds per sample, run by run", _safe(_rounds, rec), "rounds"),
                h.Section("Loss trajectories", _safe(_losses, rec), "losses"),
                h.Section("Baseline profile", _safe(_profile, rec), "profile")]
    if rec.notes:
        sections.append(h.Section("Notes", _safe(_notes, rec), "notes"))
    sections.append(h.Section("Machine", _safe(_machine, rec), "machine"))
    toc = "".join(f'<a href="#{h.escape(s.id)}">{h.escape(s.title)}</a>' for s in sections)
    doc = h.page(f"perfpilot tune: {sc.script_name(rec)}", sections, subtitle=_subtitle(rec))
    doc = doc.replace("</style>", EXTRA_CSS + SCRIPT_CSS + "</style>", 1)
    return doc.replace("\n<section", f'\n<nav class="toc">{toc}</nav>\n<section', 1)


def write_script_report(rec: ScriptTuneRecord, path: str | Path) -> None:
    """Render and write atomically (a UserError names the path if it cannot be written)."""
    path = Path(path)
    write_text_atomic(path, script_report_page(rec, path.parent))


def _safe(build: Callable[..., str], *args: Any) -> str:
    """A section, or a card saying why it could not be drawn (the rest of the page stays)."""
    try:
        return build(*args)
    except Exception as e:  # noqa: BLE001 - shown on the page, with the record intact
        return h.card("This section could not be rendered", h.paragraph(
            f"{type(e).__name__}: {e} (a perfpilot bug; the data is in record.json)"), "bad")


def _plot(build: Callable[..., str], *args: Any) -> str:
    """A figure, or one line when matplotlib is not installed (an optional extra here)."""
    try:
        return build(*args)
    except ImportError:
        return h.paragraph(NO_PLOT, muted=True)


def _subtitle(rec: ScriptTuneRecord) -> str:
    parts = [" ".join(rec.command)]
    if rec.budget_s:
        parts.append(f"budget {format_seconds(rec.budget_s)}, used "
                     f"{format_seconds(rec.elapsed_s)}")
    if rec.window_steps:
        parts.append(f"{rec.window_steps} measured steps per run")
    parts.append(f"seed {rec.seed}")
    parts.append(rec.status)
    return " · ".join(p for p in parts if p)


# ---------------------------------------------------------------- headline


def _tile(big: str, label: str, ci: str = "", kind: str = "") -> str:
    return (f'<div class="tile {h.escape(kind)}"><div class="big">{h.escape(big)}</div>'
            f'<div class="lbl">{h.escape(label)}</div><div class="ci">{h.escape(ci)}</div></div>')


def _headline(rec: ScriptTuneRecord) -> str:
    out = []
    if rec.status in STATE_TEXT:
        kind, title, text = STATE_TEXT[rec.status]
        out.append(h.card(title, h.paragraph(rec.error or text), kind))
    good = sc.proven(rec)
    line = sc.headline(rec, dash="–")  # starts with the file name: not capitalized
    out.append(h.card("Result", h.paragraph(line if line.endswith(".") else line + "."),
                      "good" if good and rec.status == "complete" else "info"))
    out.append(f'<div class="tiles">{_tiles(rec)}</div>')
    res = rec.result
    run_sp, horizon = sc.num(res.run_speedup), sc.num(res.horizon_s)
    if run_sp is not None and horizon is not None:
        out.append(h.paragraph(f"Over a run of {format_seconds(horizon)}, start-up included: "
                               f"{run_sp:.2f}× faster."))
    if res.summary:
        out.append(h.paragraph(res.summary, muted=True))
    load, busy = sc.load_line(rec.machine)
    if busy:
        out.append(h.card("Busy machine", h.paragraph(f"{sentence(sc.BUSY)} ({load})"), "warn"))
    out.append(load_card(rec.machine.get("load_label")))  # the load the changes won at
    return "".join(out)


def _tiles(rec: ScriptTuneRecord) -> str:
    res, tiles = rec.result, []
    lo, hi = sc.num(res.ci_low), sc.num(res.ci_high)
    ci = f"95% CI {lo:.2f}–{hi:.2f} · " if lo is not None and hi is not None else ""
    if sc.proven(rec):
        tiles.append(_tile(f"{sc.num(res.speedup):.2f}×", "speedup (seconds per sample)",
                           f"{ci}{res.rounds} rounds · {res.verdict or 'measured'}", "good"))
    elif sc.num(res.speedup) is not None:
        tiles.append(_tile(f"{sc.num(res.speedup):.2f}×", "measured, not proven faster",
                           f"{ci}{res.rounds} rounds · {res.verdict or ''}", "neutral"))
    else:
        tiles.append(_tile("no gain", "no change proven faster", "the script is kept as it is",
                           "neutral"))
    before, after, how = sc.seconds_per_sample(rec)
    if before is not None:
        big = format_seconds(before) + (f" → {format_seconds(after)}" if after is not None
                                        else "")
        n = len(rec.baseline.seconds_per_sample)
        tiles.append(_tile(big, "seconds per sample" + (" (before → after)" if after else
                                                      " (baseline)"),
                           f"baseline: median of {n} runs" + (f"; after: {how}" if how else "")))
    delta = sc.num(res.startup_delta_s)
    if delta is not None:
        base = sc.num(rec.baseline.startup_s)
        tiles.append(_tile(("+" if delta >= 0 else "−") + format_seconds(abs(delta)),
                           "start-up, tuned − baseline", "process start to first step"
                           + (f"; baseline {format_seconds(base)}" if base is not None else ""),
                           "bad" if delta > 0.5 else "neutral"))
    tiles.append(_tile(format_seconds(max(rec.elapsed_s or 0.0, 0.0)), "tuning wall time",
                       f"budget {format_seconds(rec.budget_s)}" if rec.budget_s else ""))
    return "".join(tiles)


# ---------------------------------------------------------------- changes and how to apply


def _changes(rec: ScriptTuneRecord) -> str:
    changes = rec.result.changes
    if not changes:
        return h.paragraph("No change: the script is kept as it is.", muted=True)
    rows = []
    for knob, value in changes.items():
        value_text = describe({knob: value}) if knob == "env" else str(value)
        how = ("launcher: " + rec.patch.launcher[knob] if knob in rec.patch.launcher
               else "patch" if rec.patch.edits else "launcher (plan.json)")
        rows.append([knob, value_text, KNOBS.get(knob, ""), how])
    head = "" if sc.proven(rec) else h.paragraph(
        "These changes were measured together but not proven faster; the script is kept "
        "as it is.", muted=True)
    return head + h.table(["knob", "value", "what it is", "applied by"], rows)


def _apply(rec: ScriptTuneRecord, out: Path) -> str:
    p, parts = rec.patch, []
    if p.error:
        parts.append(h.card("No patch", h.paragraph(p.error), "warn"))
    if p.edits:
        items = "".join(f"<li>{h.escape(e)}</li>" for e in p.edits)
        parts.append(f"<h3>Patch your files</h3>{h.code(f'git apply {sc.patch_path(rec, out)}')}"
                     f'<ul class="edits">{items}</ul>')
    if sc.needs_launcher(rec):
        title = ("Run with the knobs a patch cannot hold" if p.launcher
                 else "Run with the changes injected")
        parts.append(f"<h3>{h.escape(title)}</h3>{h.code(sc.launcher_command(rec, out))}")
        if p.launcher:
            parts.append(h.table(["knob", "why only the launcher applies it"],
                                 list(p.launcher.items())))
    if not parts:
        return h.paragraph("Nothing to apply: the script is kept as it is.", muted=True)
    return "".join(parts)


# ---------------------------------------------------------------- candidates


def _parity(c: Candidate) -> str:
    par = c.parity
    if par is None:
        return ""
    b, v, tol = sc.num(par.baseline_loss), sc.num(par.candidate_loss), sc.num(par.tolerance)
    text = f"{_g(b)} vs {_g(v)}" + (f" (tolerance {tol:.3g})" if tol is not None else "")
    return f"{'ok' if par.ok else 'differs'}: {text}" + (f", {par.steps} steps"
                                                         if par.steps else "")


def _g(x: float | None) -> str:
    return "?" if x is None else f"{x:.4g}"


def _candidates(rec: ScriptTuneRecord) -> str:
    if not rec.candidates:
        return h.paragraph("No candidate: the profile suggested no change to try.", muted=True)
    rows = []
    for c in rec.candidates:
        r, lo, hi = sc.num(c.ratio), sc.num(c.ci_low), sc.num(c.ci_high)
        reason = c.reason + "".join(f"; {k} refused: {w}" for k, w in c.refused.items())
        rows.append([c.name, c.source, describe(c.changes), pill(c.fate),
                     f"{r:.3f}×" if r is not None else "",
                     f"{lo:.3f}–{hi:.3f}" if lo is not None and hi is not None else "",
                     c.rounds or "", _parity(c), reason])
    counts: dict[str, int] = {}
    for c in rec.candidates:
        counts[c.fate] = counts.get(c.fate, 0) + 1
    head = h.paragraph(f"{len(rec.candidates)} candidates: "
                       + ", ".join(f"{n} {f}" for f, n in counts.items())
                       + ". Speedup: median over rounds of the baseline's seconds per sample "
                       "over the candidate's, with its 95% interval.")
    return head + h.table(["candidate", "source", "changes", "fate", "speedup", "95% CI",
                           "rounds", "loss parity (baseline vs candidate)", "reason"], rows,
                          numeric=(4, 5, 6), raw=(3,))


# ---------------------------------------------------------------- plots


def _arms(rec: ScriptTuneRecord) -> dict[str, list[tuple[int, float]]]:
    """Each arm's runs as (round, seconds per sample), finite values only."""
    arms = {"baseline": rec.baseline.seconds_per_sample,
            **{c.name: c.seconds_per_sample for c in rec.candidates}}
    out = {}
    for name, values in arms.items():
        pts = [(i + 1, v) for i, v in enumerate(sc.num(x) for x in values) if v is not None]
        if pts:
            out[name] = pts
    return out


def _unit(values: list[float]) -> tuple[float, str]:
    top = max(values)
    return (1e6, "µs") if top < 1e-3 else (1e3, "ms") if top < 1 else (1.0, "s")


def _rounds(rec: ScriptTuneRecord) -> str:
    arms = _arms(rec)
    if len(arms) < 2:
        return h.paragraph("Fewer than two arms have measured runs: nothing to compare.",
                           muted=True)
    return _plot(_rounds_plot, arms) + h.paragraph(
        "Each dot is one run (one process of the script, its measured window); a round runs "
        "every arm still in the race once, in a rotating order.", muted=True)


def _rounds_plot(arms: dict[str, list[tuple[int, float]]]) -> str:
    scale, unit = _unit([v for pts in arms.values() for _, v in pts])

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        width = 0.6 / max(len(arms) - 1, 1)
        for i, (name, pts) in enumerate(arms.items()):
            color = BASE if name == "baseline" else h.PALETTE[i % len(h.PALETTE)]
            off = -0.3 + i * width if len(arms) > 1 else 0.0
            ax.scatter([r + off for r, _ in pts], [v * scale for _, v in pts], s=9,
                       color=color, label=name, zorder=3)
        rounds = sorted({r for pts in arms.values() for r, _ in pts})
        ax.set_xticks(rounds)
        _axes(ax, "round", f"{unit} per sample")
        fig.legend(fontsize=7, frameon=False, loc="outside right upper")

    return h.figure_svg(draw, width=8.6, height=3.0)


def _axes(ax: Any, xlabel: str, ylabel: str) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8)
    ax.grid(axis="y", color="#eef0f4", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)


def _loss_series(rec: ScriptTuneRecord) -> dict[str, list[tuple[float, float]]]:
    """baseline, tuned and every candidate rejected for its losses, finite points only."""
    names = ["baseline", "tuned", *[c.name for c in rec.candidates
                                    if c.parity is not None and not c.parity.ok]]
    out = {}
    for name in names:
        pts = []
        for row in rec.losses.get(name) or []:
            if isinstance(row, (list, tuple)) and len(row) >= 2:
                x, y = sc.num(row[0]), sc.num(row[1])
                if x is not None and y is not None:
                    pts.append((x, y))
        if pts:
            out[name] = pts
    return out


def _losses(rec: ScriptTuneRecord) -> str:
    series = _loss_series(rec)
    if not series:
        return h.paragraph("No losses recorded.", muted=True)
    rows = [[c.name, _parity(c), c.parity.max_step_diff if c.parity else "",
             c.parity.rule if c.parity else ""] for c in rec.candidates if c.parity is not None]
    table = h.table(["candidate", "parity", "largest per-step difference", "rule"],
                    rows) if rows else ""
    return _plot(_loss_plot, series) + h.paragraph(
        f"Same seed ({rec.seed}), same steps: a change that leaves the math alone should "
        "trace the baseline; dashed red lines are candidates rejected for their losses.",
        muted=True) + table


def _loss_plot(series: dict[str, list[tuple[float, float]]]) -> str:
    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        for name, pts in series.items():
            style = {"baseline": dict(color=BASE, linewidth=2.2),
                     "tuned": dict(color=TUNED, linewidth=1.4)}.get(
                name, dict(color=BAD, linewidth=1.1, linestyle="--"))
            ax.plot([x for x, _ in pts], [y for _, y in pts], label=name, **style)
        _axes(ax, "step", "training loss")
        ax.legend(fontsize=8, frameon=False)

    return h.figure_svg(draw, width=8.0, height=3.0)


# ---------------------------------------------------------------- profile, notes, machine


def _profile(rec: ScriptTuneRecord) -> str:
    b, out = rec.baseline, []
    step, per = sc.num(b.step_s), sc.num(b.samples_per_step)
    sps, start = sc.median(b.seconds_per_sample), sc.num(b.startup_s)
    pairs = [("step time", format_seconds(step) if step is not None else "?"),
             ("samples per step", f"{per:g}" if per is not None else "?"),
             ("seconds per sample", f"{format_seconds(sps)} (median of "
              f"{len(b.seconds_per_sample)} runs)" if sps is not None else "?"),
             ("start-up", format_seconds(start) if start is not None else "?"),
             ("threads / usable cores", f"{b.threads or '?'} / {b.usable_cores or '?'}"),
             ("device", b.device)]
    if b.loader_sites:
        pairs.append(("DataLoader sites", ", ".join(f"{f}:{line}" for f, line in
                                                    b.loader_sites)))
    out.append(h.key_values(pairs))
    shares = sorted(((p, sc.num(v)) for p, v in b.phases.items()), key=lambda kv: -(kv[1] or 0))
    if shares:
        out.append("<h3>Where a step's time goes</h3>" + h.table(
            ["phase", "share of a step"],
            [[PHASE_LABELS.get(p, p), f"{100 * v:.1f}%" if v is not None else "?"]
             for p, v in shares], numeric=(1,)))
    if b.findings:
        rows = []
        for f in b.findings:
            gain = sc.num(f.get("estimated_speedup"))
            change = f.get("plan_change")
            rows.append([f.get("id", ""), f.get("title", ""),
                         f"{gain:.2f}×" if gain is not None else "",
                         describe(change) if isinstance(change, dict) else change or ""])
        out.append("<h3>Findings</h3>" + h.table(
            ["id", "finding", "estimated speedup", "suggested change"], rows, numeric=(2,)))
    else:
        out.append(h.paragraph("The profile found nothing to fix.", muted=True))
    return "".join(out)


def _notes(rec: ScriptTuneRecord) -> str:
    return "".join(h.card("Note", h.paragraph(n), "warn") for n in rec.notes)


def _machine(rec: ScriptTuneRecord) -> str:
    load, busy = sc.load_line(rec.machine)
    pairs: list[tuple[str, Any]] = [("command", " ".join(rec.command))]
    if load:
        pairs.append(("load", load + (" (busier than the cores)" if busy else "")))
    skip = {"load_before", "load_after"}
    pairs += [(str(k), v) for k, v in rec.machine.items() if k not in skip]
    pairs += [(f"{k} version", v) for k, v in rec.versions.items()]
    pairs.append(("record format", rec.format))
    return h.key_values(pairs)
