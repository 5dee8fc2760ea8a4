"""Following the training into spawned child processes (``torch.multiprocessing.spawn``,
``multiprocessing`` with the ``spawn``/``forkserver`` start method): DDP ranks.

Runtime side (in the profiled script's process): :func:`follow_spawned` wraps
``BaseProcess.start`` so that a process started with the spawn or forkserver method runs
its target through :func:`child_main` -- a module-level function, so it pickles like the
user's own target -- which installs perfpilot's probes in the child (a
:class:`~perfpilot.probes.bootstrap.Session` without a window end and without
calibrations: the child is not ours to stop, and timing thread counts in every rank at
once would measure them against each other), runs the user's target unchanged, and writes
the child's raw profile next to the parent's (``OUT.child-PID.json``). The target is put
back on the ``Process`` object as soon as ``start()`` has pickled it, so the script sees
its own object. Not followed: ``fork`` children (they inherit the parent's probes half
set up), DataLoader workers (their time is the loader's, measured in the parent), and
processes started outside ``multiprocessing`` (``torchrun``, ``subprocess``).

Assembly side: :func:`adopt_child` -- when the script's own process saw no step and a
followed child did, the record is built from the child that ran the most steps (rank 0
on a tie), with the parent's command line, exit code and stop reason, and
``profile.followed`` saying which child it is and how many steps each ran.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import sys
from typing import Any

CHILD_SUFFIX = ".child-"
_SKIP_MODULES = ("torch.utils.data",)  # DataLoader workers


def follow_spawned(cfg_dict: dict[str, Any]) -> Any:
    """Wrap ``multiprocessing``'s ``BaseProcess.start``; returns the undo function."""
    from multiprocessing import process

    original = process.BaseProcess.start

    def start(self: Any) -> None:
        target = getattr(self, "_target", None)
        if not _follows(self, target):
            return original(self)
        self._target = functools.partial(child_main, dict(cfg_dict), target)
        try:
            return original(self)
        finally:
            self._target = target  # pickled already: the script keeps its own object

    process.BaseProcess.start = start  # type: ignore[method-assign]

    def undo() -> None:
        process.BaseProcess.start = original  # type: ignore[method-assign]

    return undo


def _follows(proc: Any, target: Any) -> bool:
    method = getattr(proc, "_start_method", None)
    if method is None:  # a plain Process: the default context's method
        import multiprocessing

        method = multiprocessing.get_start_method(allow_none=True) or "fork"
    if method not in ("spawn", "forkserver") or target is None:
        return False
    module = getattr(target, "__module__", "") or ""
    return not module.startswith(_SKIP_MODULES)


def child_main(cfg_dict: dict[str, Any], target: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``target(*args, **kwargs)`` in a spawned child with probes around it. Its result
    and exceptions are the target's; a probe failure is a line on stderr, never the
    child's failure."""
    session = _child_session(cfg_dict, args)
    outcome: dict[str, Any] = {"exit_code": 0, "stopped": "end", "error": None}
    try:
        return target(*args, **kwargs)
    except SystemExit as e:
        outcome.update(exit_code=e.code if isinstance(e.code, int) else 1, stopped="exit")
        raise
    except BaseException as e:
        from perfpilot.probes.target import error_info

        outcome.update(exit_code=1, stopped="crash", error=error_info(e))
        raise
    finally:
        if session is not None:
            try:
                session.finish(outcome, calibrate=False)
            except Exception as e:  # the child's own result matters more than ours
                print(f"perfpilot: could not write the child's profile: {e}", file=sys.stderr)


def _child_session(cfg_dict: dict[str, Any], args: tuple[Any, ...]) -> Any:
    try:
        from perfpilot.probes.bootstrap import ProbeConfig, Session

        cfg = ProbeConfig(**{**cfg_dict, "out": child_out(cfg_dict["out"], os.getpid()),
                             "steps": None, "duration_s": None, "calibrate": False,
                             "keep_running": False})
        session = Session(cfg, [f"<child {os.getpid()}>"], follow=False)
        session.rank = _rank(args)
        session.start()
        return session
    except Exception as e:
        print(f"perfpilot: not profiling child {os.getpid()}: {type(e).__name__}: {e}",
              file=sys.stderr)
        return None


def _rank(args: tuple[Any, ...]) -> int | None:
    """The rank ``torch.multiprocessing.spawn`` passes its ``_wrap`` target (its ``i``)."""
    if len(args) >= 2 and callable(args[0]) and isinstance(args[1], int):
        return args[1]
    return None


def child_out(parent_out: str, pid: int) -> str:
    return f"{parent_out}{CHILD_SUFFIX}{pid}.json"


def read_children(parent_out: str) -> list[dict[str, Any]]:
    """The raw profiles the followed children wrote, by pid."""
    out = []
    for path in sorted(glob.glob(glob.escape(parent_out) + CHILD_SUFFIX + "*.json")):
        try:
            with open(path) as f:
                raw = json.load(f)
        except (OSError, ValueError):
            continue
        raw["pid"] = int(path.rsplit(CHILD_SUFFIX, 1)[1].split(".")[0])
        out.append(raw)
    return out


def _steps(raw: dict[str, Any]) -> int:
    return len([s for s in (raw.get("tracker") or {}).get("steps") or []
                if not s.get("excluded")])


def adopt_child(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw``, or the raw profile of the followed child that trained (see the module
    docstring) when the script's own process ran no step."""
    children = [c for c in raw.get("children") or () if c.get("tracker")]
    if _steps(raw) or not children:
        return raw
    best = max(children, key=lambda c: (_steps(c), -(c.get("rank") or 0)))
    if not _steps(best):
        return raw
    followed = {"pid": best["pid"], "rank": best.get("rank"), "processes": len(children),
                "steps": {str(c["pid"]): _steps(c) for c in children}}
    keep = {k: raw.get(k) for k in ("argv", "cwd", "exit_code", "stopped", "error",
                                    "config", "mode")}
    return {**best, **keep, "followed": followed}
