"""``python-hotspot`` and the lint findings in the measured hot code.

``python-hotspot``
    Measured: for each user function, the sampled time its own lines spent *running
    Python bytecode* (the sampler tells Python from time inside torch ops, I/O or sleeps
    by how long it waited for the GIL; Python inside libraries it calls, such as
    ``nn.Module`` machinery, does not count), in the steady window. Fix: vectorize
    (tensor/numpy ops), cache, or move the work out of the step. Gain: Amdahl with that time
    :data:`VECTORIZE_FACTOR` times faster (a stated assumption: vectorized tensor code
    is typically 10-100x faster than the Python loop it replaces). A share resting on
    too few samples is marked thin by :mod:`perfpilot.diagnose.evidence`.
Lint (``inefficient-membership``, ``repeated-concat``...)
    :func:`perfpilot.lint.lint_hot_code` on a view of the record that holds only the
    main thread's steady-window samples, so its shares have the same basis as ours. A
    hotspot is dropped when a lint finding points into the same lines (lint names the
    cause more precisely).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from perfpilot.diagnose.common import Facts, loc, make, pct, source, where
from perfpilot.record import Finding, RunRecord

MIN_SHARE = 0.05  # Python time of a function before it is a hotspot
MIN_PYTHON_FRACTION = 0.4  # of the function's self time, else it is mostly torch/I-O
VECTORIZE_FACTOR = 10.0
MAX_HOTSPOTS = 3


def python_hotspot(f: Facts) -> list[Finding]:
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for h in f.record.hot_lines:
        g = groups.setdefault((h.file, h.function),
                              {"python": 0.0, "self": 0.0, "lines": [], "tags": {}})
        g["python"] += h.own_python_share
        g["self"] += h.self_share
        g["lines"].append(h)
        for tag, sec in h.tags.items():
            g["tags"][tag] = g["tags"].get(tag, 0.0) + sec
    out = []
    for (file, function), g in groups.items():
        share = g["python"]  # hot_lines shares are of the steady window's samples
        if share < MIN_SHARE or g["python"] < MIN_PYTHON_FRACTION * g["self"]:
            continue
        lines = sorted(g["lines"], key=lambda h: h.own_python_share, reverse=True)
        top = lines[0]
        site = [file, top.line, function]
        tag = max(g["tags"], key=g["tags"].get) if g["tags"] else ""
        text = source(site)
        evidence = (f"{function}() in {os.path.basename(file)} runs Python bytecode for "
                    f"{pct(share)} of the run; hottest line {where(site)}"
                    + (f": `{text}`" if text else "") + ".")
        out.append(make("python-hotspot", f"Python-level hot spot in {function}()", evidence,
                        _fix(text, where(site)), share, VECTORIZE_FACTOR, location=loc(site),
                        confidence="medium", tag=tag,
                        lines=sorted(h.line for h in g["lines"])))
    out.sort(key=lambda x: x.estimated_speedup, reverse=True)
    return out[:MAX_HOTSPOTS]


def _fix(text: str, place: str) -> str:
    if ".item()" in text or ".tolist()" in text:
        return (f"At {place}, keep the values in tensors: replace per-element .item()/"
                f".tolist() loops with one tensor operation.")
    if text.startswith(("for ", "while ")) or " for " in text:
        return (f"Vectorize the Python loop at {place} with tensor (or numpy) operations, "
                f"or compute it once outside the training step.")
    return (f"Move the Python work at {place} to vectorized tensor/numpy operations, cache "
            f"its result, or do it once outside the training step.")


# ---------------------------------------------------------------- lint


def lint_findings(record: RunRecord) -> tuple[list[Finding], str | None]:
    """Lint findings for the record's hot user code, and a note when lint is unavailable."""
    try:
        from perfpilot.lint import lint_hot_code
    except ImportError as e:
        return [], f"lint unavailable ({e})"
    try:
        return list(lint_hot_code(steady_view(record))), None
    except Exception as e:  # lint problems must not hide the profile's own findings
        return [], f"lint failed: {type(e).__name__}: {e}"


def steady_view(record: RunRecord) -> RunRecord:
    """The record with only main-thread steady-window samples, their seconds as total."""
    return dataclasses.replace(record, stack_samples=record.stack_samples.steady_view())


def drop_covered(hotspots: list[Finding], lint: list[Finding]) -> list[Finding]:
    """Hotspots whose lines a lint finding already explains are dropped."""
    covered = {}
    for lf in lint:
        if lf.location:
            covered.setdefault(os.path.realpath(lf.location["file"]), []).append(
                int(lf.location["line"]))
    keep = []
    for h in hotspots:
        file = os.path.realpath(h.location["file"]) if h.location else ""
        lines = h.lines
        hit = any(min(lines, default=0) - 2 <= ln <= max(lines, default=0) + 2
                  for ln in covered.get(file, []))
        if not hit:
            keep.append(h)
    return keep
