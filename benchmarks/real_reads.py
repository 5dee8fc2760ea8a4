"""What ``benchmarks/real_scripts.py`` reads back from each arm, and its arithmetic: the
step clock's marks, perfpilot's record, train-doctor's ``--json`` output and evidence,
py-spy's raw samples, the paired overheads, the fixed seconds and the verdict on
``perfpilot profile --verify``. Pure functions (tests/test_bench_real_scripts.py)."""

from __future__ import annotations

import statistics
from typing import Any

MIN_CI_ROUNDS = 5  # perfpilot.measure.MIN_ROUNDS: fewer rounds give no 95% interval
WARMUP_STEPS = 2  # perfpilot's warm-up steps; the clocks skip as many


def step_marks(spec: dict[str, Any]) -> tuple[str, int]:
    """Which clock marks a training step ends on, and how many marks make one step."""
    counts = spec["script_counts"]
    if counts["optimizer_steps_per_step"]:
        return "optimizer", counts["optimizer_steps_per_step"]
    return "backward", counts["backward_per_step"]


def clock_steps(clock: dict[str, Any], spec: dict[str, Any]) -> tuple[int, float | None]:
    """(training steps, mean seconds of a steady step) from a clock file."""
    kind, per = step_marks(spec)
    ends = clock.get(kind, [])[per - 1::per]
    if len(ends) <= WARMUP_STEPS:
        return len(ends), None
    return len(ends), (ends[-1] - ends[WARMUP_STEPS - 1]) / (len(ends) - WARMUP_STEPS)


def record_steps(rec: dict[str, Any]) -> tuple[int, float | None, dict[str, Any]]:
    """(steps, mean steady step seconds, the top finding) from a perfpilot record. The step
    time is the record's own figure: the steady window's mean per-step phases summed
    (``step_phases.per_step_s_core``; evaluation and the profiler window left out)."""
    core = (rec.get("step_phases") or {}).get("per_step_s_core") or {}
    findings = rec.get("findings") or []
    top = findings[0] if findings else None
    return (int((rec.get("profile") or {}).get("steps") or 0),
            sum(core.values()) if core else None,
            {"id": top.get("id"), "estimated_speedup": top.get("estimated_speedup"),
             "plan_change": top.get("plan_change")} if top else {})


def td_steps(out: dict[str, Any], evidence: dict[str, Any],
             spec: dict[str, Any]) -> tuple[int, float | None, dict[str, Any], str]:
    """(steps it saw, mean steady step seconds per training step, the top finding, what
    its steps are) from train-doctor's ``--json`` output and its evidence file."""
    st = evidence.get("steps") or {}
    boundary = str(st.get("boundary") or evidence.get("source") or "")
    stm = out.get("step_time_ms") or evidence.get("step_time_ms") or {}
    per = spec["script_counts"]["optimizer_steps_per_step"]
    step_s = None
    if stm.get("mean") and "optimizer" in boundary and per:
        step_s = stm["mean"] / 1000 * per
    findings = out.get("findings") or []
    top = {"id": findings[0].get("id"), "title": findings[0].get("title")} if findings else {}
    return int(st.get("total") or 0), step_s, top, boundary


def pyspy_samples(path: str) -> int:
    """Stack samples in a py-spy raw (collapsed) file."""
    total = 0
    with open(path) as f:
        for line in f:
            head, _, count = line.rstrip().rpartition(" ")
            if head and count.isdigit():
                total += int(count)
    return total


def overhead(base: list[float], other: list[float]) -> dict[str, Any]:
    """``other / base - 1``: median of paired ratios, with its 95% interval from 5
    rounds."""
    pairs = [(b, o) for b, o in zip(base, other, strict=True) if b and o]
    if not pairs:
        return {"overhead": None, "ci_low": None, "ci_high": None}
    if len(pairs) >= MIN_CI_ROUNDS:
        from perfpilot.measure import compare_samples

        c = compare_samples([b for b, _ in pairs], [o for _, o in pairs], paired=True)
        return {"overhead": 1 / c.ratio - 1, "ci_low": 1 / c.ci_high - 1,
                "ci_high": 1 / c.ci_low - 1}
    mid = statistics.median(o / b for b, o in pairs) - 1
    return {"overhead": mid, "ci_low": None, "ci_high": None}


def fixed_s(plain: list[dict[str, Any]], tool: list[dict[str, Any]]) -> float | None:
    """Median over rounds of the extra wall seconds not explained by per-step slowdown
    (the plain run's step count: the tools run the same steps, or stop earlier)."""
    xs = [t["wall_s"] - p["wall_s"] - p["steps"] * (t["step_s"] - p["step_s"])
          for p, t in zip(plain, tool, strict=True)
          if p.get("step_s") is not None and t.get("step_s") is not None]
    return statistics.median(xs) if xs else None


def verdict(rec: dict[str, Any]) -> dict[str, Any]:
    """What ``--verify`` found for the top finding, from its record."""
    findings = rec.get("findings") or []
    if not findings:
        return {"top": None, "result": "no finding"}
    f = findings[0]
    top = {"id": f.get("id"), "estimated_speedup": f.get("estimated_speedup"),
           "plan_change": f.get("plan_change")}
    v = f.get("verified")
    if not f.get("plan_change"):
        return {"top": top, "result": "no setting-type fix"}
    if not v:
        return {"top": top, "result": "not verified (estimated gain under 5%)"}
    if v.get("error"):
        return {"top": top, "result": f"could not verify: {v['error']}"}
    faster = v.get("ci_low") is not None and v["ci_low"] > 1
    slower = v.get("ci_high") is not None and v["ci_high"] < 1
    return {"top": top, "ratio": v.get("ratio"), "ci_low": v.get("ci_low"),
            "ci_high": v.get("ci_high"), "n": v.get("n"), "verdict": v.get("verdict"),
            "result": "faster" if faster else "slower" if slower else "no clear change"}


def median_or_none(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None
