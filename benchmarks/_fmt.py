"""Formatting shared by the benchmark sections of ``docs/benchmarks.md``.

Numbers for people (``num``, ``secs``, ``times``, ``pct``, ``share``), markdown tables, and
tolerant figures: a figure may be a number, an object with a middle value (``ratio``,
``median``, ``time_to_target_s``, ``value``, ...) and ``ci_low``/``ci_high`` (or ``ci: [lo,
hi]``), or a number with ``<key>_ci_low``/``<key>_ci_high`` beside it; rows are read from
the first of a few keys holding a list of objects (or an object keyed by name), and keys
not known to a section become extra columns.
"""

from __future__ import annotations

import json
import math
from typing import Any

Doc = dict[str, Any]


def is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def num(x: Any, digits: int = 3) -> str:
    """A number for people: ``digits`` significant digits, no exponent below a million."""
    if not is_num(x):
        return "–" if x is None else str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    if mag >= 6:
        return f"{x:.3g}"
    decimals = max(0, digits - 1 - mag)
    return f"{x:,.{decimals}f}"


def ci(lo: Any, hi: Any, fmt: Any = num) -> str:
    return f" [{fmt(lo)}, {fmt(hi)}]" if is_num(lo) and is_num(hi) else ""


def times(x: Any, lo: Any = None, hi: Any = None) -> str:
    if not is_num(x):
        return "–"
    return f"{num(x)}x" + ci(lo, hi)


def pct(x: Any, lo: Any = None, hi: Any = None) -> str:
    def p(v: float) -> str:
        return f"{100 * v:+.1f}%"

    if not is_num(x):
        return "–"
    return p(x) + ci(lo, hi, p)


def share(x: Any) -> str:
    return f"{100 * x:.1f}%" if is_num(x) else "–"


def secs(x: Any, lo: Any = None, hi: Any = None) -> str:
    return f"{num(x)} s" + ci(lo, hi) if is_num(x) else "–"


def load_str(before: Any, after: Any) -> str:
    def one(v: Any) -> str | None:
        if isinstance(v, (list, tuple)) and v and is_num(v[0]):
            return f"{v[0]:.1f}"
        return f"{v:.1f}" if is_num(v) else None

    a, b = one(before), one(after)
    if a and b:
        return f"{a} → {b}"
    return a or b or "not recorded"


def table(header: list[str], rows: list[list[str]]) -> str:
    def esc(c: Any) -> str:
        return str(c).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def changes_str(ch: Any) -> str:
    if isinstance(ch, dict):
        parts = []
        for k, v in ch.items():
            if isinstance(v, (list, tuple)) and len(v) == 2:
                parts.append(f"{k} {plain(v[0])}→{plain(v[1])}")
            else:
                parts.append(f"{k}={plain(v)}")
        return ", ".join(parts) or "none (baseline kept)"
    if isinstance(ch, (list, tuple)):
        return ", ".join(plain(x) for x in ch) or "none (baseline kept)"
    return "–" if ch is None else str(ch)


