"""Start the profiled child process and collect its raw profile.

``perfpilot profile -- python -u train.py --lr 0.1`` becomes::

    python -u -m perfpilot.probes.bootstrap train.py --lr 0.1

with ``PERFPILOT_PROFILE`` (JSON, see :class:`~perfpilot.probes.bootstrap.ProbeConfig`) in the
environment and perfpilot's source root on ``PYTHONPATH`` (so another interpreter named on
the command line can import the runner). stdin, stdout and stderr are inherited: the
script's output and exit code pass through unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from perfpilot.errors import UserError
from perfpilot.probes.children import read_children

_ARG_FLAGS = ("-X", "-W", "-Q")  # interpreter options that take a value


@dataclass(frozen=True)
class Target:
    """What to profile: a script command line, or a perfpilot workload."""

    kind: Literal["script", "workload"]
    interpreter: str = sys.executable
    interp_flags: tuple[str, ...] = ()
    args: tuple[str, ...] = ()  # what follows ``-m perfpilot.probes.bootstrap``
    workload: str | None = None
    plan: str | None = None
    display: str = ""

    def with_plan(self, plan: str | None) -> Target:
        return Target(**{**self.__dict__, "plan": plan})


def _is_python(word: str) -> bool:
    name = os.path.basename(word)
    return name.startswith("python") and not name.endswith(".py")


def parse_target(words: list[str], plan: str | None = None) -> Target:
    """Classify the command line (see the module docstring); UserError when unusable."""
    if not words:
        raise UserError("nothing to profile: give a WORKLOAD, or `-- python script.py ARGS`")
    first = words[0]
    if _is_python(first):
        interp = shutil.which(first) or first
        if not os.path.exists(interp):
            raise UserError(f"interpreter not found: {first}")
        return _script(words[1:], interp, plan)
    if first.endswith(".py") or first in ("-m", "-c"):
        return _script(words, sys.executable, plan)
    if len(words) == 1:
        return Target("workload", workload=first, plan=plan, display=first)
    raise UserError(f"cannot tell what to run from {' '.join(words)!r}: use "
                    "`perfpilot profile WORKLOAD` or `perfpilot profile -- python script.py ARGS`")


def _script(words: list[str], interp: str, plan: str | None) -> Target:
    if plan is not None:
        raise UserError("--plan applies to a WORKLOAD; a script keeps its own settings")
    flags: list[str] = []
    i = 0
    while i < len(words) and words[i].startswith("-") and words[i] not in ("-m", "-c"):
        flags.append(words[i])
        if words[i] in _ARG_FLAGS and i + 1 < len(words):
            flags.append(words[i + 1])
            i += 1
        i += 1
    rest = words[i:]
    if not rest:
        raise UserError("no script given after the interpreter")
    if rest[0] in ("-m", "-c"):
        if len(rest) < 2:
            raise UserError(f"python {rest[0]} needs an argument")
        display = f"{rest[0]} {rest[1]}"
    else:
        if not Path(rest[0]).is_file():
            raise UserError(f"script not found: {rest[0]}")
        display = os.path.basename(rest[0])
    return Target("script", interp, tuple(flags), tuple(rest), display=display)


def _src_root() -> str:
    """The folder that holds the ``perfpilot`` package (this file is perfpilot/probes/)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _usable_cores() -> int | None:
    try:
        from perfpilot.probes.threads import usable_cores

        return usable_cores()
    except Exception:  # the child works it out itself
        return None


def child_command(target: Target) -> list[str]:
    return [target.interpreter, *target.interp_flags, "-m", "perfpilot.probes.bootstrap",
            *target.args]


@dataclass
class ChildResult:
    """Exit code of the child and its raw profile (None when it wrote none)."""

    exit_code: int
    raw: dict[str, Any] | None
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)


def run_profiled(target: Target, config: dict[str, Any], *,
                 quiet: bool = False, extra_env: dict[str, str] | None = None) -> ChildResult:
    """Run the target under the probes; ``quiet`` discards its stdout/stderr; ``extra_env``
    is set in the child's environment (settings read at process start, e.g. glibc's
    ``MALLOC_*``)."""
    with tempfile.TemporaryDirectory(prefix="perfpilot-") as tmp:
        out = os.path.join(tmp, "raw.json")
        cfg = {**config, "out": out}
        cfg.setdefault("usable_cores", _usable_cores())
        if target.kind == "workload":
            cfg.update(workload=target.workload, plan=target.plan)
        env = {**os.environ, **(extra_env or {})}
        env["PERFPILOT_PROFILE"] = json.dumps(cfg)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_src_root(), env.get("PYTHONPATH", "")) if p)
        sink = subprocess.DEVNULL if quiet else None
        interrupted = False
        proc = subprocess.Popen(child_command(target), env=env, stdout=sink, stderr=sink)
        try:
            code = proc.wait()
        except KeyboardInterrupt:  # the child got the SIGINT too; let it write its record
            interrupted = True
            code = proc.wait()
        raw = None
        if os.path.exists(out):
            with open(out) as f:
                raw = json.load(f)
            raw["children"] = read_children(out)  # followed spawned processes (DDP ranks)
        return ChildResult(code, raw, interrupted)


# The runner with nothing but the injection: no stack samples (the sampler thread only
# checks memory now and then), the interpreter's switch interval left as it is, no op
# window, no calibration, no no-grad probes, no partial saves.
INJECT_ONLY: dict[str, Any] = {"window": False, "calibrate": False, "measure_nograd": False,
                               "save_every_s": 0, "sampler": False, "switch_interval_s": 0,
                               "interval_s": 0.05}


def run_with_plan(target: Target, changes: dict[str, Any], *, quiet: bool = False,
                  config: dict[str, Any] | None = None) -> ChildResult:
    """Run a script with a script plan's ``changes`` injected and nothing else measured
    (``perfpilot run-script``): ``env`` goes into the child's environment, every other
    knob to the runner's overrides (:mod:`perfpilot.probes.inject`). The raw profile
    still comes back (small: no stacks), for the record's ``injection`` section.
    ``config`` adds to or replaces :data:`INJECT_ONLY`."""
    if target.kind != "script":
        raise UserError("a script plan applies to a script: `-- python train.py ARGS`")
    overrides = {k: v for k, v in changes.items() if k != "env"}
    env = {str(k): str(v) for k, v in (changes.get("env") or {}).items()}
    return run_profiled(target, {**INJECT_ONLY, **(config or {}), "overrides": overrides},
                        quiet=quiet, extra_env=env)
