"""The tune report: one self-contained HTML page rendered from a :class:`TuneRecord`.

Sections, top to bottom: the headline (speedup and time to target before/after, the
claim the final check supports, the plan's changes), before/after (training curves, runs
to the target, the final comparisons), the step breakdown before/after, one section per
stage with its evidence, the rejected candidates with reasons, every trial, and the
machine (the last four in :mod:`perfpilot.render.tune_sections`). Built with
:mod:`perfpilot.render.html` (inline CSS and SVG, no scripts, no network); plots are in
:mod:`perfpilot.render.tune_plots`. Everything shown is read from the record: this module
measures and decides nothing.

Two samples/s figures appear, and each is named where it appears: **steady steps** (the
final check's throughput comparison: median of timed chunks after warm-up, baseline and
tuned interleaved) and **whole run** (one training run of each plan: samples over step
time after its warm-up steps, evaluation excluded, so it includes the first epochs'
slower steps and a loaded machine's swings). They measure different things and may differ.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from perfpilot.jsonio import write_text_atomic
from perfpilot.record import PHASES, RunRecord
from perfpilot.render import html as h
from perfpilot.render import tune_plots as rp
from perfpilot.render import tune_sections as ts
from perfpilot.render.console import PHASE_LABELS, format_seconds
from perfpilot.render.tune_load import load_card
from perfpilot.tune_record import Comparison, FinalResult, StageRecord, TuneRecord

STEADY = ("steady steps: the final check's throughput comparison, the median of timed "
          "chunks of training steps after warm-up, baseline and tuned interleaved")
RUNS = ("whole run: one training run of each plan (its run to the target, or a few seconds "
        "without one), training samples over the time of its steps after warm-up "
        "(evaluation excluded), so the first epochs' slower steps and the machine's load "
        "during that run count")

EXTRA_CSS = """
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(230px,1fr));gap:12px;
margin:4px 0 14px}
.tile{border:1px solid #e3e6ec;border-radius:10px;padding:14px 16px;background:#fbfcfd}
.tile .big{font-size:30px;font-weight:700;letter-spacing:-.5px;line-height:1.15}
.tile .lbl{font-weight:600;margin-top:3px}.tile .ci{color:#5b6475;font-size:12px;margin-top:4px}
td.num{white-space:nowrap}.use pre{margin:4px 0}
.tile.good .big{color:#2e9d5b}.tile.bad .big{color:#d1495b}.tile.neutral .big{color:#5b6475}
.pill{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;
white-space:nowrap}
.pill.accepted,.pill.complete,.pill.faster{background:#e3f4ea;color:#1f7a45}
.pill.rejected,.pill.failed,.pill.nan,.pill.oom,.pill.slower,.pill.timeout{background:#fbe5e8;
color:#a4283a}
.pill.skipped,.pill.pruned,.pill.same,.pill.running{background:#eef0f4;color:#5b6475}
nav.toc{margin:-8px 0 16px;font-size:13px}nav.toc a{margin-right:14px;color:#2f6fdd;
text-decoration:none}
details>summary{cursor:pointer;color:#2f6fdd;margin:6px 0}
.grid2{display:grid;grid-template-columns:minmax(0,2.3fr) minmax(0,1fr);gap:14px;
align-items:start}
h3{font-size:14px;margin:14px 0 6px}
"""

STATE_TEXT = {
    "running": ("bad", "This tuning did not finish",
                "It was killed or is still running. Its finished trials are in the study: run "
                "the same `perfpilot tune` command with --resume to continue."),
    "interrupted": ("warn", "This tuning was interrupted",
                    "Its finished trials are in the study: resume with --resume."),
    "stopped": ("bad", "This tuning stopped", ""),
    "failed": ("bad", "This tuning failed", ""),
}


def report_page(rec: TuneRecord) -> str:
    """The whole report as one HTML string."""
    sections = [h.Section("Headline", _safe(_headline, rec), "headline")]
    if rec.proxy:
        sections.append(h.Section("Proxy target", _safe(ts.proxy, rec), "proxy"))
    if rec.baseline is not None:
        sections.append(h.Section("Before and after", _safe(_before_after, rec),
                                  "before-after"))
        sections.append(h.Section("Step breakdown", _safe(_steps, rec), "steps"))
    for st in rec.stages:
        sections.append(h.Section(f"Stage: {st.name}", _safe(ts.stage, st), f"stage-{st.name}"))
    sections += [h.Section("Rejected candidates", _safe(ts.rejected, rec), "rejected"),
                 h.Section("Trials", _safe(ts.trials, rec), "trials"),
                 h.Section("Machine", _safe(ts.machine, rec), "machine")]
    toc = "".join(f'<a href="#{h.escape(s.id)}">{h.escape(s.title)}</a>' for s in sections)
    doc = h.page(f"perfpilot tune: {rec.workload.name or '?'}", sections,
                 subtitle=_subtitle(rec))
    doc = doc.replace("</style>", EXTRA_CSS + "</style>", 1)
    return doc.replace("\n<section", f'\n<nav class="toc">{toc}</nav>\n<section', 1)


def _safe(build: Any, *args: Any) -> str:
    """A section, or a card saying why it could not be drawn: the stages' evidence evolves,
    and one unexpected value must not cost the rest of the page."""
    try:
        return build(*args)
    except Exception as e:  # noqa: BLE001 - shown on the page, with the record intact
        return h.card("This section could not be rendered", h.paragraph(
            f"{type(e).__name__}: {e} (a perfpilot bug; the data is in record.json)"), "bad")


def write_report(rec: TuneRecord, path: str | Path) -> None:
    """Render and write atomically (a UserError names the path if it cannot be written)."""
    write_text_atomic(path, report_page(rec))


# ---------------------------------------------------------------- header and headline


def _subtitle(rec: TuneRecord) -> str:
    w = rec.workload
    parts = [w.description or w.spec or ""]
    if rec.budget_s:
        parts.append(f"budget {format_seconds(rec.budget_s)}, used "
                     f"{format_seconds(rec.elapsed_s)}")
    parts.append(f"{len(rec.trials)} trials")
    if rec.started_at:
        parts.append(time.strftime("%Y-%m-%d %H:%M", time.localtime(rec.started_at)))
    if rec.resumed:
        parts.append("resumed")
    return " · ".join(p for p in parts if p)


def _target_text(rec: TuneRecord) -> str:
    w = rec.workload
    if w.target is None:
        return ""
    sign = "≥" if w.direction == "max" else "≤"
    return f"{w.metric or 'metric'} {sign} {w.target:g}"


def _headline(rec: TuneRecord) -> str:
    out = []
    if rec.status in STATE_TEXT:
        kind, title, text = STATE_TEXT[rec.status]
        out.append(h.card(title, h.paragraph(rec.error or text), kind))
    final = rec.final or FinalResult()
    out.append(_tiles(rec, final))
    if final.claim:
        kind = {"faster": "good", "same": "warn", "unchanged": "info"}.get(final.verdict or "",
                                                                         "bad")
        out.append(h.card("Verdict", h.paragraph(ts.sentence(final.claim)), kind))
    if rec.decision is not None:
        out.append(h.paragraph(f"plan.json holds the {rec.decision.plan} plan: "
                               f"{rec.decision.why}", muted=True))
    out.append(_changes(rec))
    out.append(load_card(rec.load_label))  # the load the plan was measured at
    if rec.status == "complete" and rec.plan is not None:
        out.append(_use(rec))
    for note in rec.notes:
        if not note.startswith("report.html could not be rendered"):  # it is, now
            out.append(h.card("Note", h.paragraph(note), "warn"))
    return "".join(out)


def _tile(big: str, label: str, ci: str = "", kind: str = "") -> str:
    return (f'<div class="tile {h.escape(kind)}"><div class="big">{h.escape(big)}</div>'
            f'<div class="lbl">{h.escape(label)}</div><div class="ci">{h.escape(ci)}</div></div>')


def _ci(res: Comparison) -> str:
    return f"95% CI {res.ci_low:.2f}–{res.ci_high:.2f} · {res.n} interleaved rounds"


def _kind(verdict: str | None) -> str:
    return {"faster": "good", "slower": "bad", "not-reached": "bad"}.get(verdict or "",
                                                                        "neutral")


def _measured(c: Comparison | None) -> Comparison | None:
    return c if c is not None and c.measured else None


def _tiles(rec: TuneRecord, final: FinalResult) -> str:
    tiles = []
    ttt, thr = _measured(final.time_to_target), _measured(final.throughput)
    target = _target_text(rec)
    if ttt is not None and ttt.baseline and ttt.tuned:
        tiles.append(_tile(f"{ttt.ratio:.2f}×", f"time-to-target speedup ({target})",
                           _ci(ttt) + _significance(ttt.verdict), _kind(ttt.verdict)))
        tiles.append(_tile(f"{format_seconds(ttt.baseline.median)} → "
                           f"{format_seconds(ttt.tuned.median)}",
                           "training time to target (median)",
                           "baseline → tuned, evaluation excluded"))
    if thr is not None:
        tiles.append(_tile(f"{thr.ratio:.2f}×", "throughput speedup (steady steps)",
                           _ci(thr) + _significance(thr.verdict), _kind(thr.verdict)))
        tiles.append(_tile(f"{thr.baseline_samples_per_s:,.0f} → "
                           f"{thr.tuned_samples_per_s:,.0f}", "samples / s (steady steps)",
                           "baseline → tuned, median of interleaved timed chunks after "
                           "warm-up; the step breakdown also shows whole runs"))
    base = rec.baseline
    if ttt is None and base is not None and base.time_to_target_s is not None:
        why = final.time_to_target.why_not if final.time_to_target else "not measured"
        tiles.append(_tile(format_seconds(base.time_to_target_s), f"baseline time to {target}",
                           f"one run, evaluation excluded; tuned plan: {why}"))
    if ttt is None and thr is None:
        tiles.insert(0, _tile("no gain claimed", _no_gain_label(rec, final), "", "neutral"))
        if base is not None and base.samples_per_s:
            tiles.append(_tile(f"{base.samples_per_s:,.0f}", "baseline samples / s",
                               "one run of the baseline, steps after warm-up"))
    return f'<div class="tiles">{"".join(tiles)}</div>'


def _significance(verdict: str | None) -> str:
    return {"faster": " · significant", "same": " · not significant",
            "slower": " · significantly slower",
            "not-reached": " · target missed: no claim"}.get(verdict or "", "")


def _no_gain_label(rec: TuneRecord, final: FinalResult) -> str:
    if final.verdict == "unchanged":
        return "no stage found a measured gain"
    if rec.status != "complete":
        return "the tuning did not reach its final check"
    return "the final check measured no comparison"


def _changes(rec: TuneRecord) -> str:
    base, tuned = rec.baseline_plan, rec.tuned_plan
    if base is None or tuned is None:
        return ""
    changes = base.diff(tuned)
    if not changes:
        return ""
    rows = []
    for k, (a, b) in changes.items():
        stage, gain = _who_changed(rec, k)
        rows.append([k, _v(a), _v(b), stage, gain])
    kept = rec.decision is not None and rec.decision.plan == "baseline"
    title = "<h3>Changes the stages chose" + (" (not applied: the baseline is kept)"
                                              if kept else "") + "</h3>"
    return title + h.table(["knob", "baseline", "tuned", "chosen by", "gain in its stage"],
                           rows)


def _use(rec: TuneRecord) -> str:
    spec = rec.workload.spec or "WORKLOAD"
    text = (f"perfpilot run {spec} --plan plan.json       # train with it\n\n"
            "plan = perfpilot.load_plan(\"plan.json\")          # or in your own loop:\n"
            "pp = perfpilot.apply(plan, model, optimizer, dataset)   # see docs/apply.md")
    return f'<div class="use"><h3>Use this plan</h3>{h.code(text)}</div>'


def _who_changed(rec: TuneRecord, key: str) -> tuple[str, str]:
    """The stage that first changed ``key`` and the gain it measured for it."""
    prev = rec.baseline_plan
    for st in rec.stages:
        if st.plan is not None and prev is not None and key in prev.diff(st.plan):
            return st.name, _gain(_stage_gain(st, key))
        prev = st.plan or prev
    return "", ""


def _stage_gain(st: StageRecord, key: str) -> dict[str, Any] | None:
    ev = st.evidence
    hit = next((e for e in ev.get("candidates") or [] if e.get("fate") == "accepted"
                and key in (e.get("changes") or {})), None)
    cmp = (ev.get("chosen") or {}).get("comparison") or {}
    if hit is None and rp._num(cmp.get("ratio")) is not None:  # the batch stage
        hit = {"speedup": cmp["ratio"], "ci_low": cmp.get("ci_low"),
               "ci_high": cmp.get("ci_high")}
    return hit


def _gain(entry: dict[str, Any] | None) -> str:
    sp = rp._num((entry or {}).get("speedup"))
    if sp is None or entry is None:
        return ""
    lo, hi = rp._num(entry.get("ci_low")), rp._num(entry.get("ci_high"))
    return f"{sp:.2f}×" + (f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else "")


def _v(x: Any) -> str:
    return "default" if x is None else str(x)


# ---------------------------------------------------------------- before and after


def _before_after(rec: TuneRecord) -> str:
    w = rec.workload
    final = rec.final or FinalResult()
    curves = (f"<h3>Training curves ({_pair_source(rec)})</h3>"
              + (rp.training_curves(_pair(rec), target=w.target, metric=w.metric)
                 or h.paragraph("No loss history recorded.", muted=True)))
    ttt = final.time_to_target
    if ttt is not None and ttt.rounds:
        curves = (f'<div class="grid2"><div>{curves}</div><div>'
                  "<h3>Runs to the target, paired by round</h3>"
                  f"{rp.ttt_rounds(ttt.rounds)}</div></div>")
    return curves + _comparisons(rec.final)


def _comparisons(final: FinalResult | None) -> str:
    if final is None or final.verdict == "unchanged":
        return h.paragraph("No final comparison: the tuned plan is the baseline.", muted=True)
    rows = []
    for name, res, unit in (("time to target", final.time_to_target, "s"),
                            ("throughput (steady steps)", final.throughput, "samples/s")):
        if res is not None and res.measured:
            if res.baseline is not None and res.tuned is not None:
                vals = f"{res.baseline.median:.3g} → {res.tuned.median:.3g} {unit}"
            else:
                vals = (f"{res.baseline_samples_per_s:,.0f} → {res.tuned_samples_per_s:,.0f} "
                        f"{unit}")
            rows.append([name, vals, f"{res.ratio:.3f}×",
                         f"{res.ci_low:.3f}–{res.ci_high:.3f}", res.n, ts.pill(res.verdict)])
        else:
            why = res.why_not if res is not None else "not measured"
            rows.append([name, f"not measured: {why}", "", "", "", ""])
    cross = final.cross_check.get("words") if final.cross_check else None
    note = h.paragraph(f"Cross-check against the stages: {cross}.",
                       muted=final.cross_check.get("agree") is not False) if cross else ""
    arms = final.throughput.detail.get("arms") if final.throughput is not None else None
    note += h.paragraph(f"Throughput arms: {arms}.", muted=True) if arms else ""
    return ("<h3>Final check: tuned vs baseline, interleaved</h3>" +
            h.table(["comparison", "baseline → tuned (median)", "speedup", "95% CI", "rounds",
                     "verdict"], rows, numeric=(2, 3, 4), raw=(5,)) + note)


def _pair(rec: TuneRecord) -> dict[str, RunRecord | None]:
    """The before/after records: the final check's first round of each plan when it ran
    (interleaved, same evaluation spacing), else the baseline run and the tuned run."""
    return {"baseline": rec.baseline_check or rec.baseline, "tuned": rec.tuned}


def _pair_source(rec: TuneRecord) -> str:
    return "the final check's first round" if rec.baseline_check is not None else \
        "the baseline run and the tuned run"


def _steps(rec: TuneRecord) -> str:
    runs = {k: v for k, v in _pair(rec).items() if v is not None}
    rows = []
    for p in PHASES:
        rows.append([PHASE_LABELS.get(p, p),
                     *[f"{1e3 * float(r.phases_s.get(p, 0.0)):.3g}" for r in runs.values()]])
    rows.append(["step (mean)", *[f"{1e3 * sum(r.phases_s.values()):.3g}"
                                  for r in runs.values()]])
    rows.append(["batch size", *[r.plan.get("batch_size") for r in runs.values()]])
    rows.append(["samples / s (whole run)",
                 *[f"{r.samples_per_s:,.0f}" for r in runs.values()]])
    thr = _measured((rec.final or FinalResult()).throughput)
    if thr is not None:
        steady = {"baseline": thr.baseline_samples_per_s, "tuned": thr.tuned_samples_per_s}
        rows.append(["samples / s (steady steps)", *[f"{steady[k]:,.0f}" for k in runs]])
    note = h.paragraph("Per training sample, so plans with different batch sizes compare; the "
                       f"table is per optimizer step (ms). From {_pair_source(rec)}.",
                       muted=True)
    cols = ["phase", *[f"{k} (ms/step)" for k in runs]]
    return (rp.phase_bars(runs) + note + h.table(cols, rows, numeric=range(1, len(cols)))
            + _samples_note(thr is not None))


def _samples_note(both: bool) -> str:
    """What each samples/s figure measures (they differ and both are right)."""
    pairs = [("samples / s (whole run)", RUNS)]
    if both:
        pairs.append(("samples / s (steady steps)", STEADY + "; the headline and the "
                      "throughput speedup use this one"))
    return "<h3>The samples/s figures</h3>" + h.key_values(pairs)
