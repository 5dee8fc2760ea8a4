"""The tune report's plots: inline SVG via :func:`perfpilot.render.html.figure_svg`.

Each function takes parts of a :class:`~perfpilot.tune_record.TuneRecord` (run records,
the final check's rounds) or a stage's evidence rows, and returns an HTML fragment (an
inline ``<svg>``), or ``""`` when there is nothing to draw. Nothing is computed here
beyond smoothing a curve for legibility (the raw curve is drawn too).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from perfpilot.record import PHASES, RunRecord
from perfpilot.render import html as h
from perfpilot.render.console import format_seconds

if TYPE_CHECKING:
    from perfpilot.tune_record import Round

BASE, TUNED = "#8a94a6", "#2f6fdd"
GOOD, BAD, MUTED = "#2e9d5b", "#d1495b", "#b8bfcc"
PHASE_COLORS = {"data": "#f28e2b", "h2d": "#edc948", "forward": "#4e79a7",
                "backward": "#76b7b2", "optimizer": "#59a14f", "other": "#bab0ac"}


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def _style(ax: Any, xlabel: str = "", ylabel: str = "") -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8)
    ax.grid(axis="y", color="#eef0f4", linewidth=0.8)
    ax.set_axisbelow(True)
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=9)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=9)


def _ema(ys: Sequence[float], span: int) -> list[float]:
    alpha, out, acc = 2 / (span + 1), [], None
    for y in ys:
        acc = y if acc is None else alpha * y + (1 - alpha) * acc
        out.append(acc)
    return out


def training_curves(runs: dict[str, RunRecord | None], *, target: float | None,
                    metric: str | None) -> str:
    """Loss against training seconds (left) and the metric with its target (right)."""
    runs = {k: v for k, v in runs.items() if v is not None and v.loss_history}
    if not runs:
        return ""
    has_metric = any((r.metric or {}).get("history") for r in runs.values())

    def draw(fig: Any) -> None:
        axes = fig.subplots(1, 2 if has_metric else 1, squeeze=False)[0]
        for name, rec in runs.items():
            color = TUNED if name == "tuned" else BASE
            rows = rec.loss_history
            xs, ys = [r[1] for r in rows], [r[2] for r in rows]
            axes[0].plot(xs, ys, color=color, alpha=0.25, linewidth=0.7)
            axes[0].plot(xs, _ema(ys, max(3, len(ys) // 30)), color=color, linewidth=1.8,
                         label=name)
            hist = (rec.metric or {}).get("history") or []
            if has_metric and hist:
                axes[1].plot([r[1] for r in hist], [r[2] for r in hist], color=color,
                             marker="o", markersize=3, linewidth=1.6, label=name)
        _style(axes[0], "training seconds", "loss")
        axes[0].legend(fontsize=8, frameon=False)
        if has_metric:
            if target is not None:
                axes[1].axhline(target, color=GOOD, linestyle="--", linewidth=1)
                axes[1].annotate(f"target {target:g}", (1.0, target), xycoords=(
                    "axes fraction", "data"), fontsize=8, color=GOOD, va="top", ha="right",
                    xytext=(0, -3), textcoords="offset points")
            _style(axes[1], "training seconds", metric or "metric")

    return h.figure_svg(draw, width=8.6, height=3.0)


def ttt_rounds(rows: Sequence[Round]) -> str:
    """Each round's time to target, baseline and tuned side by side, joined per round."""
    if not rows:
        return ""

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        for r in rows:
            a, b = r.baseline_s, r.tuned_s
            ax.plot([0, 1], [a, b], color=GOOD if b < a else BAD, alpha=0.6, linewidth=1.2)
            ax.scatter([0], [a], color=BASE, zorder=3, s=22,
                       marker="o" if r.baseline_reached else "^")
            ax.scatter([1], [b], color=TUNED, zorder=3, s=22,
                       marker="o" if r.tuned_reached else "^")
        ax.set_xticks([0, 1], ["baseline", "tuned"])
        ax.set_xlim(-0.4, 1.4)
        ax.set_ylim(bottom=0)
        _style(ax, "", "training seconds to target")

    return h.figure_svg(draw, width=3.6, height=3.0)


def phase_bars(runs: dict[str, RunRecord]) -> str:
    """Time per training sample split into step phases, one bar per plan."""
    rows = []
    for name, rec in runs.items():
        spe = _samples_per_step(rec)
        if spe:
            rows.append((name, {p: 1e6 * float(rec.phases_s.get(p, 0.0)) / spe
                                for p in PHASES}))
    if not rows:
        return ""

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        ys = list(range(len(rows)))[::-1]
        for y, (_, ph) in zip(ys, rows, strict=True):
            left = 0.0
            for p in PHASES:
                v = ph[p]
                ax.barh([y], [v], left=left, color=PHASE_COLORS[p], height=0.55,
                        label=p if y == ys[0] else None)
                left += v
            ax.text(left, y, "  " + format_seconds(left * 1e-6), va="center", fontsize=8)
        ax.set_yticks(ys, [n for n, _ in rows])
        ax.margins(x=0.12)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=6, fontsize=8,
                  frameon=False)
        _style(ax, "µs per training sample")

    return h.figure_svg(draw, width=8.0, height=1.2 + 0.5 * len(rows))


