"""The load a tuning's plan was measured at, in the report: the terminal's ``load:`` line,
the HTML Load card and the trials table's load cell.

Pure formatting of what the record holds (``TuneRecord.load_label``, ``Trial.load``;
see :mod:`perfpilot.tune.load_label` for the rule and the words): nothing is measured or
judged here. A record without a label (older records, a tuning that stopped before its
decision) shows nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from perfpilot.render import html as h


def load_line(label: Mapping[str, Any] | None) -> str | None:
    """``load: cpu_threads=1 measured at ...; holds at the current load (...)``, or None."""
    if not label or not label.get("summary"):
        return None
    return f"load: {label['summary']}"


def load_kind(label: Mapping[str, Any]) -> str:
    """``warn`` when the plan should be re-measured, ``good`` when it holds under contention
    knobs, ``info`` otherwise (no contention knob, or not known)."""
    holds = label.get("holds")
    if holds is False:
        return "warn"
    return "good" if holds and label.get("knobs") else "info"


def load_card(label: Mapping[str, Any] | None) -> str:
    """The Load card: the verdict, the load then and now, the knobs and the rule."""
    if not label:
        return ""
    then, now = label.get("measured_at") or {}, label.get("now") or {}
    knobs = ", ".join(str(k) for k in label.get("knobs") or ()) or "none"
    stages = ", ".join(str(s) for s in label.get("stages") or ())
    pairs = [("knobs that compete for the CPU", knobs),
             ("measured at", f"{cell(then) or 'no reading'} ({_state(label.get('contention'))}"
                             f", median of {then.get('trials', 0)} trials"
                             + (f" of stage {stages}" if stages else "") + ")"),
             ("now", f"{cell(now) or 'no reading'} ({_state(now.get('contention'))})"),
             ("rule", str(label.get("rule") or ""))]
    body = h.paragraph(str(label.get("verdict") or "")) + h.key_values(pairs)
    return h.card("Load", body, load_kind(label))


def cell(load: Mapping[str, Any] | None) -> str:
    """``others 1.6 cores · load 9.8 / 2 cores`` for one trial's load ("" when none)."""
    if not load:
        return ""
    parts = []
    if isinstance(load.get("others_cores"), (int, float)):
        parts.append(f"others {load['others_cores']:.1f} cores")
    if isinstance(load.get("loadavg_1m"), (int, float)):
        cores = f" / {load['cores']} cores" if load.get("cores") else ""
        parts.append(f"load {load['loadavg_1m']:.1f}{cores}")
    return " · ".join(parts)


def _state(contention: Any) -> str:
    return {True: "contended", False: "idle"}.get(contention, "not known")
