"""A small builder for self-contained HTML reports: one file, inline CSS and inline SVG plots.

Generic on purpose (the profile and tune reports share it)::

    from perfpilot.render import html as h
    doc = h.page("Title", [h.Section("Findings", h.table(["id", "gain"], rows)),
                           h.Section("Steps", h.bar_chart(["a", "b"], [1.0, 2.0]))])

No external resources (no CDN, no fonts, no scripts): the file opens offline and can be
attached to an issue. Plots are matplotlib figures serialized as SVG with text kept as
text; each figure gets its own id salt so several SVGs on one page never share ids.
Every value is escaped; only the builders' own markup is trusted.
"""

from __future__ import annotations

import html as _html
import io
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac")
_salt = itertools.count()

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;
background:#f6f7f9}
main{max-width:1080px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:0 0 12px}
.sub{color:#5b6475;margin-bottom:20px}
section{background:#fff;border:1px solid #e3e6ec;border-radius:8px;padding:16px 20px;
margin:0 0 16px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eef0f4;vertical-align:top}
th{color:#5b6475;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:#f3f4f7;padding:8px 10px;border-radius:6px;overflow-x:auto;margin:6px 0}
.card{border-left:4px solid #4e79a7;padding:8px 14px;margin:8px 0;background:#fafbfc}
.card.warn{border-color:#f28e2b}.card.bad{border-color:#e15759}.card.good{border-color:#59a14f}
.card h3{margin:0 0 6px;font-size:15px}.muted{color:#5b6475}
.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px}
.kv div:nth-child(odd){color:#5b6475}
.plot svg{max-width:100%;height:auto}
.hl{background:#fff4d6}
"""


@dataclass(frozen=True)
class Section:
    """A titled block of the page; ``body`` is HTML made by this module's helpers."""

    title: str
    body: str
    id: str | None = None


def escape(value: Any) -> str:
    return _html.escape("" if value is None else str(value), quote=True)


def page(title: str, sections: Sequence[Section], *, subtitle: str = "") -> str:
    """A complete HTML document."""
    parts = [f'<section id="{escape(s.id)}">' if s.id else "<section>"
             for s in sections]
    body = "\n".join(f"{open_tag}<h2>{escape(s.title)}</h2>\n{s.body}</section>"
                     for open_tag, s in zip(parts, sections, strict=True))
    sub = f'<div class="sub">{escape(subtitle)}</div>' if subtitle else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head>\n"
            f"<body><main><h1>{escape(title)}</h1>{sub}\n{body}\n</main></body></html>\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *,
          numeric: Sequence[int] = (), raw: Sequence[int] = ()) -> str:
    """A table; columns in ``numeric`` are right-aligned, those in ``raw`` are trusted HTML."""
    num, trusted = set(numeric), set(raw)

    def cell(i: int, v: Any, tag: str) -> str:
        cls = ' class="num"' if i in num else ""
        return f"<{tag}{cls}>{v if i in trusted and tag == 'td' else escape(v)}</{tag}>"

    head = "".join(cell(i, h, "th") for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell(i, v, "td") for i, v in enumerate(r)) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def code(text: str, *, highlight: bool = False) -> str:
    cls = ' class="hl"' if highlight else ""
    return f"<pre{cls}><code>{escape(text)}</code></pre>"


def card(title: str, body: str, kind: str = "info") -> str:
    """A highlighted box; ``body`` is trusted HTML, ``kind`` in info|warn|bad|good."""
    return f'<div class="card {escape(kind)}"><h3>{escape(title)}</h3>{body}</div>'


def paragraph(text: str, *, muted: bool = False) -> str:
    return f'<p class="muted">{escape(text)}</p>' if muted else f"<p>{escape(text)}</p>"


def key_values(pairs: Sequence[tuple[str, Any]]) -> str:
    items = "".join(f"<div>{escape(k)}</div><div>{escape(v)}</div>" for k, v in pairs)
    return f'<div class="kv">{items}</div>'


# ---------------------------------------------------------------- plots


def figure_svg(draw: Callable[[Any], None], *, width: float = 7.5,
               height: float = 3.0) -> str:
    """Inline SVG of a matplotlib figure drawn by ``draw(fig)`` (no pyplot state used)."""
    from matplotlib import rcParams
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=96, layout="constrained")
    draw(fig)
    buf = io.StringIO()
    prefix = f"pp{next(_salt)}-"
    with _rc(rcParams, {"svg.fonttype": "none", "svg.hashsalt": prefix}):
        fig.savefig(buf, format="svg")
    svg = buf.getvalue()
    return f'<div class="plot">{_prefix_ids(svg[svg.find("<svg"):], prefix)}</div>'


def _prefix_ids(svg: str, prefix: str) -> str:
    """Make every id (and reference to one) unique to this figure on the page."""
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})", svg)
    return re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m.group(1)}"', svg)


class _rc:
    def __init__(self, params: Any, values: dict[str, Any]) -> None:
        self.params, self.values = params, values

    def __enter__(self) -> None:
        self.saved = {k: self.params[k] for k in self.values}
        self.params.update(self.values)

    def __exit__(self, *exc: object) -> None:
        self.params.update(self.saved)


def _style(ax: Any) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=9)


def bar_chart(labels: Sequence[str], values: Sequence[float], *, xlabel: str = "",
              fmt: Callable[[float], str] = lambda v: f"{v:.3g}",
              colors: Sequence[str] | None = None) -> str:
    """Horizontal bars, largest on top, each labelled with ``fmt(value)``."""
    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        ys = list(range(len(labels)))[::-1]
        cs = list(colors or PALETTE[: len(labels)] or PALETTE)
        ax.barh(ys, values, color=[cs[i % len(cs)] for i in range(len(labels))])
        ax.set_yticks(ys, labels)
        for y, v in zip(ys, values, strict=True):
            ax.text(v, y, " " + fmt(v), va="center", fontsize=8)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.margins(x=0.15)
        _style(ax)

    return figure_svg(draw, height=max(1.4, 0.32 * len(labels) + 0.8))


def stacked_bar(segments: Sequence[tuple[str, float]], *, xlabel: str = "",
                fmt: Callable[[float], str] = lambda v: f"{v:.3g}") -> str:
    """One horizontal bar split into labelled segments (e.g. a step's phases)."""
    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        left = 0.0
        total = sum(v for _, v in segments) or 1.0
        for i, (name, v) in enumerate(segments):
            ax.barh([0], [v], left=left, color=PALETTE[i % len(PALETTE)],
                    label=f"{name} {fmt(v)} ({100 * v / total:.0f}%)")
            left += v
        ax.set_yticks([])
        ax.set_xlabel(xlabel, fontsize=9)
        # "outside": constrained layout makes room for it below the axes
        fig.legend(loc="outside lower center", ncol=3, fontsize=8, frameon=False)
        _style(ax)

    return figure_svg(draw, height=1.4 + 0.22 * ((len(segments) + 2) // 3))


def line_chart(series: dict[str, tuple[Sequence[float], Sequence[float]]], *,
               xlabel: str = "", ylabel: str = "") -> str:
    """Lines ``name -> (xs, ys)`` on one axis."""
    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        for i, (name, (xs, ys)) in enumerate(series.items()):
            ax.plot(xs, ys, color=PALETTE[i % len(PALETTE)], label=name, linewidth=1.2)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
        if len(series) > 1:
            ax.legend(fontsize=8, frameon=False)
        _style(ax)

    return figure_svg(draw)
