"""The final check, cross-checked against what the stages measured.

Each stage that changed the plan measured its gain: the hardware and loader stages an
interleaved A/B of their chosen plan against their start (``evidence["final"]``, or the
accepted candidates' A/Bs chained when that confirmation was skipped), the batch stage
samples/s at each batch size (``evidence["throughput"]["points"]``). The product of those
ratios is what the stages say the whole plan gains in throughput; its interval is the
product of the ends (conservative: it ignores that errors partly cancel).

:func:`compare` sets the final throughput ratio against it. When the two intervals do not
overlap, one of the measurements does not mean what it says (issue 20: the stages said
15.6x, a final check in one process 1.22x): the final comparison is repeated with each plan
in a process of its own (:mod:`perfpilot.tune.split_ab`), the repeat is kept, and both
are in the record. A stage that changed the plan without a measured ratio means no
cross-check (``agree`` is None), said in words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from perfpilot.plan import Plan
    from perfpilot.tune_record import StageRecord


@dataclass(frozen=True)
class StageGain:
    """One stage's measured throughput gain (tuned over its start, >1 is faster)."""

    stage: str
    ratio: float
    ci_low: float
    ci_high: float
    source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and x == x and x > 0 else None


def _ab_gain(stage: str, d: Mapping[str, Any], source: str) -> StageGain | None:
    r, lo, hi = (_num(d.get(k)) for k in ("speedup", "ci_low", "ci_high"))
    return StageGain(stage, r, lo, hi, source) if r and lo and hi else None


def _chained(stage: str, entries: Sequence[Mapping[str, Any]]) -> StageGain | None:
    won = [_ab_gain(stage, e, "") for e in entries if e.get("fate") == "accepted"]
    if not won or any(g is None for g in won):
        return None
    r = lo = hi = 1.0
    for g in won:
        assert g is not None
        r, lo, hi = r * g.ratio, lo * g.ci_low, hi * g.ci_high
    return StageGain(stage, r, lo, hi, f"its {len(won)} accepted candidates' A/Bs, chained")


def _batch_gain(stage: str, ev: Mapping[str, Any], before: Plan, after: Plan
                ) -> StageGain | None:
    points = {p.get("batch_size"): p for p in (ev.get("throughput") or {}).get("points") or []
              if isinstance(p, Mapping)}
    a, b = points.get(before.batch_size), points.get(after.batch_size)
    if a is None or b is None:
        return None
    va, la, ha = (_num(a.get(k)) for k in ("samples_per_s", "ci_low", "ci_high"))
    vb, lb, hb = (_num(b.get(k)) for k in ("samples_per_s", "ci_low", "ci_high"))
    if not (va and la and ha and vb and lb and hb):
        return None
    return StageGain(stage, vb / va, lb / ha, hb / la,
                     f"samples/s at batch {after.batch_size} over batch {before.batch_size}")


def stage_gain(st: StageRecord, before: Plan) -> StageGain | None:
    """The measured throughput gain of a stage that changed ``before`` into ``st.plan``."""
    assert st.plan is not None
    ev = st.evidence or {}
    fin = ev.get("final")
    if isinstance(fin, Mapping):
        g = _ab_gain(st.name, fin, "its confirming A/B against its start")
        if g is not None:
            return g
    g = _chained(st.name, ev.get("candidates") or [])
    if g is not None:
        return g
    if st.plan.batch_size != before.batch_size:
        return _batch_gain(st.name, ev, before, st.plan)
    return None


def stage_gains(stages: Sequence[StageRecord], baseline: Plan
                ) -> tuple[list[StageGain], list[str]]:
    """The gains of the stages that changed the plan, and the names of those that changed
    it without a measured throughput ratio."""
    gains, missing, plan = [], [], baseline
    for st in stages:
        if st.plan is None or st.plan == plan:
            continue
        g = stage_gain(st, plan)
        if g is None:
            missing.append(st.name)
        else:
            gains.append(g)
        plan = st.plan
    return gains, missing


def _fmt(r: float, lo: float, hi: float) -> str:
    return f"{r:.2f}x ({lo:.2f}-{hi:.2f})"


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def compare(throughput: Mapping[str, Any], stages: Sequence[StageRecord], baseline: Plan
            ) -> dict[str, Any]:
    """The cross-check of a final throughput result (``FinalCheck.throughput()``'s dict)
    against the stages: ``agree`` is True or False when both sides are measured, None
    (with the reason in ``words``) when one is not."""
    gains, missing = stage_gains(stages, baseline)
    out: dict[str, Any] = {"stages": [g.to_dict() for g in gains], "agree": None}
    if missing:
        out["missing"] = missing
        out["words"] = (f"no cross-check: stage {', '.join(missing)} changed the plan without "
                        "a measured throughput ratio")
        return out
    if not gains:
        out["words"] = "no cross-check: no stage measured a throughput gain"
        return out
    s, lo, hi = 1.0, 1.0, 1.0
    for g in gains:
        s, lo, hi = s * g.ratio, lo * g.ci_low, hi * g.ci_high
    out.update(stage_ratio=s, stage_ci=[lo, hi])
    if not isinstance(throughput.get("ratio"), (int, float)):
        why = throughput.get("skipped") or throughput.get("reason") or "not measured"
        out["words"] = f"no cross-check: the final throughput was not measured ({why})"
        return out
    f, flo, fhi = (float(throughput[k]) for k in ("ratio", "ci_low", "ci_high"))
    out.update(final_ratio=f, final_ci=[flo, fhi], agree=overlap((flo, fhi), (lo, hi)))
    names = " x ".join(g.stage for g in gains)
    if out["agree"]:
        out["words"] = (f"the final check's {_fmt(f, flo, fhi)} agrees with the stages' "
                        f"measured gains ({names}): {_fmt(s, lo, hi)}")
    else:
        out["words"] = (f"the final check's {_fmt(f, flo, fhi)} disagrees with the stages' "
                        f"measured gains ({names}): {_fmt(s, lo, hi)}, beyond both intervals")
    return out


def with_repeat(cross: dict[str, Any], first: Mapping[str, Any],
                repeat: Mapping[str, Any]) -> dict[str, Any]:
    """The cross-check after the disagreeing comparison was repeated in separate
    processes: ``first`` is kept in it, the repeat is what the final result holds."""
    out = {**cross, "repeated": True, "first": dict(first)}
    if not isinstance(repeat.get("ratio"), (int, float)):
        why = repeat.get("skipped") or repeat.get("reason") or "not measured"
        out["words"] += (f"; the repeat with each plan in its own process was not measured "
                         f"({why}), so the first measurement is kept: treat it with caution")
        out["repeated"] = False
        return out
    r, lo, hi = (float(repeat[k]) for k in ("ratio", "ci_low", "ci_high"))
    agree = overlap((lo, hi), tuple(cross["stage_ci"]))  # type: ignore[arg-type]
    out["repeat"] = {"ratio": r, "ci": [lo, hi], "agree": agree}
    out["words"] += (f"; repeated with each plan in its own process: {_fmt(r, lo, hi)}, which "
                     f"{'agrees' if agree else 'still disagrees'} with the stages; the "
                     "repeat is kept")
    return out


def not_repeated(cross: dict[str, Any], why: str) -> dict[str, Any]:
    """The cross-check of a disagreement that could not be repeated."""
    return {**cross, "repeated": False,
            "words": f"{cross['words']}; not repeated ({why}): treat the final throughput "
                     "with caution"}
