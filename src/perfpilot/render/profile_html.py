"""The self-contained HTML profile report: findings, step breakdown, hot lines, hot ops.

Built with :mod:`perfpilot.render.html` from a profiled :class:`RunRecord` (with its
``findings``). Charts: the step's phase split, the run timeline, step times over
the run, and RSS over time.
"""

from __future__ import annotations

import linecache
import os
from collections.abc import Sequence
from typing import Any

from perfpilot.record import PHASES, Finding, RunRecord
from perfpilot.render import html as h
from perfpilot.render.console import PHASE_LABELS, format_bytes, format_seconds
from perfpilot.render.profile_console import cpu_parts

CONTEXT_LINES = 2


def profile_page(record: RunRecord) -> str:
    """The whole report as one HTML string."""
    sections = [h.Section("Findings", _findings(record.findings,
                                                record.timeline.steady_s or None), "findings"),
                h.Section("Step breakdown", _steps(record), "steps"),
                h.Section("Hot lines", _hot_lines(record), "hot-lines"),
                h.Section("Hot ops", _hot_ops(record), "hot-ops"),
                h.Section("Run", _run(record), "run")]
    prof = record.profile
    wall = record.timeline.total_s or record.wall_time_s
    sub = (f"{format_seconds(wall)} wall, {prof.steady_steps} steady "
           f"steps, exit code {prof.exit_code}")
    return h.page(f"perfpilot profile: {record.workload}", sections, subtitle=sub)


def _snippet(location: dict[str, Any] | None) -> str:
    if not location:
        return ""
    file, line = location["file"], int(location["line"])
    rows = []
    for n in range(max(1, line - CONTEXT_LINES), line + CONTEXT_LINES + 1):
        text = linecache.getline(file, n)
        if text:
            mark = ">" if n == line else " "
            rows.append(f"{mark}{n:5d}  {text.rstrip()}")
    head = f"<div class='muted'>{h.escape(file)}:{line}</div>"
    return head + (h.code("\n".join(rows)) if rows else "")


def _finding_body(f: Finding) -> str:
    parts = [f"<p><b>Evidence.</b> {h.escape(f.evidence)}</p>",
             f"<p><b>Fix.</b> {h.escape(f.fix)}</p>",
             f"<p><b>Estimated whole-run gain:</b> {f.estimated_speedup:.2f}x "
             f"<span class='muted'>({h.escape(f.confidence)} confidence"
             + (f"; acts on {100 * f.time_share:.1f}% of the run" if f.time_share else "")
             + ")</span></p>"]
    from perfpilot.render.profile_console import support_text

    basis = support_text(f)
    if basis:
        parts.append(f"<p><b>Basis:</b> {h.escape(basis)}</p>")
    v = f.verified
    if v is not None and v.ok:
        parts.append(f"<p><b>Verified:</b> {v.ratio:.2f}x measured (95% CI "
                     f"{v.ci_low:.2f}-{v.ci_high:.2f}, {v.n} interleaved rounds)</p>")
    elif v is not None:
        parts.append(h.paragraph(f"Not verified: {v.error}", muted=True))
    parts.append(_snippet(f.location))
    return "".join(parts)


def _findings(all_findings: Sequence[Finding], steady_s: float | None = None) -> str:
    findings = [f for f in all_findings if not f.thin]
    thin = [f for f in all_findings if f.thin]
    out = []
    if findings:
        out.append(h.card(f"#1 {findings[0].id}: {findings[0].title}",
                          _finding_body(findings[0]),
                          "bad" if findings[0].estimated_speedup >= 1.2 else "warn"))
    elif thin:
        out.append(h.card("No finding rests on enough measurement", h.paragraph(
            "The findings below would name a bottleneck if their evidence held."), "warn"))
    else:
        out.append(h.card("No bottleneck found", h.paragraph(
            "Nothing in the steady run costs enough to name."), "good"))
    for i, f in enumerate(findings[1:], start=2):
        out.append(h.card(f"#{i} {f.id}: {f.title}", _finding_body(f), "info"))
    if thin:
        from perfpilot.diagnose.evidence import how_to_get_more

        for f in thin:
            why = f.support.shortfall() if f.support else ""
            out.append(h.card(f"Not enough evidence: {f.id}: {f.title}",
                              h.paragraph(f"Rests on {why}. To decide it, "
                                          f"{how_to_get_more(steady_s)}.")
                              + _finding_body(f), "info"))
    return "".join(out)