def plain(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


# ---------------------------------------------------------------- tolerant figures

MID_KEYS = ("ratio", "speedup", "time_to_target_s", "ttt_s", "median_s", "median", "value",
            "overhead", "mean", "seconds", "s")


def stat(x: Any, row: Doc | None = None, key: str = "") -> dict[str, Any] | None:
    """A figure as ``{mid, lo, hi, n, verdict}`` from the shapes described in the module
    docstring; None when ``x`` is not a figure."""
    row = row or {}
    if is_num(x):
        lo, hi = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
        c = row.get(f"{key}_ci")
        if isinstance(c, (list, tuple)) and len(c) == 2:
            lo, hi = c
        return {"mid": x, "lo": lo, "hi": hi, "n": None, "verdict": None}
    if not isinstance(x, dict):
        return None
    mid = next((x[k] for k in MID_KEYS if is_num(x.get(k))), None)
    if mid is None:
        return None
    lo, hi = x.get("ci_low"), x.get("ci_high")
    c = x.get("ci") or x.get("ci95")
    if isinstance(c, (list, tuple)) and len(c) == 2:
        lo, hi = c
    n = next((x[k] for k in ("n", "runs", "rounds", "pairs") if is_num(x.get(k))), None)
    if n is None and isinstance(x.get("seeds"), list):
        n = len(x["seeds"])
    return {"mid": mid, "lo": lo, "hi": hi, "n": n, "verdict": x.get("verdict")}


def fmt_stat(s: dict[str, Any] | None, kind: str) -> str:
    if s is None:
        return "–"
    f = {"x": times, "%": pct, "s": secs}.get(kind, lambda m, lo, hi: num(m) + ci(lo, hi))
    out = f(s["mid"], s["lo"], s["hi"])
    extra = [str(s["verdict"])] if s.get("verdict") else []
    if is_num(s.get("n")):
        extra.append(f"n={s['n']:g}")
    return out + (f" ({', '.join(extra)})" if extra else "")


def kind_of(key: str) -> str:
    k = key.lower()
    if k.endswith("_per_s"):
        return ""
    if "overhead" in k:
        return "%"
    if "speedup" in k or "ratio" in k:
        return "x"
    if k.endswith("_s") or k in ("baseline", "tuned", "seconds", "time_to_target"):
        return "s"
    return ""


def cell(v: Any, key: str = "") -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if is_num(v):
        return fmt_stat(stat(v), kind_of(key))
    if isinstance(v, str):
        return v
    s = stat(v)
    if s is not None:
        return fmt_stat(s, kind_of(key))
    if "change" in key.lower():
        return changes_str(v)
    if isinstance(v, (list, tuple)) and all(not isinstance(x, (dict, list)) for x in v):
        return ", ".join(plain(x) for x in v)
    text = json.dumps(v, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def records(doc: Any, keys: tuple[str, ...], name_key: str) -> list[Doc]:
    """Rows of a tolerant results file: the first of ``keys`` holding a list of objects or
    an object of objects (its keys become ``name_key``)."""
    if isinstance(doc, list):
        return [r for r in doc if isinstance(r, dict)]
    for k in keys:
        v = doc.get(k) if isinstance(doc, dict) else None
        if isinstance(v, list) and v and all(isinstance(r, dict) for r in v):
            return v
        if isinstance(v, dict) and v and all(isinstance(r, dict) for r in v.values()):
            return [{name_key: n, **r} for n, r in v.items()]
    return []


def generic_table(rows: list[Doc], columns: list[tuple[str, tuple[str, ...], str]],
                  skip: set[str] | None = None, always: tuple[str, ...] = ()) -> str:
    """A table with the ``columns`` (header, candidate keys, kind) that any row has (or
    whose header is in ``always``), then one column per other scalar or figure key."""
    used: set[str] = set(skip or ())
    cols = []
    for header, keys, kind in columns:
        if header in always or any(k in r for r in rows for k in keys):
            cols.append((header, keys, kind))
            used.update(keys)
            used.update(f"{k}_ci{s}" for k in keys for s in ("", "_low", "_high"))
    for r in rows:
        for k, v in r.items():
            if k in used or k.startswith("_") or k.endswith("_hits"):
                continue
            if isinstance(v, (str, int, float, bool)) or v is None or stat(v) is not None:
                cols.append((label(k), (k,), kind_of(k)))
                used.add(k)
                used.update(f"{k}_ci{s}" for s in ("", "_low", "_high"))
    body = []
    for r in rows:
        line = []
        for _, keys, kind in cols:
            k = next((k for k in keys if k in r), None)
            if k is None:
                line.append("not measured" if header_of(keys, cols) in always else "–")
            elif kind == "changes":
                line.append(changes_str(r[k]))
            elif kind in ("x", "%", "s") and stat(r[k], r, k) is not None:
                line.append(fmt_stat(stat(r[k], r, k), kind))
            elif kind in ("x", "%", "s") and isinstance(r[k], dict):
                line.append("not measured" + (f" ({r[k]['verdict']})"
                                              if r[k].get("verdict") else ""))
            else:
                line.append(cell(r[k], k))
        body.append(line)
    return table([c[0] for c in cols], body)


def header_of(keys: tuple[str, ...], cols: list[tuple[str, tuple[str, ...], str]]) -> str:
    return next(h for h, k, _ in cols if k == keys)


def label(key: str) -> str:
    """A key as words: ``wall_s`` -> ``wall``, ``tuning_elapsed_s`` -> ``tuning elapsed``."""
    if key.endswith("_s") and not key.endswith("_per_s"):
        key = key[:-2]
    return key.replace("_per_s", " per second").replace("_", " ")


def scalars(doc: Doc, skip: tuple[str, ...] = ()) -> list[str]:
    """Bullet lines for the top-level scalar keys of a results file."""
    out = []
    for k, v in doc.items():
        if k in skip or k.startswith("_"):
            continue
        if isinstance(v, (str, int, float, bool)) or v is None or stat(v) is not None:
            out.append(f"- {label(k)}: {cell(v, k)}")
    return out
