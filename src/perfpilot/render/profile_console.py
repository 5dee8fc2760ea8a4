"""Terminal summary of a profile: the top finding first, then steps, hot lines, hot ops.

Pure formatting of a :class:`~perfpilot.record.RunRecord` built by ``perfpilot profile``
(its ``findings`` already diagnosed); nothing is measured here. Text from the
user's code (source lines, evidence quoting it) is escaped: ``x[idx]`` is not markup.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.markup import escape as esc

from perfpilot.record import PHASES, Finding
from perfpilot.render.console import PHASE_LABELS, format_bytes, format_seconds

if TYPE_CHECKING:
    from rich.console import Console

    from perfpilot.record import RunRecord
    from perfpilot.record_sections import Verification

_BAR = 24
MAX_OTHER = 8
MAX_THIN = 3
MAX_LINES = 8
MAX_OPS = 8
HIGH_OVERHEAD = 0.03


def print_profile(record: RunRecord, console: Console | None = None) -> None:
    """Print the whole summary (see the module docstring)."""
    from rich.console import Console

    console = console or Console()
    console.print(header(record))
    exit_note = exit_text(record)
    if exit_note:
        console.print(exit_note)
    findings = [f for f in record.findings if not f.thin]
    thin = [f for f in record.findings if f.thin]
    if findings:
        console.print(top_finding(findings[0]))
        if len(findings) > 1:
            console.print(other_findings(findings[1:]))
    elif thin:
        console.print("\n[yellow]No finding rests on enough measurement[/] to name a "
                      "bottleneck.")
    else:
        console.print("\n[green]No bottleneck found[/]: nothing costs enough to name.")
    if thin:
        console.print(thin_findings(thin, record))
    if steps_seen(record):
        console.print(step_table(record))
    else:
        console.print(NO_STEPS + in_children(record))
    console.print(timeline_text(record))
    lines = hot_lines_table(record)
    if lines is not None:
        console.print(lines)
    ops = hot_ops_table(record)
    if ops is not None:
        console.print(ops)
    console.print(footer(record))


NO_STEPS = ("No training step was seen (no optimizer.step(), DataLoader batch or model "
            "forward call), so there is no step breakdown.")


def in_children(record: RunRecord) -> str:
    """When no step was seen but child processes did most of the work (``mp.spawn``,
    ``torchrun``-style launchers, a subprocess per run): say where the training went."""
    cpu = record.cpu
    own = cpu.user_s + cpu.system_s
    if not cpu.measured or cpu.children_s < max(own, 0.5):
        return ""
    return (f" Child processes of the script used {format_seconds(cpu.children_s)} of CPU "
            f"(the script itself {format_seconds(own)}): the training probably runs there, "
            "and perfpilot profiles only the process it starts. Profile one worker's code "
            "in a single process (e.g. world size 1) instead.")


_KINDS = {"optimizer": ("optimizer step", "optimizer steps"),
          "backward": ("training step (backward)", "training steps (backward)"),
          "data": ("batch", "batches"), "forward": ("forward call", "forward calls")}


def _short(path: str) -> str:
    return os.path.basename(path)


def _plural(n: Any, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def steps_seen(record: RunRecord) -> bool:
    """Whether the profile saw any training step (else there is nothing to break down)."""
    return bool(record.step_phases.steps or record.profile.steady_steps)


def header(record: RunRecord) -> str:
    prof, tl = record.profile, record.timeline
    head = (f"[bold]perfpilot profile[/]: {esc(record.workload)} — "
            f"{format_seconds(tl.total_s or record.wall_time_s)}"
            f" wall; startup {format_seconds(tl.startup_s)} (imports "
            f"{format_seconds(tl.imports_s)})")
    if not steps_seen(record):
        return head  # NO_STEPS says so where the step table would be
    kind = _KINDS.get(prof.step_kind or record.step_phases.kind or "", ("step", "steps"))
    steady = int(prof.steady_steps)
    return (f"{head}, then {steady} steady {kind[0] if steady == 1 else kind[1]} over "
            f"{format_seconds(tl.steady_s)}" + followed_text(record))


def followed_text(record: RunRecord) -> str:
    """Where the steps were measured when the script trained in spawned children."""
    fol = record.profile.followed
    if not fol:
        return ""
    who = f"rank {fol['rank']}" if fol.get("rank") is not None else f"pid {fol['pid']}"
    each = sorted(set((fol.get("steps") or {}).values()))
    ran = (f"each ran {each[0]} steps" if len(each) == 1
           else "they ran " + ", ".join(map(str, each)) + " steps")
    return (f"\n[dim](measured in the spawned process {who}, 1 of {fol['processes']} the "
            f"script started; {ran})[/]")


def exit_text(record: RunRecord) -> str | None:
    prof = record.profile
    code, stopped, err = prof.exit_code, prof.stopped, prof.error
    if stopped in ("steps", "duration"):
        if (prof.config or {}).get("keep_running"):
            ended = ("" if code is None else f" and exited with code {code}" if code
                     else " to its end")
            return (f"[dim]Measured the requested window ({stopped}); the script then ran "
                    f"on unwatched{ended}.[/]")
        return (f"[dim]Stopped after the requested window ({stopped}): perfpilot ended the "
                "script there; its remaining code did not run.[/]")
    if prof.partial:
        return ("[bold red]The script ended without perfpilot's final save (killed or "
                "os._exit); this profile holds what was saved last.[/]")
    if code:
        where = ""
        if err and err.get("site"):
            where = f" at {_short(err['site'][0])}:{err['site'][1]}"
        what = f" ({err['type']}: {esc(err['message'][:120])}{where})" if err else ""
        steps = int(prof.steps)
        when = f"after {_plural(steps, 'step')}" if steps else "before any training step"
        return (f"[bold red]The script exited with code {code}{what}[/] {when}; the profile "
                "covers what ran.")
    return None


def top_finding(f: Finding) -> str:
    lines = [f"\n[bold]#1 {f.id}[/]  [bold green]~{f.estimated_speedup:.2f}x faster run[/] "
             f"(estimated, {f.confidence} confidence)",
             f"   {esc(f.title)}",
             f"   [bold]evidence[/] {esc(f.evidence)}",
             f"   [bold]fix[/]      {esc(f.fix)}"]
    basis = support_text(f)
    if basis:
        lines.append(f"   [bold]basis[/]    {basis}")
    if f.location:
        lines.append(f"   [bold]where[/]    {_location(f.location)}")
    if f.verified is not None:
        lines.append("   [bold]verified[/] " + verified_text(f.verified))
    return "\n".join(lines)


def support_text(f: Finding) -> str:
    """The measurement under the estimate: how many observations, the share's interval,
    and the gain for this run when start-up and tail make it differ from a long run's."""
    sup = f.support
    if sup is None:
        return ""
    parts = [f"{sup.n:,} {sup.unit} in the steady window"]
    if sup.own is not None:
        parts[0] += f" ({sup.own:,} in this code)"
    if f.time_share is not None and sup.share_low is not None and sup.share_high is not None:
        parts.append(f"share {100 * f.time_share:.0f}% (95% CI {100 * sup.share_low:.0f}-"
                     f"{100 * sup.share_high:.0f}%)")
    if (sup.run_speedup is not None and sup.steady_fraction is not None
            and abs(sup.run_speedup - f.estimated_speedup) >= 0.01):
        parts.append(f"for this run {sup.run_speedup:.2f}x (its steady steps were "
                     f"{100 * sup.steady_fraction:.0f}% of the wall time; the estimate is "
                     "for a long run)")
    return "; ".join(parts)


