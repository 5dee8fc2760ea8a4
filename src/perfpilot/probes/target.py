"""Running the target inside the runner: a script as ``__main__`` (``runpy``), or a
perfpilot workload through the engine; and how its end is told (exit code, error with
the user's part of the traceback).
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback
from typing import Any

from perfpilot.probes.frames import is_user_file

WORKLOAD_DEFAULT_S = 6.0


def run_target(argv: list[str], cfg: Any) -> Any:
    """Run the script (``argv`` as after ``python``) or ``cfg.workload``; a workload
    returns its engine record (a dict), a script None."""
    if cfg.workload:
        return _run_workload(cfg)
    if not argv:
        raise SystemExit("perfpilot.probes.bootstrap: no script given")
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    elif argv[0] == "-c":
        sys.argv = ["-c", *argv[2:]]
        exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
    else:
        path = os.path.abspath(argv[0])
        sys.argv = [argv[0], *argv[1:]]
        sys.path[0] = os.path.dirname(path)
        runpy.run_path(path, run_name="__main__")
    return None


def _run_workload(cfg: Any) -> dict[str, Any]:
    """Train a perfpilot workload through the engine, under the probes."""
    from perfpilot.engine import run
    from perfpilot.plan import load_plan
    from perfpilot.workload import load_workload

    w = load_workload(cfg.workload or "")
    plan = load_plan(cfg.plan, base=w.baseline) if cfg.plan else w.baseline
    if cfg.overrides:
        plan = plan.replace(**cfg.overrides)
    steps = cfg.steps + 2 if cfg.steps else None  # the engine's 2 warm-up steps
    time_s = cfg.duration_s or (None if steps else WORKLOAD_DEFAULT_S)
    record = run(w, plan, steps=steps, time_s=time_s, progress=False)
    return record.to_dict()


def user_traceback(exc: BaseException) -> str:
    """The traceback from the first user frame on (runner and runpy frames dropped)."""
    tb = exc.__traceback__
    while tb is not None and not is_user_file(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))


def error_info(exc: BaseException) -> dict[str, Any]:
    site = None
    for frame, line in traceback.walk_tb(exc.__traceback__):
        if is_user_file(frame.f_code.co_filename):
            site = [frame.f_code.co_filename, line, frame.f_code.co_name]
    return {"type": type(exc).__name__, "message": str(exc)[:2000], "site": site,
            "traceback": user_traceback(exc)[-6000:]}


def exit_code_of(code: Any) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def is_user_error(e: BaseException) -> bool:
    from perfpilot.errors import UserError

    return isinstance(e, UserError)
