"""One run of one arm: the user's script in its own process, with the arm's changes
injected by the runner, measured over a window of steady steps.

:func:`run_arm` is a trial function body: it returns an :class:`~perfpilot.trial.Outcome`
whose measurements are what the race and the parity check read (seconds per training
sample over the steady window, start-up seconds, the training losses by step, the knobs
the runner could not apply). A run that crashes, exits with an error, ends before any
steady step, or where a knob was refused is ``failed`` with the reason in words: the
tuning goes on without that candidate.

Every run gets the same ``seed`` (injected at start-up), so a change that does not alter
the math gives the baseline's losses, and one that does is judged against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from perfpilot.trial import Outcome

if TYPE_CHECKING:
    from perfpilot.probes.launch import Target
    from perfpilot.record import RunRecord

MAX_LOSS_POINTS = 2000


@dataclass(frozen=True)
class ArmSpec:
    """How every run of a tuning is measured."""

    window_steps: int
    seed: int = 0
    interval_s: float = 0.05  # the stack sampler is not needed: sample rarely


def run_arm(target: Target, changes: dict[str, Any], spec: ArmSpec) -> Outcome:
    """Run the script once with ``changes`` (see the module docstring)."""
    from perfpilot.probes.assemble import build_record
    from perfpilot.probes.launch import run_profiled

    overrides = {k: v for k, v in changes.items() if k != "env"}
    overrides["seed"] = spec.seed
    env = {str(k): str(v) for k, v in (changes.get("env") or {}).items()}
    config = {"overrides": overrides, "window": False, "calibrate": False,
              "steps": spec.window_steps, "interval_s": spec.interval_s,
              "measure_nograd": False, "save_every_s": 0}
    res = run_profiled(target, config, quiet=True, extra_env=env)
    if res.interrupted:
        raise KeyboardInterrupt
    if res.raw is None:
        return Outcome("failed", reason=f"the script {_ended(res.exit_code)} before its first "
                       "step (no profile written)")
    record = build_record(res.raw)
    return outcome_of(record, res.exit_code, spec)


def outcome_of(record: RunRecord, exit_code: int, spec: ArmSpec) -> Outcome:
    """The trial outcome of one measured run (pure: tests build records)."""
    m: dict[str, Any] = {"exit_code": exit_code, "steps": record.step_phases.steps,
                         "startup_s": _startup(record),
                         "losses": loss_rows(record)}
    refused = _refused(record)
    if refused:
        m["refused"] = refused
    err = record.profile.error
    if err:
        where = err.get("site")
        at = f" at {where[0]}:{where[1]}" if where else ""
        return Outcome("failed", m, f"the script raised {err.get('type')}: "
                       f"{short_message(str(err.get('message', '')))}{at}")
    if exit_code != 0:
        return Outcome("failed", m, f"the script {_ended(exit_code)}")
    if refused:
        knob, why = next(iter(refused.items()))
        return Outcome("failed", m, f"{knob} could not be applied: {why}")
    steps = int(record.step_phases.steps or 0)
    window = float(record.timeline.steady_s or 0.0)
    if steps == 0 or window <= 0:
        return Outcome("failed", m, "the script ended before any steady training step "
                       f"({record.profile.steps} steps in all)")
    samples = (record.step_phases.samples_per_step or 0) * steps
    m["seconds_per_sample"] = window / (samples or steps)
    m["per"] = "sample" if samples else "step"
    m["samples_per_step"] = record.step_phases.samples_per_step
    m["step_s"] = window / steps
    m["load_1m"] = record.cpu.load_1m_end
    m["other_cores"] = round(record.cpu.other_cores, 3) if record.cpu.measured else None
    return Outcome("complete", m)


def short_message(text: str, limit: int = 300) -> str:
    """One line of an error message: its first and last lines when it has several (a
    DataLoader worker's error puts the original exception last)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ""
    one = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return one if len(one) <= limit else one[: limit - 3] + "..."


def loss_rows(record: RunRecord) -> list[list[float]]:
    """``[step, loss, t_s, samples]`` of the run's training steps, from the runner's
    ``loss_history`` rows ``[step, t_s, loss, samples]`` (``t_s``: seconds since the
    first training step started)."""
    rows = [[float(r[0]), float(r[2]), round(float(r[1]), 5),
             float(r[3]) if len(r) > 3 else 0.0]
            for r in (record.loss_history or []) if len(r) >= 3]
    return rows[:MAX_LOSS_POINTS]


def _startup(record: RunRecord) -> float | None:
    t = record.timeline
    return round(float(t.steady_from), 4) if t.steady_from else None


def _refused(record: RunRecord) -> dict[str, str]:
    inj = getattr(record, "injection", None)
    refused = getattr(inj, "refused", None) if inj is not None else None
    return {k: v for k, v in (refused or {}).items() if k != "seed"}


def _ended(code: int) -> str:
    if code < 0:
        import signal

        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