def thin_findings(thin: Sequence[Finding], record: RunRecord) -> str:
    """Findings whose share rests on too little measurement, and how to get more."""
    from perfpilot.diagnose.evidence import how_to_get_more

    out = ["\n[bold yellow]Not enough evidence[/] (shown, not ranked: each rests on less "
           "measurement than its rule needs)"]
    for f in thin[:MAX_THIN]:
        why = f.support.shortfall() if f.support else ""
        out.append(f"   {f.id}: {esc(f.title)} [dim](~{f.estimated_speedup:.2f}x if it held; "
                   f"{why})[/]")
    if len(thin) > MAX_THIN:
        out.append(f"   [dim]{len(thin) - MAX_THIN} more in the JSON/HTML report[/]")
    out.append(f"   To decide them, {how_to_get_more(record.timeline.steady_s or None)}.")
    return "\n".join(out)


def verified_text(v: Verification) -> str:
    if not v.ok:
        return f"[yellow]not verified: {v.error}[/]"
    return (f"measured {v.ratio:.2f}x (95% CI {v.ci_low:.2f}-{v.ci_high:.2f}, "
            f"{v.n} interleaved rounds, {v.verdict or ''}) with "
            + ", ".join(f"{k}={val}" for k, val in v.change.items()))


def _location(location: dict[str, Any]) -> str:
    import linecache

    text = linecache.getline(location["file"], int(location["line"])).strip()
    where = f"{_short(location['file'])}:{location['line']}"
    return f"{where}  [dim]{esc(text[:90])}[/]" if text else where