def _steps(record: RunRecord) -> str:
    ph = record.step_phases
    per = ph.per_step_s or record.phases_s
    segs = [(PHASE_LABELS.get(p, p), per.get(p, 0.0)) for p in PHASES if p != "other"]
    segs += [("file I/O", per.get("io", 0.0)), ("other", per.get("other", 0.0))]
    segs = [(n, v) for n, v in segs if v > 0]
    s = record.step_time_s
    out = [h.paragraph(f"{ph.steps} steady steps ({ph.kind} boundaries); "
                       f"median {format_seconds(s.median)} (95% CI "
                       f"{format_seconds(s.ci_low)}-{format_seconds(s.ci_high)}); "
                       f"{record.samples_per_s:,.0f} samples/s.")]
    if segs:
        out.append(h.stacked_bar(segs, xlabel="seconds per step", fmt=format_seconds))
    tl = record.timeline
    parts = [("startup", tl.startup_s), ("warm-up", tl.warmup_s), ("train steps", tl.train_s),
             ("eval", tl.eval_s), ("tail", tl.tail_s), ("profiler window", tl.profiler_s)]
    parts = [(n, v) for n, v in parts if v > 0]
    if parts:
        out.append("<h3>Where the wall time went</h3>")
        out.append(h.bar_chart([n for n, _ in parts], [v for _, v in parts],
                               xlabel="seconds", fmt=format_seconds))
    series = list(ph.step_s_series)
    if len(series) >= 3:
        out.append("<h3>Step time over the run</h3>")
        out.append(h.line_chart({"step": (list(range(len(series))), series)},
                                xlabel="steady step (thinned)", ylabel="seconds"))
    return "".join(out)


def _hot_lines(record: RunRecord) -> str:
    hot = sorted(record.hot_lines, key=lambda x: x.self_share, reverse=True)[:15]
    if not hot:
        return h.paragraph("No samples in the user's code.", muted=True)
    rows = []
    for x in hot:
        text = linecache.getline(x.file, x.line).strip()
        rows.append([f"{100 * x.self_share:.1f}%", f"{100 * x.total_share:.1f}%",
                     f"{100 * x.python_share:.1f}%",
                     f"{os.path.basename(x.file)}:{x.line}", x.function,
                     f"<code>{h.escape(text)}</code>"])
    note = h.paragraph("Main thread, steady window. self: the line was the innermost line of "
                       "your code (time in what it calls counts); total: anywhere on the "
                       "stack; python: running Python bytecode.", muted=True)
    return note + h.table(["self", "total", "python", "line", "function", "source"], rows,
                          numeric=(0, 1, 2), raw=(5,))


def _hot_ops(record: RunRecord) -> str:
    ops = record.hot_ops
    if not ops.ops:
        why = ops.error or f"profiler window {ops.state}"
        return h.paragraph(f"No operator profile ({why}).", muted=True)
    steps = max(ops.steps, 1)
    top = ops.ops[:15]
    rows = [[o.name, o.device, format_seconds(o.self_s / steps),
             format_seconds(o.total_s / steps), f"{o.count / steps:.3g}"] for o in top]
    chart = h.bar_chart([o.name[:40] for o in top[:10]],
                        [o.self_s / steps for o in top[:10]], xlabel="self seconds per step",
                        fmt=format_seconds)
    return (h.paragraph(f"torch.profiler over {steps} steps "
                        f"({format_seconds(ops.window_s)}).", muted=True)
            + chart + h.table(["op", "device", "self/step", "total/step", "calls/step"], rows,
                              numeric=(2, 3, 4)))


def _run(record: RunRecord) -> str:
    prof, mem, th, tl = record.profile, record.memory, record.threads, record.timeline
    pairs = [("command", " ".join(prof.argv or [])),
             ("exit code", prof.exit_code), ("stopped", prof.stopped),
             ("startup", f"{format_seconds(tl.startup_s)} (imports "
                         f"{format_seconds(tl.imports_s)})"),
             ("peak RSS", format_bytes(mem.peak_rss_bytes)),
             ("CPU", "; ".join(cpu_parts(record)) or "not measured"),
             ("threads", f"torch {th.torch_threads} intra-op, "
                         f"{th.torch_interop_threads} inter-op; "
                         f"{th.usable_cores} usable cores")]
    for ld in record.loaders:
        pairs.append((f"DataLoader ({ld.role})",
                      f"batch_size={ld.batch_size}, num_workers={ld.num_workers}, "
                      f"pin_memory={ld.pin_memory}, "
                      f"persistent_workers={ld.persistent_workers}"))
    err = prof.error
    out = [h.key_values(pairs)]
    if err:
        out.append(h.card(f"The script failed: {err.get('type')}",
                          h.code(err.get("traceback", "")), "bad"))
    series = mem.series
    if len(series) >= 3:
        out.append("<h3>Resident memory</h3>")
        out.append(h.line_chart({"RSS": ([p[0] for p in series],
                                         [p[1] / 2**20 for p in series])},
                                xlabel="seconds since start", ylabel="MiB"))
    return "".join(out)
