"""``--verify``: re-run with a finding's fix applied and measure the speedup.

Only fixes that are settings perfpilot controls can be verified: a finding says which in
``finding.plan_change`` (e.g. ``{"num_workers": 2, "persistent_workers": True}``).

* Workload: two engine :class:`~perfpilot.engine.Trainer` objects (baseline plan and plan
  with the change) train alternately in this process; one sample is the seconds per
  training sample over ``k`` steps, after a few untimed steps per turn so batches that
  loader workers prefetched during the other side's turn do not count.
* Script: the script is re-run (output discarded) with the change applied through the
  runner's overrides (DataLoader arguments, ``torch.set_num_threads``) or, for ``env``,
  the re-run's environment (allocator settings read at process start); one sample is the
  steady window's seconds per training sample of one run.

Both sides alternate A B B A ... and :func:`perfpilot.measure.compare` gives the speedup
of B over A with its 95% interval (at least 5 rounds: below that no median interval
reaches 95%).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from perfpilot.errors import UserError
from perfpilot.probes.hooks import LOADER_KNOBS
from perfpilot.probes.launch import Target, run_profiled
from perfpilot.record import Finding, RunRecord
from perfpilot.record_sections import Verification

ROUNDS = 5
MIN_GAIN = 1.05  # findings estimated below this are not worth verifying
SCRIPT_KNOBS = frozenset(LOADER_KNOBS) | {"cpu_threads", "env"}
TURN_S = 0.4  # seconds of training per workload sample


def verifiable(findings: list[Finding], limit: int = 2) -> list[Finding]:
    """The top findings whose fix is a setting, estimated to be worth at least 5%, resting
    on enough measurement (thin ones are not worth runs)."""
    return [f for f in findings if f.plan_change and not f.thin
            and f.estimated_speedup >= MIN_GAIN][:limit]


def verify_finding(target: Target, record: RunRecord, finding: Finding, *,
                   rounds: int = ROUNDS, steps: int | None = None,
                   on_round: Callable[[int, float, float], None] | None = None
                   ) -> Verification:
    """Measure the finding's fix (the result is the finding's ``verified``)."""
    change = dict(finding.plan_change or {})
    closers: list[Callable[[], None]] = []
    try:
        if target.kind == "workload":
            a, b = _workload_measures(target, record, change, closers)
        else:
            a, b = _script_measures(target, change, steps)
        from perfpilot.measure import compare

        c = compare(a, b, repeats=rounds, warmup=0, on_round=on_round)
    except (UserError, RuntimeError, ImportError, ValueError) as e:
        return Verification(change=change, error=str(e))
    finally:
        for close in closers:
            close()
    return Verification(change=change, ratio=c.ratio, ci_low=c.ci_low, ci_high=c.ci_high,
                        verdict=c.verdict, n=c.n, estimate=finding.estimated_speedup,
                        measure="seconds per training sample")


# ---------------------------------------------------------------- scripts


def _script_measures(target: Target, change: dict[str, Any], steps: int | None
                     ) -> tuple[Callable[[], float], Callable[[], float]]:
    unknown = sorted(set(change) - SCRIPT_KNOBS)
    if unknown:
        raise UserError(f"cannot apply {', '.join(unknown)} to a script (only "
                        f"{', '.join(sorted(SCRIPT_KNOBS))})")
    return _script_run(target, {}, steps), _script_run(target, change, steps)


def _script_run(target: Target, change: dict[str, Any], steps: int | None
                ) -> Callable[[], float]:
    from perfpilot.probes.assemble import build_record

    overrides = {k: v for k, v in change.items() if k != "env"}
    env = {str(k): str(v) for k, v in (change.get("env") or {}).items()}
    config = {"overrides": overrides, "window": False, "calibrate": False, "steps": steps,
              "interval_s": 0.02, "measure_nograd": False, "save_every_s": 0}

    def measure() -> float:
        res = run_profiled(target, config, quiet=True, extra_env=env)
        if res.exit_code != 0 or res.raw is None:
            raise RuntimeError(f"the re-run with {change or 'no change'} exited with "
                               f"code {res.exit_code}")
        return seconds_per_sample(build_record(res.raw))

    return measure


def seconds_per_sample(record: RunRecord) -> float:
    """Steady-window seconds per training sample (per step when batches are unknown)."""
    steps = int(record.step_phases.steps or 0)
    samples = (record.step_phases.samples_per_step or 0) * steps
    window = float(record.timeline.steady_s or 0.0)
    if window <= 0 or steps == 0:
        raise RuntimeError("the re-run had no steady steps to measure")
    return window / (samples or steps)


# ---------------------------------------------------------------- workloads


def _workload_measures(target: Target, record: RunRecord, change: dict[str, Any],
                       closers: list[Callable[[], None]]
                       ) -> tuple[Callable[[], float], Callable[[], float]]:
    from perfpilot.engine import Trainer
    from perfpilot.plan import Plan
    from perfpilot.workload import load_workload

    if "env" in change:  # read at process start: the workload runs in this process
        raise UserError("an environment setting applies at process start; verify it on a "
                        "script (perfpilot profile --verify -- python train.py)")
    w = load_workload(target.workload or "")
    base = Plan.from_dict(record.plan, base=w.baseline) if record.plan else w.baseline
    cand = base.replace(**change)
    step_s = max(record.step_time_s.median, 1e-4)
    k = max(3, int(TURN_S / step_s))
    a = Trainer(w, base)
    closers.append(a.close)
    b = Trainer(w, cand)
    closers.append(b.close)
    k_b = max(3, int(k * base.batch_size / cand.batch_size))
    return _trainer_measure(a, k), _trainer_measure(b, k_b)


def _trainer_measure(tr: Any, k: int) -> Callable[[], float]:
    plan = tr.plan
    settle = (plan.prefetch_factor or 2) * plan.num_workers + 1 if plan.num_workers else 1

    def measure() -> float:
        tr.train_steps(settle)  # consume what workers prefetched during the other turn
        timings = tr.train_steps(k)
        samples = sum(t.samples for t in timings)
        return sum(t.total for t in timings) / max(samples, 1)

    return measure