def other_findings(findings: Sequence[Finding]) -> Any:
    from rich.table import Table

    t = Table(title="Other findings (ranked by estimated whole-run gain)", title_justify="left",
              show_edge=False, pad_edge=False)
    t.add_column("gain", justify="right", no_wrap=True, min_width=5)
    t.add_column("finding", no_wrap=True, min_width=10)
    t.add_column("where", no_wrap=True, overflow="ellipsis", max_width=24)
    t.add_column("evidence", overflow="fold", min_width=24)
    for f in findings[:MAX_OTHER]:
        where = f"{_short(f.location['file'])}:{f.location['line']}" if f.location else ""
        gain = f"{f.estimated_speedup:.2f}x"
        if f.verified is not None and f.verified.ok:
            gain += f" ({f.verified.ratio:.2f}x measured)"
        t.add_row(gain, f.id, where, esc(f.evidence))
    if len(findings) > MAX_OTHER:
        t.caption = f"{len(findings) - MAX_OTHER} more in the JSON/HTML report"
    return t


def step_table(record: RunRecord) -> Any:
    from rich.table import Table

    ph = record.step_phases
    per = ph.per_step_s or record.phases_s
    rows = [(PHASE_LABELS.get(p, p), per.get(p, 0.0)) for p in PHASES if p != "other"]
    rows.append(("file I/O", per.get("io", 0.0)))
    rows.append(("other (your code)", per.get("other", 0.0)))
    total = sum(v for _, v in rows) or 1.0
    s = record.step_time_s
    title = (f"Step breakdown ({_plural(int(ph.steps), 'steady step')}; median "
             f"{format_seconds(s.median)}, 95% CI {format_seconds(s.ci_low)}-"
             f"{format_seconds(s.ci_high)}")
    if ph.samples_per_step:
        title += f"; {ph.samples_per_step:,} samples/step"
    if record.samples_per_s:
        title += f"; {record.samples_per_s:,.0f} samples/s"
    t = Table(title=title + ")", title_justify="left", show_edge=False, pad_edge=False)
    t.add_column("phase")
    t.add_column("mean/step", justify="right")
    t.add_column("share", justify="right")
    t.add_column("", no_wrap=True)
    for name, v in rows:
        if v <= 0 and name in ("host→device copy", "file I/O"):
            continue
        t.add_row(name, format_seconds(v), f"{100 * v / total:.0f}%",
                  "█" * round(_BAR * v / total))
    return t


def timeline_text(record: RunRecord) -> str:
    tl = record.timeline
    parts = [("startup", tl.startup_s), ("warm-up", tl.warmup_s), ("train steps", tl.train_s),
             ("eval", tl.eval_s), ("tail", tl.tail_s), ("profiler window", tl.profiler_s)]
    text = " | ".join(f"{n} {format_seconds(v)}" for n, v in parts if v > 0)
    return f"Run timeline: {text}"