def _samples_per_step(rec: RunRecord) -> float | None:
    sps, step = _num(rec.samples_per_s), _num(rec.step_time_s.mean)
    if sps and step:
        return sps * step
    return _num(rec.plan.get("batch_size"))


def speedups(entries: Sequence[dict[str, Any]], *, xlabel: str = "speedup vs incumbent") -> str:
    """A forest plot: each measured candidate's speedup and interval; 1 = no change."""
    rows = [e for e in entries if _num(e.get("speedup")) is not None]
    if not rows:
        return ""

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        ys = list(range(len(rows)))[::-1]
        for y, e in zip(ys, rows, strict=True):
            color = GOOD if e.get("fate") == "accepted" else (
                BAD if e.get("verdict") == "slower" else MUTED)
            lo, hi = _num(e.get("ci_low")), _num(e.get("ci_high"))
            if lo is not None and hi is not None:
                ax.plot([lo, hi], [y, y], color=color, linewidth=2.2, solid_capstyle="round")
            ax.scatter([e["speedup"]], [y], color=color, zorder=3, s=26)
            ax.text(hi if hi is not None else e["speedup"], y, f"  {e['speedup']:.2f}x",
                    va="center", fontsize=8)
        ax.axvline(1.0, color="#5b6475", linewidth=0.8, linestyle=":")
        ax.set_yticks(ys, [short_label(e.get("label", "?")) for e in rows])
        ax.margins(x=0.15)
        _style(ax, xlabel)

    return h.figure_svg(draw, width=7.5, height=0.9 + 0.34 * len(rows))


def throughput_curve(points: Sequence[dict[str, Any]], *, baseline: int | None,
                     chosen: int | None, knee: Any = None) -> str:
    """Samples/s against the batch size (log scale), median and interval per size."""
    pts = sorted((p for p in points if _num(p.get("samples_per_s"))),
                 key=lambda p: p["batch_size"])
    if not pts:
        return ""

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        xs = [p["batch_size"] for p in pts]
        ys = [p["samples_per_s"] for p in pts]
        lo = [max(0.0, y - (_num(p.get("ci_low")) or y)) for p, y in zip(pts, ys, strict=True)]
        hi = [max(0.0, (_num(p.get("ci_high")) or y) - y) for p, y in zip(pts, ys, strict=True)]
        ax.errorbar(xs, ys, yerr=[lo, hi], color=TUNED, marker="o", markersize=4,
                    linewidth=1.5, capsize=3)
        _mark(ax, xs, ys, baseline, "baseline", BASE)
        if chosen is not None and chosen != baseline:
            _mark(ax, xs, ys, chosen, "chosen", GOOD)
        if isinstance(knee, (int, float)) and knee in xs:
            ax.axvline(knee, color=MUTED, linestyle="--", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, _tick_labels(xs))
        ax.set_ylim(bottom=0)
        _style(ax, "batch size", "samples / s")

    return h.figure_svg(draw, width=5.2, height=3.0)


def goodput_curve(points: Sequence[dict[str, Any]], *, baseline: int | None,
                  chosen: int | None) -> str:
    """Goodput (throughput x statistical efficiency) against the batch size, with band."""
    pts = sorted((p for p in points if _num(p.get("goodput"))), key=lambda p: p["batch_size"])
    if not pts:
        return ""

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        xs = [p["batch_size"] for p in pts]
        ys = [p["goodput"] for p in pts]
        lo = [_num(p.get("goodput_low")) or y for p, y in zip(pts, ys, strict=True)]
        hi = [_num(p.get("goodput_high")) or y for p, y in zip(pts, ys, strict=True)]
        ax.fill_between(xs, lo, hi, color=TUNED, alpha=0.15, linewidth=0)
        ax.plot(xs, ys, color=TUNED, marker="o", markersize=4, linewidth=1.5)
        _mark(ax, xs, ys, baseline, "baseline", BASE)
        if chosen is not None and chosen != baseline:
            _mark(ax, xs, ys, chosen, "chosen", GOOD)
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, _tick_labels(xs))
        ax.set_ylim(bottom=0)
        _style(ax, "batch size", "goodput (useful samples / s)")

    return h.figure_svg(draw, width=5.2, height=3.0)


