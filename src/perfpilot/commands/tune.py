"""``perfpilot tune``: choose settings by measurement, stage by stage, and write the plan.

First version: runs the requested stages (:data:`perfpilot.tune.stage.STAGE_ORDER`) one
after the other in this process with an in-memory trial runner, each starting from the
previous stage's plan and getting a share of the budget (time a stage leaves unused goes
to the next). Writes ``DIR/plan.json`` (the whole Plan) and ``DIR/evidence.json`` (every
stage's trials with state, reason and measurements, plus its evidence).

Kept small on purpose: durable storage and resume, executors and the HTML report plug in
at :func:`run_stages` (the trial runner) and :func:`write_outputs`.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import typer

from perfpilot.errors import UserError

DEFAULT_OUT = "perfpilot-out"
DEFAULT_BUDGET = "5m"
# Relative shares of the budget; the hardware stage has the most candidates.
STAGE_WEIGHTS: dict[str, float] = {"hardware": 2.0, "loader": 1.0, "batch": 2.0}
_NUM = r"(\d+(?:\.\d+)?)"
_DURATION = re.compile(rf"(?:{_NUM}h)?(?:{_NUM}m)?(?:{_NUM}s)?")


def register(app: typer.Typer) -> None:
    app.command("tune")(tune_command)


def tune_command(
    workload: str = typer.Argument(
        ..., metavar="WORKLOAD",
        help="Workload: path/to/file.py:factory, package.module:factory or a built-in name "
             "(digits, charlm, augmented)."),
    only: str | None = typer.Option(
        None, "--only", metavar="STAGES",
        help="Comma-separated stages to run, e.g. hardware,loader (default: all, in order: "
             "hardware, loader, batch)."),
    budget: str = typer.Option(
        DEFAULT_BUDGET, "--budget", metavar="TIME",
        help="Total tuning time, e.g. 90s, 5m, 1h (split between the stages)."),
    out: Path = typer.Option(
        Path(DEFAULT_OUT), "--out", metavar="DIR",
        help="Directory for plan.json and evidence.json (created if missing)."),
    horizon: str | None = typer.Option(
        None, "--horizon", metavar="TIME",
        help="Expected length of your real training run, e.g. 2h: a compile or warm-up cost "
             "must pay for itself within it. Default: the incumbent's measured time to the "
             "workload's target, else 10 minutes (assumed, and said so)."),
) -> None:
    """Measure settings on WORKLOAD and keep only the real gains; write DIR/plan.json."""
    from perfpilot.workload import check_workload, load_workload

    stages = parse_stages(only)
    budget_s = parse_duration(budget, "--budget")
    horizon_s = parse_duration(horizon, "--horizon") if horizon is not None else None
    check_out_dir(out)
    w = load_workload(workload)
    check_workload(w)
    _check_baseline(w.baseline)
    with _Progress() as progress:
        results = run_stages(w, stages, budget_s, horizon_s=horizon_s,
                             on_message=progress.message, on_stage=progress.stage)
    plan = results[-1]["result"].plan if results else w.baseline
    write_outputs(out, w, plan, results, budget_s=budget_s, horizon_s=horizon_s)
    _print_outcome(w.baseline, plan, results, out)


# ---------------------------------------------------------------- parsing


def parse_duration(text: str, option: str) -> float:
    """Seconds in ``90``, ``90s``, ``5m``, ``1.5h`` or ``1h30m``; a UserError otherwise."""
    raw = text.lower().replace(" ", "")
    if re.fullmatch(_NUM, raw):
        seconds = float(raw)
    else:
        m = _DURATION.fullmatch(raw)
        if not raw or m is None:
            raise UserError(f"{option}: {text!r} is not a duration (e.g. 90s, 5m, 1h)")
        h, mi, s = (float(g) if g else 0.0 for g in m.groups())
        seconds = 3600 * h + 60 * mi + s
    if seconds <= 0:
        raise UserError(f"{option}: {text!r} must be longer than 0 seconds")
    return seconds


def parse_stages(only: str | None) -> list[str]:
    """The stages to run, in :data:`STAGE_ORDER`; unknown or unavailable names are errors.

    Without ``--only``: every stage whose module is installed."""
    from perfpilot.tune.stage import STAGE_ORDER

    if only is None:
        return [s for s in STAGE_ORDER if _available(s)]
    names = [n.strip() for n in only.split(",") if n.strip()]
    if not names:
        raise UserError(f"--only: no stage named (stages: {', '.join(STAGE_ORDER)})")
    for n in names:
        if n not in STAGE_ORDER:
            raise UserError(f"--only: unknown stage {n!r} (stages: {', '.join(STAGE_ORDER)})")
        if not _available(n):
            raise UserError(f"--only: stage {n!r} is not available in this perfpilot build")
    return [s for s in STAGE_ORDER if s in names]


def _available(stage: str) -> bool:
    import importlib.util

    from perfpilot.tune.stage import STAGES

    return importlib.util.find_spec(STAGES[stage].split(":")[0]) is not None


def check_out_dir(out: Path) -> None:
    """Create ``out`` if needed and prove it is writable, before any measuring."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".perfpilot-write-test-"):
            pass
    except OSError as e:
        raise UserError(f"--out: cannot write to {out} ({e.strerror or e})") from None


