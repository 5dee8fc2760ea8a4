"""The tune report's per-stage, rejected, trials and machine sections (HTML fragments).

Each public function takes a :class:`~perfpilot.tune_record.TuneRecord` (or one of its
:class:`~perfpilot.tune_record.StageRecord`) and returns HTML built with
:mod:`perfpilot.render.html`; :mod:`perfpilot.render.tune_html` assembles the page. A
stage's ``evidence`` is the stage's own payload, read here by its documented keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from perfpilot.render import html as h
from perfpilot.render import tune_plots as rp
from perfpilot.render.console import format_seconds
from perfpilot.render.tune_load import cell as load_cell
from perfpilot.tune_record import StageRecord, TuneRecord


def pill(state: Any) -> str:
    s = h.escape(state)
    return f'<span class="pill {s}">{s}</span>'


def sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def stage(st: StageRecord) -> str:
    """One stage: its summary, budget and time, and its evidence drawn (then as JSON)."""
    ev = st.evidence
    head = [h.paragraph(sentence(st.summary)),
            h.paragraph(f"budget {format_seconds(st.budget_s)}, took "
                        f"{format_seconds(st.elapsed_s)}, {len(st.trials)} trials",
                        muted=True)]
    if st.error:
        head.append(h.card("This stage stopped", h.paragraph(st.error), "bad"))
    body = _batch(ev) if st.name == "batch" else _tournament(ev, st.name)
    return "".join(head) + body + _raw_json(ev)


def _tournament(ev: Mapping[str, Any], name: str) -> str:
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
        rows.append([c.get("label", "?"), pill(c.get("fate")),
                     f"{sp:.3f}×" if sp is not None else "",
                     f"{c['ci_low']:.3f}–{c['ci_high']:.3f}" if sp is not None else "",
                     c.get("rounds") or "", c.get("reason", "")])
    return h.table(["candidate", "fate", "speedup", "95% CI", "rounds", "reason"], rows,
                   numeric=(2, 3, 4), raw=(1,))


def _batch(ev: Mapping[str, Any]) -> str:
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
                     pill(state), c.get("skipped") or ""])
    return h.table(["batch", "lr", "warmup", "origin", "predicted s", "measured s (median)",
                    "runs", "state", "note"], rows, numeric=(0, 1, 2, 4, 5, 6), raw=(7,))


def _raw_json(ev: Mapping[str, Any]) -> str:
    if not ev:
        return ""
    text = json.dumps(ev, indent=1, default=str)
    if len(text) > 60000:
        text = text[:60000] + "\n... (truncated; see record.json)"
    return f"<details><summary>All evidence (JSON)</summary>{h.code(text)}</details>"


# ---------------------------------------------------------------- rejected, trials, machine


def rejected(rec: TuneRecord) -> str:
    """Every candidate a stage rejected or skipped, and the tuned plan if the final check
    sent it back."""
    rows = []
    for st in rec.stages:
        ev = st.evidence
        for c in ev.get("candidates") or []:
            if c.get("fate") in ("rejected", "skipped"):
                rows.append([st.name, c.get("label", "?"), pill(c["fate"]),
                             c.get("reason", "")])
        if st.name == "batch":
            chosen = ev.get("chosen") or {}
            for c in ev.get("candidates") or []:
                if (c.get("batch_size"), c.get("lr")) != (chosen.get("batch_size"),
                                                         chosen.get("lr")):
                    rows.append(["batch", f"batch {c.get('batch_size')}, lr {c.get('lr'):.3g}",
                                 pill("rejected"), _batch_reason(c)])
    if rec.decision is not None and rec.decision.plan == "baseline" \
            and rec.tuned_plan is not None and rec.tuned_plan != rec.baseline_plan:
        rows.append(["final", "the tuned plan", pill("rejected"), rec.decision.why])
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


def trials(rec: TuneRecord) -> str:
    """How many trials ended how, where they ran, and every trial (folded)."""
    if not rec.trials:
        return h.paragraph("No trial finished.", muted=True)
    counts: dict[str, int] = {}
    for t in rec.trials:
        counts[t.state] = counts.get(t.state, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    where = ", ".join(f"{n} ran {k}" for k, n in rec.placement.items())
    rows = []
    for t in rec.trials:
        key = t.plan or {}
        what = key.get("check") or key.get("step") or ""
        rows.append([t.number, t.stage, what, pill(t.state),
                     f"{max(t.finished_at - t.started_at, 0.0):.2f}", load_cell(t.load),
                     t.reason])
    table = h.table(["#", "stage", "what", "state", "seconds", "load", "reason"], rows,
                    numeric=(0, 4), raw=(3,))
    head = h.paragraph(f"{len(rec.trials)} trials: {summary}." + (f" This session: {where}."
                                                              if where else ""))
    return head + f"<details><summary>Every trial</summary>{table}</details>"


def machine(rec: TuneRecord) -> str:
    """The machine, the versions, the executor and the workload spec."""
    m, v = rec.machine, rec.versions
    pairs = [("CPU", f"{m.cpu_model or '?'} ({m.usable_cores or '?'} usable cores "
                     f"of {m.logical_cores or '?'})"),
             ("GPUs", ", ".join(m.gpus) or "none"),
             ("devices", ", ".join(m.devices)),
             ("perfpilot / torch / python", f"{v.perfpilot} / {v.torch} / {v.python}"),
             ("platform", v.platform or m.os),
             ("executor", rec.settings.executor),
             ("workload", rec.workload.spec or rec.workload.name)]
    return h.key_values(pairs)


def proxy(rec: TuneRecord) -> str:
    """The proxy target: what was measured and what was extrapolated (in words), the
    baseline's learning curve, and the batch decision at the proxy with its re-check and
    each configuration's extrapolated time to the real target."""
    px = rec.proxy or {}
    out = [h.paragraph(sentence(w)) for w in px.get("words") or []]
    plot = rp.learning_curve(dict(px))
    if plot:
        out.append(plot)
    batch = next((st.evidence.get("proxy") for st in rec.stages if st.name == "batch"), None)
    if batch:
        sign = ">=" if px.get("direction") == "max" else "<="
        m = px.get("metric") or "metric"
        out.append(h.paragraph(
            f"Measured: the batch stage compared configurations by their time to {m} {sign} "
            f"{batch['decision_level']:.4g} (the decision level: the baseline's curve held it "
            f"after {batch.get('decision_level_samples') or 0:,.0f} samples, about "
            f"{batch.get('decision_level_s') or 0:.1f} s at the stage's speed). Re-check "
            f"against short-horizon bias, at a later level ({m} {sign} "
            f"{(batch.get('recheck') or {}).get('level') or batch['level']:.4g}; the proxy "
            f"target is {batch['level']:.4g}): " + _recheck_words(batch.get("recheck") or {})))
        rows = [[e.get("batch_size"), f"{e.get('lr', 0):.3g}",
                 f"{e['measured_median_s']:.3g}" if rp._num(e.get("measured_median_s")) else "",
                 e.get("words", "")] for e in batch.get("extrapolations") or []]
        if rows:
            title = f"Extrapolated time to {m} {sign} {px.get('target'):g}"
            out.append(f"<h3>{h.escape(title)}</h3>")
            out.append(h.table(["batch", "lr", "measured s to the decision level (median)",
                                "extrapolated training time to the real target"], rows,
                               numeric=(0, 1, 2)))
    return "".join(out)


def _recheck_words(rc: Mapping[str, Any]) -> str:
    if not rc.get("done"):
        return (rc.get("why") or "not re-checked") + "."
    verdict = ("confirmed: the decision stands" if rc.get("verdict") == "confirmed" else
               "not confirmed: the baseline is kept (a short-horizon gain)")
    return (f"{verdict} (median {rc['chosen_median_s']:.3g} s vs the baseline's "
            f"{rc['baseline_median_s']:.3g} s).")
