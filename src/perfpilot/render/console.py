"""Terminal rendering with rich: a RunRecord's phase breakdown, and run progress.

Pure formatting: everything shown comes from the record (nothing is measured here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from perfpilot.record import PHASES

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from perfpilot.record import RunRecord
    from perfpilot.record_sections import EngineStats

PHASE_LABELS: dict[str, str] = {
    "data": "data wait",
    "h2d": "host→device copy",
    "forward": "forward + loss",
    "backward": "backward",
    "optimizer": "optimizer",
    "other": "other",
}
_BAR_WIDTH = 24


def format_bytes(n: float) -> str:
    """Bytes in binary units: ``1.5 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_seconds(s: float) -> str:
    """A duration with a unit that keeps 3 significant digits: ``12.3 ms``, ``4.56 s``."""
    if s < 1e-3:
        return f"{s * 1e6:.3g} µs"
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    if s < 120:
        return f"{s:.3g} s"
    return f"{s / 60:.3g} min"


def phase_table(record: RunRecord) -> Table:
    """Mean time per step in each phase, its share of the step, and a share bar."""
    from rich.table import Table

    total = sum(record.phases_s.get(p, 0.0) for p in PHASES) or 1.0
    table = Table(title=f"{record.workload}: where a training step goes", title_justify="left")
    table.add_column("phase")
    table.add_column("ms/step", justify="right")
    table.add_column("share", justify="right")
    table.add_column("", no_wrap=True)
    for p in PHASES:
        v = record.phases_s.get(p, 0.0)
        share = v / total
        table.add_row(PHASE_LABELS[p], f"{v * 1e3:.3f}", f"{share:.1%}",
                      "[cyan]" + "█" * round(share * _BAR_WIDTH) + "[/]")
    table.add_row("[bold]step (mean)[/]", f"[bold]{total * 1e3:.3f}[/]", "100.0%", "",
                  end_section=True)
    return table


def summary_table(record: RunRecord) -> Table:
    """Throughput, step time with its CI, memory, metric and time-to-target."""
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in summary_rows(record):
        grid.add_row(key, value)
    return grid


def summary_rows(record: RunRecord) -> list[tuple[str, str]]:
    engine = record.engine
    st = record.step_time_s
    rows = [
        ("steps", _steps_text(record, engine)),
        ("samples/s", f"{record.samples_per_s:,.1f}"),
        ("step time", f"median {format_seconds(st.median)} "
                      f"(95% CI {format_seconds(st.ci_low)} – {format_seconds(st.ci_high)}, "
                      f"n={st.n})"),
        ("peak memory", f"{format_bytes(record.peak_memory_bytes)} ({_memory_kind(engine)})"),
    ]
    if record.metric:
        rows.append(("metric", _metric_text(record.metric)))
    if record.metric and record.metric.get("target") is not None:
        rows.append(("time to target", _target_text(record)))
    if engine is not None:
        rows.append(("time", f"train {format_seconds(engine.train_time_s)}, eval "
                             f"{format_seconds(engine.eval_time_s)}, wall "
                             f"{format_seconds(record.wall_time_s)}"))
    return rows


def _steps_text(record: RunRecord, engine: EngineStats | None) -> str:
    if engine is None:
        return str(record.steps)
    return (f"{record.steps} ({engine.warmup_steps} warmup, {engine.measured_steps} "
            f"measured) on {engine.device}, stopped by {engine.stop_reason or 'limit'}")


def _memory_kind(engine: EngineStats | None) -> str:
    cuda = engine is not None and "cuda_max_allocated_bytes" in engine.memory
    return "CUDA max allocated" if cuda else "process RSS"


def _target_text(record: RunRecord) -> str:
    """Time to target, with the evaluation that met it (the time's resolution)."""
    history = (record.metric or {}).get("history", [])
    ttt = record.time_to_target_s
    if ttt is None:
        return f"not reached ({len(history)} evaluation{'s' * (len(history) != 1)})"
    first = next((i for i, row in enumerate(history) if row[1] == ttt), None)
    where = f" (evaluation {first + 1} of {len(history)}, step {history[first][0]})" \
        if first is not None else ""
    return f"{format_seconds(ttt)} of training{where}"


def _metric_text(metric: dict[str, Any]) -> str:
    text = f"{metric['name']} = {metric['value']:.4g}"
    if metric.get("target") is not None:
        sign = "≥" if metric.get("direction") == "max" else "≤"
        text += f" (target {sign} {metric['target']:.4g})"
    return text


def print_run(record: RunRecord, console: Console | None = None,
              json_path: str | None = None) -> None:
    """Print the phase table and the summary; mention where the JSON record went."""
    from rich.console import Console

    console = console or Console()
    console.print(phase_table(record))
    console.print(summary_table(record))
    if json_path is not None:
        from rich.markup import escape

        console.print(f"record written to [bold]{escape(str(json_path))}[/]")