def _check_baseline(plan: Any) -> None:
    from perfpilot.hardware import check_plan

    check_plan(plan)


# ---------------------------------------------------------------- running


def stage_budgets(stages: Sequence[str], total_s: float, spent_s: float,
                  index: int) -> float:
    """Stage ``index``'s share of what is left: its weight over the weights still to run."""
    weights = [STAGE_WEIGHTS.get(s, 1.0) for s in stages[index:]]
    return max(0.0, total_s - spent_s) * weights[0] / sum(weights)


def run_stages(workload: Any, stages: Sequence[str], budget_s: float, *,
               horizon_s: float | None = None, trials: Any = None,
               on_message: Callable[[str], None] = lambda m: None,
               on_stage: Callable[[str, float], None] = lambda s, b: None,
               clock: Callable[[], float] = time.monotonic) -> list[dict[str, Any]]:
    """Run ``stages`` in order from the workload's baseline; one dict per stage with its
    ``result`` (a StageResult), ``budget_s`` and ``elapsed_s``."""
    from perfpilot.hardware import discover
    from perfpilot.tune.stage import MemoryTrials, StageContext, load_stage

    trials = trials if trials is not None else MemoryTrials()
    machine = discover().to_dict()
    plan, start, out = workload.baseline, clock(), []
    for i, name in enumerate(stages):
        share = stage_budgets(stages, budget_s, clock() - start, i)
        on_stage(name, share)
        ctx = StageContext(workload=workload, incumbent=plan, trials=trials, budget_s=share,
                           horizon_s=horizon_s, machine=machine, progress=on_message)
        t0 = clock()
        result = load_stage(name).run(ctx)
        out.append({"result": result, "budget_s": share, "elapsed_s": clock() - t0})
        plan = result.plan
    return out


# ---------------------------------------------------------------- output


def evidence_document(workload: Any, plan: Any, results: Sequence[dict[str, Any]], *,
                      budget_s: float, horizon_s: float | None) -> dict[str, Any]:
    """The JSON written to ``evidence.json``."""
    from perfpilot.hardware import discover

    return {
        "schema": "perfpilot.tune-evidence/1",
        "workload": workload.name,
        "budget_s": budget_s,
        "horizon_s": horizon_s,
        "machine": discover().to_dict(),
        "baseline": workload.baseline.to_dict(),
        "plan": plan.to_dict(),
        "changes": {k: {"from": a, "to": b} for k, (a, b) in workload.baseline.diff(plan).items()},
        "stages": [_stage_doc(r) for r in results],
    }


def _stage_doc(r: dict[str, Any]) -> dict[str, Any]:
    res = r["result"]
    return {"name": res.name, "summary": res.summary, "budget_s": r["budget_s"],
            "elapsed_s": r["elapsed_s"], "plan": res.plan.to_dict(),
            "trials": [t.to_dict() for t in res.trials], "evidence": res.evidence}


def write_outputs(out: Path, workload: Any, plan: Any, results: Sequence[dict[str, Any]], *,
                  budget_s: float, horizon_s: float | None) -> None:
    """Write ``plan.json`` and ``evidence.json`` atomically (temp file + rename)."""
    doc = evidence_document(workload, plan, results, budget_s=budget_s, horizon_s=horizon_s)
    _atomic_write(out / "evidence.json", json.dumps(doc, indent=2, default=_json) + "\n")
    _atomic_write(out / "plan.json", plan.to_json() + "\n")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None


def _json(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


def _print_outcome(baseline: Any, plan: Any, results: Sequence[dict[str, Any]],
                   out: Path) -> None:
    from rich.console import Console

    console = Console()
    for r in results:
        res = r["result"]
        console.print(f"[bold]{res.name}[/] ({r['elapsed_s']:.0f} s of {r['budget_s']:.0f} s):"
                      f" {res.summary}", highlight=False)
    changes = baseline.diff(plan)
    if changes:
        console.print("changes: " + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in
                                              changes.items()), highlight=False)
    else:
        console.print("no change: the baseline stays (nothing was a measured gain)")
    console.print(f"wrote {out / 'plan.json'} and {out / 'evidence.json'}", highlight=False)


class _Progress:
    """A live rich progress display on stderr: one line per stage, elapsed time, the latest
    message. Disabled (silent) when stderr is not a terminal."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        console = Console(stderr=True)
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                 TimeElapsedColumn(), console=console,
                                 disable=not console.is_terminal, transient=False)
        self.task: Any = None

    def __enter__(self) -> _Progress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            self.progress.stop_task(self.task)
        self.progress.stop()

    def stage(self, name: str, budget_s: float) -> None:
        if self.task is not None:
            self.progress.stop_task(self.task)
        self.name, self.budget = name, budget_s
        self.task = self.progress.add_task(f"{name} (budget {budget_s:.0f} s)")

    def message(self, text: str) -> None:
        if self.task is not None:
            self.progress.update(self.task, description=f"{self.name} (budget "
                                 f"{self.budget:.0f} s): {text}")