def _tick_labels(xs: Sequence[int]) -> list[str]:
    """Batch sizes as labels on a log axis, leaving out one too close to its left
    neighbour (1024 and 1438 would overlap)."""
    out, last = [], None
    for x in xs:
        keep = last is None or math.log2(x / last) >= 0.7
        out.append(str(x) if keep else "")
        last = x if keep else last
    return out


def _mark(ax: Any, xs: list[int], ys: list[float], x: int | None, label: str,
          color: str) -> None:
    if x in xs:
        y = ys[xs.index(x)]
        ax.scatter([x], [y], s=90, facecolors="none", edgecolors=color, linewidths=2, zorder=4)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 8), fontsize=8,
                    color=color)


def loader_workers(entries: Sequence[dict[str, Any]], probe_share: float | None) -> str:
    """Each loader candidate's speedup (bars with intervals) and its data-wait share."""
    rows = [e for e in entries if _num(e.get("speedup")) is not None]
    if not rows:
        return ""

    def draw(fig: Any) -> None:
        ax1, ax2 = fig.subplots(1, 2)
        labels = [short_label(e.get("label", "?")) for e in rows]
        xs = list(range(len(rows)))
        sp = [e["speedup"] for e in rows]
        err = [[max(0.0, s - (_num(e.get("ci_low")) or s)) for s, e in zip(sp, rows, strict=True)],
               [max(0.0, (_num(e.get("ci_high")) or s) - s) for s, e in zip(sp, rows, strict=True)]]
        colors = [GOOD if e.get("fate") == "accepted" else MUTED for e in rows]
        ax1.bar(xs, sp, yerr=err, color=colors, capsize=3)
        ax1.axhline(1.0, color="#5b6475", linewidth=0.8, linestyle=":")
        ax1.set_xticks(xs, labels, rotation=20, ha="right")
        _style(ax1, "", "speedup vs incumbent")
        shares = [100 * float((e.get("data_share") or {}).get("candidate") or 0.0) for e in rows]
        names = ["before", *labels]
        vals = [100 * (probe_share or 0.0), *shares]
        ax2.bar(range(len(vals)), vals, color=[BASE, *colors])
        ax2.set_xticks(range(len(vals)), names, rotation=20, ha="right")
        _style(ax2, "", "data wait, % of a step")

    return h.figure_svg(draw, width=8.6, height=3.0)


_SHORT = (("num_workers", "workers"), ("cpu_threads", "threads"), ("interop_threads", "interop"),
          ("prefetch_factor", "prefetch"), ("persistent_workers", "persistent"),
          ("channels_last", "channels_last"), ("cudnn_benchmark", "cudnn.benchmark"))


def short_label(label: Any) -> str:
    """A candidate's label short enough for an axis ("workers=2, threads=1")."""
    text = str(label)
    for long, short in _SHORT:
        text = text.replace(long, short)
    return text if len(text) <= 30 else text[:29] + "…"


def learning_curve(proxy: dict[str, Any]) -> str:
    """The baseline's measured metric against training seconds, its fitted learning curve
    (dashed: extrapolated past the last evaluation), the proxy level and the real target.
    ``proxy`` is the tune record's ``proxy`` (``curve`` rows ``[samples, seconds, value]``,
    ``fitted`` rows ``[seconds, value]``)."""
    rows = [r for r in proxy.get("curve") or [] if _num(r[1]) is not None and _num(r[2])
            is not None]
    if not rows:
        return ""
    fitted = [r for r in proxy.get("fitted") or [] if _num(r[0]) and _num(r[1]) is not None]
    last_s = rows[-1][1]

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        ax.plot([r[1] for r in rows], [r[2] for r in rows], color=BASE, marker="o",
                markersize=3, linewidth=1.4, label="baseline (measured)")
        inside = [r for r in fitted if r[0] <= last_s]
        beyond = [r for r in fitted if r[0] >= last_s]
        if inside:
            ax.plot([r[0] for r in inside], [r[1] for r in inside], color=TUNED, linewidth=1.4,
                    label="fitted curve")
        if beyond:
            ax.plot([r[0] for r in beyond], [r[1] for r in beyond], color=TUNED,
                    linewidth=1.4, linestyle="--", label="extrapolated")
        for y, label, color in ((proxy.get("target"), "target", GOOD),
                                (proxy.get("level"), "proxy target", MUTED)):
            if _num(y) is not None:
                ax.axhline(y, color=color, linestyle=":", linewidth=1)
                ax.annotate(f"{label} {y:.4g}", (0.0, y), xycoords=("axes fraction", "data"),
                            fontsize=8, color=color, va="bottom", xytext=(3, 2),
                            textcoords="offset points")
        ax.legend(fontsize=8, frameon=False)
        _style(ax, "training seconds (baseline)", proxy.get("metric") or "metric")

    return h.figure_svg(draw, width=6.4, height=3.0)
