"""The tune report: one self-contained HTML page rendered from a TuneRecord.

Sections, top to bottom: the headline (speedup and time to target before/after, the
claim the final check supports, the plan's changes), before/after (training curves, runs
to the target, the final comparisons), the step breakdown before/after, one section per
stage with its evidence, the rejected candidates with reasons, every trial, and the
machine. Built with :mod:`perfpilot.render.html` (inline CSS and SVG, no scripts, no
network); plots are in :mod:`perfpilot.render.tune_plots`. Everything shown is read
from the record: this module measures and decides nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from perfpilot.record import PHASES
from perfpilot.render import html as h
from perfpilot.render import tune_plots as rp
from perfpilot.render.console import PHASE_LABELS, format_seconds

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


def report_page(rec: dict[str, Any]) -> str:
    """The whole report as one HTML string."""
    w = rec.get("workload") or {}
    sections = [h.Section("Headline", _safe(_headline, rec), "headline")]
    if rec.get("baseline"):
        sections.append(h.Section("Before and after", _safe(_before_after, rec),
                                  "before-after"))
        sections.append(h.Section("Step breakdown", _safe(_steps, rec), "steps"))
    for st in rec.get("stages") or []:
        sections.append(h.Section(f"Stage: {st.get('name')}", _safe(_stage, st, rec),
                                  f"stage-{st.get('name')}"))
    sections += [h.Section("Rejected candidates", _safe(_rejected, rec), "rejected"),
                 h.Section("Trials", _safe(_trials, rec), "trials"),
                 h.Section("Machine", _safe(_machine, rec), "machine")]
    toc = "".join(f'<a href="#{h.escape(s.id)}">{h.escape(s.title)}</a>' for s in sections)
    doc = h.page(f"perfpilot tune: {w.get('name', '?')}", sections, subtitle=_subtitle(rec))
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


def write_report(rec: dict[str, Any], path: str | Path) -> None:
    """Render and write atomically (a UserError names the path if it cannot be written)."""
    from perfpilot.tune.tune_record import atomic_write

    atomic_write(Path(path), report_page(rec))


# ---------------------------------------------------------------- header and headline


def _subtitle(rec: dict[str, Any]) -> str:
    w = rec.get("workload") or {}
    parts = [w.get("description") or w.get("spec") or ""]
    if rec.get("budget_s"):
        parts.append(f"budget {format_seconds(rec['budget_s'])}, used "
                     f"{format_seconds(rec.get('elapsed_s') or 0.0)}")
    parts.append(f"{len(rec.get('trials') or [])} trials")
    if rec.get("started_at"):
        parts.append(time.strftime("%Y-%m-%d %H:%M", time.localtime(rec["started_at"])))
    if rec.get("resumed"):
        parts.append("resumed")
    return " · ".join(p for p in parts if p)


def _target_text(rec: dict[str, Any]) -> str:
    w = rec.get("workload") or {}
    if w.get("target") is None:
        return ""
    sign = "≥" if w.get("direction") == "max" else "≤"
    return f"{w.get('metric') or 'metric'} {sign} {w['target']:g}"


def _headline(rec: dict[str, Any]) -> str:
    out = []
    status = rec.get("status")
    if status in STATE_TEXT:
        kind, title, text = STATE_TEXT[status]
        out.append(h.card(title, h.paragraph(rec.get("error") or text), kind))
    final = rec.get("final") or {}
    out.append(_tiles(rec, final))
    if final.get("claim"):
        v = final.get("verdict")
        kind = {"faster": "good", "same": "warn", "unchanged": "info"}.get(v, "bad")
        out.append(h.card("Verdict", h.paragraph(_sentence(final["claim"])), kind))
    decision = rec.get("decision")
    if decision:
        out.append(h.paragraph(f"plan.json holds the {decision['plan']} plan: "
                               f"{decision['why']}", muted=True))
    out.append(_changes(rec))
    if rec.get("status") == "complete" and rec.get("plan"):
        out.append(_use(rec))
    for note in rec.get("notes") or []:
        if not note.startswith("report.html could not be rendered"):  # it is, now
            out.append(h.card("Note", h.paragraph(note), "warn"))
    return "".join(out)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _tile(big: str, label: str, ci: str = "", kind: str = "") -> str:
    return (f'<div class="tile {h.escape(kind)}"><div class="big">{h.escape(big)}</div>'
            f'<div class="lbl">{h.escape(label)}</div><div class="ci">{h.escape(ci)}</div></div>')


def _ci(res: dict[str, Any]) -> str:
    return (f"95% CI {res['ci_low']:.2f}–{res['ci_high']:.2f} · {res['n']} interleaved "
            "rounds")


def _kind(verdict: str | None) -> str:
    return {"faster": "good", "slower": "bad", "not-reached": "bad"}.get(verdict or "",
                                                                        "neutral")


def _tiles(rec: dict[str, Any], final: dict[str, Any]) -> str:
    tiles = []
    ttt, thr = final.get("time_to_target") or {}, final.get("throughput") or {}
    target = _target_text(rec)
    if "ratio" in ttt:
        tiles.append(_tile(f"{ttt['ratio']:.2f}×", f"time-to-target speedup ({target})",
                           _ci(ttt) + _significance(ttt["verdict"]), _kind(ttt["verdict"])))
        tiles.append(_tile(f"{format_seconds(ttt['baseline']['median'])} → "
                           f"{format_seconds(ttt['tuned']['median'])}",
                           "training time to target (median)",
                           "baseline → tuned, evaluation excluded"))
    if "ratio" in thr:
        tiles.append(_tile(f"{thr['ratio']:.2f}×", "throughput speedup",
                           _ci(thr) + _significance(thr["verdict"]), _kind(thr["verdict"])))
        tiles.append(_tile(f"{thr['baseline_samples_per_s']:,.0f} → "
                           f"{thr['tuned_samples_per_s']:,.0f}", "samples / s",
                           "baseline → tuned, median of interleaved chunks"))
    base = rec.get("baseline") or {}
    if "ratio" not in ttt and base.get("time_to_target_s") is not None:
        why = ttt.get("skipped") or ttt.get("reason") or "not measured"
        tiles.append(_tile(format_seconds(base["time_to_target_s"]),
                           f"baseline time to {target}",
                           f"one run, evaluation excluded; tuned plan: {why}"))
    if not tiles or ("ratio" not in ttt and "ratio" not in thr):
        tiles.insert(0, _tile("no gain claimed", _no_gain_label(rec, final), "", "neutral"))
        if base.get("samples_per_s"):
            tiles.append(_tile(f"{base['samples_per_s']:,.0f}", "baseline samples / s"))
    return f'<div class="tiles">{"".join(tiles)}</div>'


def _significance(verdict: str) -> str:
    return {"faster": " · significant", "same": " · not significant",
            "slower": " · significantly slower",
            "not-reached": " · target missed: no claim"}.get(verdict, "")


def _no_gain_label(rec: dict[str, Any], final: dict[str, Any]) -> str:
    if final.get("verdict") == "unchanged":
        return "no stage found a measured gain"
    if rec.get("status") != "complete":
        return "the tuning did not reach its final check"
    return "the final check measured no comparison"


def _changes(rec: dict[str, Any]) -> str:
    base, tuned = rec.get("baseline_plan") or {}, rec.get("tuned_plan") or {}
    keys = [k for k in base if k != "version" and tuned and base.get(k) != tuned.get(k)]
    if not keys:
        return ""
    rows = []
    for k in keys:
        stage, entry = _who_changed(rec, k)
        gain = _gain(entry)
        rows.append([k, _v(base.get(k)), _v(tuned.get(k)), stage, gain])
    kept = (rec.get("decision") or {}).get("plan") == "baseline"
    title = "<h3>Changes the stages chose" + (" (not applied: the baseline is kept)"
                                              if kept else "") + "</h3>"
    return title + h.table(["knob", "baseline", "tuned", "chosen by", "gain in its stage"],
                           rows)


def _use(rec: dict[str, Any]) -> str:
    spec = (rec.get("workload") or {}).get("spec") or "WORKLOAD"
    text = (f"perfpilot run {spec} --plan plan.json       # train with it\n\n"
            "plan = perfpilot.load_plan(\"plan.json\")          # or in your own loop:\n"
            "pp = perfpilot.apply(plan, model, optimizer, dataset)   # see docs/apply.md")
    return f'<div class="use"><h3>Use this plan</h3>{h.code(text)}</div>'


def _gain(entry: dict[str, Any] | None) -> str:
    sp = rp._num((entry or {}).get("speedup"))
    if sp is None:
        return ""
    lo, hi = rp._num(entry.get("ci_low")), rp._num(entry.get("ci_high"))  # type: ignore[union-attr]
    return f"{sp:.2f}×" + (f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else "")


def _who_changed(rec: dict[str, Any], key: str) -> tuple[str, dict[str, Any] | None]:
    prev = rec.get("baseline_plan") or {}
    for st in rec.get("stages") or []:
        plan = st.get("plan") or {}
        if plan.get(key) != prev.get(key):
            ev = st.get("evidence") or {}
            hit = next((e for e in ev.get("candidates") or [] if e.get("fate") == "accepted"
                        and key in (e.get("changes") or {})), None)
            cmp = (ev.get("chosen") or {}).get("comparison") or {}
            if hit is None and rp._num(cmp.get("ratio")) is not None:  # the batch stage
                hit = {"speedup": cmp["ratio"], "ci_low": cmp.get("ci_low"),
                       "ci_high": cmp.get("ci_high")}
            return st.get("name", "?"), hit
        prev = plan
    return "", None


def _v(x: Any) -> str:
    return "default" if x is None else str(x)


# ---------------------------------------------------------------- before and after


def _before_after(rec: dict[str, Any]) -> str:
    w = rec.get("workload") or {}
    final = rec.get("final") or {}
    curves = (f"<h3>Training curves ({_pair_source(rec)})</h3>"
              + (rp.training_curves(_pair(rec), target=w.get("target"), metric=w.get("metric"))
                 or h.paragraph("No loss history recorded.", muted=True)))
    rounds = (final.get("time_to_target") or {}).get("rounds")
    if rounds:
        curves = (f'<div class="grid2"><div>{curves}</div><div>'
                  "<h3>Runs to the target, paired by round</h3>"
                  f"{rp.ttt_rounds(rounds)}</div></div>")
    return curves + _comparisons(final)


def _comparisons(final: dict[str, Any]) -> str:
    rows = []
    for name, key, unit in (("time to target", "time_to_target", "s"),
                            ("throughput", "throughput", "samples/s")):
        res = final.get(key) or {}
        if "ratio" in res:
            if key == "throughput":
                a, b = res["baseline_samples_per_s"], res["tuned_samples_per_s"]
                vals = f"{a:,.0f} → {b:,.0f} {unit}"
            else:
                vals = f"{res['baseline']['median']:.3g} → {res['tuned']['median']:.3g} {unit}"
            rows.append([name, vals, f"{res['ratio']:.3f}×",
                         f"{res['ci_low']:.3f}–{res['ci_high']:.3f}", res["n"],
                         _pill(res["verdict"])])
        else:
            why = res.get("skipped") or res.get("reason") or "not measured"
            rows.append([name, f"not measured: {why}", "", "", "", ""])
    if not final or final.get("verdict") == "unchanged":
        return h.paragraph("No final comparison: the tuned plan is the baseline.", muted=True)
    return ("<h3>Final check: tuned vs baseline, interleaved</h3>" +
            h.table(["comparison", "baseline → tuned (median)", "speedup", "95% CI", "rounds",
                     "verdict"], rows, numeric=(2, 3, 4), raw=(5,)))


def _pill(state: Any) -> str:
    s = h.escape(state)
    return f'<span class="pill {s}">{s}</span>'


def _pair(rec: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    """The before/after records: the final check's first round of each plan when it ran
    (interleaved, same evaluation spacing), else the baseline run and the tuned run."""
    return {"baseline": rec.get("baseline_check") or rec.get("baseline"),
            "tuned": rec.get("tuned")}


def _pair_source(rec: dict[str, Any]) -> str:
    return "the final check's first round" if rec.get("baseline_check") else \
        "the baseline run and the tuned run"


def _steps(rec: dict[str, Any]) -> str:
    runs = {k: v for k, v in _pair(rec).items() if v}
    rows = []
    for p in PHASES:
        row = [PHASE_LABELS.get(p, p)]
        for r in runs.values():
            row.append(f"{1e3 * float(r['phases_s'].get(p, 0.0)):.3g}")
        rows.append(row)
    rows.append(["step (mean)", *[f"{1e3 * sum(r['phases_s'].values()):.3g}"
                                  for r in runs.values()]])
    rows.append(["batch size", *[r["plan"].get("batch_size") for r in runs.values()]])
    rows.append(["samples / s", *[f"{r['samples_per_s']:,.0f}" for r in runs.values()]])
    note = h.paragraph("Per training sample, so plans with different batch sizes compare; the "
                       f"table is per optimizer step (ms). From {_pair_source(rec)}.",
                       muted=True)
    cols = ["phase", *[f"{k} (ms/step)" for k in runs]]
    return rp.phase_bars(runs) + note + h.table(cols, rows, numeric=range(1, len(cols)))


# ---------------------------------------------------------------- stages


def _stage(st: dict[str, Any], rec: dict[str, Any]) -> str:
    ev = st.get("evidence") or {}
    head = [h.paragraph(_sentence(st.get("summary") or "")),
            h.paragraph(f"budget {format_seconds(st.get('budget_s') or 0.0)}, took "
                        f"{format_seconds(st.get('elapsed_s') or 0.0)}, "
                        f"{len(st.get('trials') or [])} trials", muted=True)]
    if st.get("error"):
        head.append(h.card("This stage stopped", h.paragraph(st["error"]), "bad"))
    name = st.get("name")
    body = _batch(ev, rec) if name == "batch" else _tournament(ev, name)
    return "".join(head) + body + _raw_json(ev)


def _tournament(ev: dict[str, Any], name: str | None) -> str:
    out = []
    if name == "loader" and ev.get("data_share") is not None:
        out.append(h.paragraph(f"Data wait before: {100 * ev['data_share']:.1f}% of a step "
                               f"({format_seconds(ev.get('step_s') or 0.0)} per step). "
                               f"{ev.get('workers_stopped') or ''}"))
    cands = ev.get("candidates") or []
    measured = [c for c in cands if rp._num(c.get("speedup")) is not None]
    if measured:
        out.append("<h3>Measured candidates (each against the incumbent of its time)</h3>")
        out.append(rp.loader_workers(measured, ev.get("data_share")) if name == "loader"
                   else rp.speedups(measured))
    if cands:
        out.append(_candidate_table(cands))
    fin = ev.get("final") or {}
    if rp._num(fin.get("speedup")) is not None:
        out.append(h.paragraph(f"Stage result against its start: {fin['speedup']:.2f}× "
                               f"[{fin['ci_low']:.2f}, {fin['ci_high']:.2f}] ({fin['verdict']})."))
    hz = ev.get("horizon") or {}
    if hz.get("source") and hz.get("source") != "not needed":
        out.append(h.paragraph(f"Run length for start-up costs: {hz['source']}", muted=True))
    return "".join(out)


def _candidate_table(cands: list[dict[str, Any]]) -> str:
    rows = []
    for c in cands:
        sp = rp._num(c.get("speedup"))
        rows.append([c.get("label", "?"), _pill(c.get("fate")),
                     f"{sp:.3f}×" if sp is not None else "",
                     f"{c['ci_low']:.3f}–{c['ci_high']:.3f}" if sp is not None else "",
                     c.get("rounds") or "", c.get("reason", "")])
    return h.table(["candidate", "fate", "speedup", "95% CI", "rounds", "reason"], rows,
                   numeric=(2, 3, 4), raw=(1,))


def _batch(ev: dict[str, Any], rec: dict[str, Any]) -> str:
    base = (ev.get("baseline") or {}).get("batch_size")
    chosen = (ev.get("chosen") or {}).get("batch_size")
    thr = ev.get("throughput") or {}
    plots = [rp.throughput_curve(thr.get("points") or [], baseline=base, chosen=chosen,
                                 knee=thr.get("knee")),
             rp.goodput_curve(ev.get("goodput") or [], baseline=base, chosen=chosen)]
    plots = [p for p in plots if p]
    out = []
    if plots:
        out.append("<h3>Throughput and goodput against the batch size</h3>")
        out.append('<div class="grid2" style="grid-template-columns:1fr 1fr">'
                   + "".join(f"<div>{p}</div>" for p in plots) + "</div>")
    fit = ev.get("fit") or {}
    if fit.get("limit"):
        out.append(h.paragraph(f"Largest batch that fits: {fit['limit']} (on {fit.get('device')})."
                               , muted=True))
    cands = ev.get("candidates") or []
    if cands:
        out.append("<h3>Runs to the target (validation)</h3>")
        out.append(_batch_table(cands))
    ch = ev.get("chosen") or {}
    if ch.get("why"):
        out.append(h.paragraph(f"Chosen: batch {ch.get('batch_size')}, lr {ch.get('lr')}: "
                               f"{ch['why']}"))
    return "".join(out)


def _batch_table(cands: list[dict[str, Any]]) -> str:
    rows = []
    for c in cands:
        m = c.get("measured_ttt_s") or {}
        pred = rp._num(c.get("predicted_ttt_s"))
        med = rp._num(m.get("median"))
        state = "skipped" if c.get("skipped") else ("failed" if c.get("diverged") else (
            "complete" if c.get("reached") else "pruned"))
        rows.append([c.get("batch_size"), f"{c.get('lr', 0):.3g}", c.get("warmup_steps"),
                     c.get("origin", ""), f"{pred:.3g}" if pred is not None else "",
                     f"{med:.3g}" if med is not None else "", m.get("n", "") if m else "",
                     _pill(state), c.get("skipped") or ""])
    return h.table(["batch", "lr", "warmup", "origin", "predicted s", "measured s (median)",
                    "runs", "state", "note"], rows, numeric=(0, 1, 2, 4, 5, 6), raw=(7,))


def _raw_json(ev: dict[str, Any]) -> str:
    if not ev:
        return ""
    text = json.dumps(ev, indent=1, default=str)
    if len(text) > 60000:
        text = text[:60000] + "\n... (truncated; see record.json)"
    return f"<details><summary>All evidence (JSON)</summary>{h.code(text)}</details>"


# ---------------------------------------------------------------- rejected, trials, machine


def _rejected(rec: dict[str, Any]) -> str:
    rows = []
    for st in rec.get("stages") or []:
        ev = st.get("evidence") or {}
        for c in ev.get("candidates") or []:
            if c.get("fate") in ("rejected", "skipped"):
                rows.append([st.get("name"), c.get("label", "?"), _pill(c["fate"]),
                             c.get("reason", "")])
        if st.get("name") == "batch":
            chosen = ev.get("chosen") or {}
            for c in ev.get("candidates") or []:
                if (c.get("batch_size"), c.get("lr")) != (chosen.get("batch_size"),
                                                         chosen.get("lr")):
                    rows.append(["batch", f"batch {c.get('batch_size')}, lr {c.get('lr'):.3g}",
                                 _pill("rejected"), _batch_reason(c)])
    if (rec.get("decision") or {}).get("plan") == "baseline" and rec.get("tuned_plan") \
            and rec.get("tuned_plan") != rec.get("baseline_plan"):
        rows.append(["final", "the tuned plan", _pill("rejected"), rec["decision"]["why"]])
    if not rows:
        return h.paragraph("None: every candidate measured was kept.", muted=True)
    return h.table(["stage", "candidate", "fate", "reason"], rows, raw=(2,))


def _batch_reason(c: dict[str, Any]) -> str:
    if c.get("skipped"):
        return str(c["skipped"])
    if c.get("diverged"):
        return "diverged (non-finite loss) or failed"
    med = rp._num((c.get("measured_ttt_s") or {}).get("median"))
    if not c.get("reached"):
        return "did not reach the target within its time box"
    return f"reached the target in {med:.3g} s (median), not measured faster than the choice" \
        if med is not None else "not measured faster than the choice"


def _trials(rec: dict[str, Any]) -> str:
    trials = rec.get("trials") or []
    if not trials:
        return h.paragraph("No trial finished.", muted=True)
    counts: dict[str, int] = {}
    for t in trials:
        counts[t["state"]] = counts.get(t["state"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    placed = rec.get("placement") or {}
    where = ", ".join(f"{n} ran {k}" for k, n in placed.items()) if placed else ""
    rows = []
    for t in trials:
        key = t.get("plan") or {}
        what = key.get("check") or key.get("step") or ""
        rows.append([t["number"], t["stage"], what, _pill(t["state"]),
                     f"{max(t['finished_at'] - t['started_at'], 0.0):.2f}", t.get("reason", "")])
    table = h.table(["#", "stage", "what", "state", "seconds", "reason"], rows,
                    numeric=(0, 4), raw=(3,))
    head = h.paragraph(f"{len(trials)} trials: {summary}." + (f" This session: {where}."
                                                              if where else ""))
    return head + f"<details><summary>Every trial</summary>{table}</details>"


def _machine(rec: dict[str, Any]) -> str:
    m, v = rec.get("machine") or {}, rec.get("versions") or {}
    cpu = m.get("cpu") or {}
    gpus = m.get("gpus") or []
    pairs = [("CPU", f"{cpu.get('model', '?')} ({cpu.get('usable_cores', '?')} usable cores "
                     f"of {cpu.get('logical_cores', '?')})"),
             ("GPUs", ", ".join(str(g.get("name", g)) if isinstance(g, dict) else str(g)
                                for g in gpus) or "none"),
             ("devices", ", ".join(m.get("devices") or [])),
             ("perfpilot / torch / python", f"{v.get('perfpilot')} / {v.get('torch')} / "
                                            f"{v.get('python')}"),
             ("platform", v.get("platform", m.get("os", ""))),
             ("executor", (rec.get("settings") or {}).get("executor", "inline")),
             ("workload", (rec.get("workload") or {}).get("spec") or
              (rec.get("workload") or {}).get("name"))]
    return h.key_values(pairs)