def hot_lines_table(record: RunRecord) -> Any:
    from rich.table import Table

    hot = sorted(record.hot_lines, key=lambda h: h.self_share, reverse=True)
    hot = [h for h in hot if h.self_share >= 0.005][:MAX_LINES]
    if not hot:
        return None
    import linecache

    t = Table(title="Hot lines (your code, steady window; self = the line and what it calls; "
                    "(Python) = mostly running bytecode)",
              title_justify="left", show_edge=False, pad_edge=False)
    t.add_column("self", justify="right", no_wrap=True, min_width=6)
    t.add_column("line", no_wrap=True, min_width=14)
    t.add_column("source", overflow="ellipsis", no_wrap=True, max_width=44)
    for h in hot:
        text = esc(linecache.getline(h.file, h.line).strip())
        py = h.own_python_share
        if py >= 0.5 * h.self_share and py > 0.01:
            text += "  [dim](Python)[/]"
        t.add_row(f"{100 * h.self_share:.1f}%", f"{_short(h.file)}:{h.line}", text)
    return t


def hot_ops_table(record: RunRecord) -> Any:
    from rich.table import Table

    ops = record.hot_ops
    rows = [o for o in ops.ops if o.device == "cuda"] or list(ops.ops)
    if not rows:
        return None
    steps = max(ops.steps, 1)
    t = Table(title=f"Hot ops (torch.profiler, {_plural(steps, 'step')}, by self time)",
              title_justify="left", show_edge=False, pad_edge=False)
    t.add_column("self/step", justify="right", no_wrap=True, min_width=9)
    t.add_column("calls/step", justify="right", no_wrap=True, min_width=10)
    t.add_column("op", overflow="ellipsis", no_wrap=True, max_width=56)
    for o in rows[:MAX_OPS]:
        t.add_row(format_seconds(o.self_s / steps), f"{o.count / steps:.3g}", esc(o.name))
    return t


def cpu_parts(record: RunRecord) -> list[str]:
    """CPU use of the measured window: system time and what other processes used."""
    cpu = record.cpu
    if not cpu.measured:
        return []
    own = cpu.user_s + cpu.system_s
    where = "of the steady window" if cpu.window == "steady" else "of the run"
    parts = [f"CPU (over {format_seconds(cpu.span_s)} {where}, read every 0.5 s): user "
             f"{format_seconds(cpu.user_s)}, system {format_seconds(cpu.system_s)} "
             f"({100 * cpu.system_share:.0f}% of {format_seconds(own)}), "
             f"{cpu.minor_faults / cpu.span_s:,.0f} page faults/s"]
    if cpu.children_s > 0:
        parts.append(f"child processes {format_seconds(cpu.children_s)} CPU")
    load = f", load average {cpu.load_1m_end:.1f}" if cpu.load_1m_end is not None else ""
    parts.append(f"other processes used {cpu.other_cores:.1f} of "
                 f"{_plural(cpu.usable_cores or 0, 'core')}{load}")
    return parts


def busy_note(record: RunRecord) -> str:
    """A warning line when other processes competed for the cores, else ''."""
    cpu = record.cpu
    if not cpu.busy:
        return ""
    return (f"\n[yellow]Other processes kept {cpu.other_cores:.1f} cores busy during the "
            "measurement: these timings, and any advice on threads or workers, hold at "
            "this load; profile again on a quiet machine before comparing.[/]")


def footer(record: RunRecord) -> str:
    mem, th = record.memory, record.threads
    parts = [f"peak RSS {format_bytes(mem.peak_rss_bytes)}"]
    growth = mem.growth_bytes_per_s
    if growth is not None and abs(growth) * mem.steady_span_s > 8 * 2**20:
        parts.append(f"RSS grows {format_bytes(growth)}/s")
    if th.torch_threads:
        parts.append(f"torch {_plural(th.torch_threads, 'thread')} on "
                     f"{_plural(th.usable_cores, 'usable core')}")
    parts += cpu_parts(record)
    samp = record.profile.sampler
    wall = record.timeline.total_s or record.wall_time_s
    high = ""
    if samp.get("busy_s") is not None and wall:
        busy = samp["busy_s"] / wall
        parts.append(f"sampler {samp.get('total', 0)} samples at "
                     f"{1 / (samp.get('interval_s') or 1):.0f} Hz, busy "
                     f"{100 * busy:.1f}% of the wall time")
        if busy > HIGH_OVERHEAD:
            high = ("\n[yellow]The sampler's own cost is high for this run; "
                    "lower it with --rate 50.[/]")
    return "[dim]" + "; ".join(parts) + "[/]" + high + busy_note(record)
