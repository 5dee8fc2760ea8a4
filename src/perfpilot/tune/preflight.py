"""Everything a tuning checks and opens before it measures anything.

The output directory (writable), the budget (not absurd), ``--target`` (the workload can
measure it), the baseline (this machine can run it), the stages (known; given the replay
clock when they take one), the study (this tuning's, see
:class:`~perfpilot.tune.study.Study`) and the executor (started and warmed). Each problem
is a :class:`~perfpilot.errors.UserError` with one line naming the option or file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from perfpilot.errors import UserError, WorkloadError
from perfpilot.tune.units import WorkloadRef, warm_up
from perfpilot.tune_record import TUNE_SCHEMA, sanitize

if TYPE_CHECKING:
    from perfpilot.plan import Plan
    from perfpilot.progress import Progress
    from perfpilot.tune.stage import Stage
    from perfpilot.workload import Workload

ExecutorName = Literal["inline", "process", "ray"]
MIN_BUDGET_S = 20.0  # below this not even a baseline and one comparison fit


def prepare_out_dir(out: Path) -> Path:
    """Create ``out`` if needed and prove it is writable, before any measuring."""
    import tempfile

    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".perfpilot-write-test-"):
            pass
    except OSError as e:
        raise UserError(f"--out: cannot write to {out} ({e.strerror or e})") from None
    return out


def check_budget(budget_s: float) -> None:
    if not budget_s >= MIN_BUDGET_S:
        raise UserError(f"--budget: {budget_s:g} s is too small to tune anything (a baseline "
                        f"run and one interleaved comparison need at least "
                        f"{MIN_BUDGET_S:.0f} s); try --budget 5m")


def with_target(w: Workload, target: float | None) -> Workload:
    """The workload with ``--target`` applied (it needs a metric and validation data)."""
    if target is None:
        return w
    if w.metric is None or w.val_data is None:
        raise WorkloadError(f"--target {target:g}: workload {w.name!r} has no metric and "
                            "val_data to measure it with")
    return dataclasses.replace(w, target=float(target))


def check_baseline(plan: Plan) -> None:
    from perfpilot.devices import check_plan

    check_plan(plan)


def resolve_stages(stages: Sequence[str | Stage] | None,
                   clock: Callable[[], float] | None = None) -> tuple[list[str], list[Stage]]:
    """Names and instances (unknown names are errors). A stage class that takes a
    ``clock`` gets ``clock`` (the replay clock: see :class:`~perfpilot.tune.study.
    ReplayClock`)."""
    import importlib.util

    from perfpilot.tune.stage import STAGE_ORDER, STAGES

    if stages is None:
        stages = [s for s in STAGE_ORDER
                  if importlib.util.find_spec(STAGES[s].split(":")[0]) is not None]
    objects = [_make_stage(s, clock) if isinstance(s, str) else s for s in stages]
    if not objects:
        raise UserError("no stage to run")
    return [o.name for o in objects], objects


def _make_stage(name: str, clock: Callable[[], float] | None) -> Stage:
    import importlib
    import inspect

    from perfpilot.tune.stage import STAGES, load_stage

    if clock is None or name not in STAGES:
        return load_stage(name)  # unknown names: its UserError
    module, attr = STAGES[name].split(":")
    cls = getattr(importlib.import_module(module), attr)
    takes_clock = "clock" in inspect.signature(cls).parameters
    return cls(clock=clock) if takes_clock else cls()


def fingerprint(w: Workload, names: list[str], budget_s: float,
                options: dict[str, Any] | None) -> dict[str, Any]:
    """What makes two tunings the same tuning (a study of another one is refused)."""
    from perfpilot import __version__

    return {"workload": w.name, "baseline": w.baseline.to_dict(), "target": w.target,
            "stages": list(names), "budget_s": float(budget_s),
            "options": sanitize(options or {}), "perfpilot": __version__,
            "schema": TUNE_SCHEMA}


def open_study(out: Path, fp: dict[str, Any], *, resume: bool, restart: bool) -> Any:
    """The study in ``out`` (Optuna journal). ``restart`` deletes an existing one first."""
    from perfpilot.tune.study import STUDY_FILE, Study

    path = out / STUDY_FILE
    if restart and path.exists():
        path.unlink()
    try:
        return Study(out, fingerprint=fp, resume=resume)
    except UserError:
        raise
    except Exception as e:  # a journal that is not one (truncated, another program's)
        raise UserError(f"{path} cannot be read as a perfpilot study ({type(e).__name__}: "
                        f"{e}); remove it or choose another --out") from None


class started_executor:
    """The executor for ``--executor`` (timing trials one at a time), started and warmed
    (torch imported, the workload loaded) before the first trial, closed on exit."""

    def __init__(self, kind: ExecutorName, ref: WorkloadRef, progress: Progress) -> None:
        self.kind, self.ref, self.progress, self.ex = kind, ref, progress, None

    def __enter__(self) -> Any:
        if self.kind == "inline":
            return None
        from perfpilot.execute import choose_executor

        self.progress.message(f"starting the {self.kind} executor")
        self.ex = choose_executor(self.kind, timing=True)
        if self.ref.portable:
            try:
                self.ex.submit(warm_up, self.ref).result()
            except Exception as e:
                self.ex.close(wait=False)
                raise UserError(f"--executor {self.kind}: a worker could not load the "
                                f"workload ({type(e).__name__}: {e})") from None
        return self.ex

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if self.ex is not None:
            self.ex.close(wait=exc_type is None)
