"""The plan for an unmodified script: settings perfpilot injects at run time, as JSON.

A workload's :class:`~perfpilot.plan.Plan` holds every knob's absolute value, because
perfpilot builds the workload's loop. A script builds its own loop, so its plan holds only
*changes* to what the script does: ``{"num_workers": 1, "cpu_threads": 1}`` means "build
every DataLoader with ``num_workers=1`` and call ``torch.set_num_threads(1)``"; every knob
not named stays as the script has it. The same changes drive three things:

* the runner's injection (``perfpilot run-script --plan plan.json -- python train.py``
  and every tuning trial: :mod:`perfpilot.probes.inject`);
* the patch to the user's files (:mod:`perfpilot.script_patch`);
* the tuning record's before -> after.

Knobs (:data:`KNOBS`): the DataLoader's ``num_workers``, ``persistent_workers``,
``pin_memory``, ``prefetch_factor``, ``batch_size``; ``lr_scale`` (every optimizer's
``lr`` multiplied, set together with ``batch_size`` by the batch rule); ``cpu_threads``
and ``interop_threads``; ``channels_last`` (the model and its 4-D inputs);
``compile`` (``torch.compile`` mode of the training root module); ``precision``
(autocast around the root module's forward; ``tf32`` only on CUDA); ``cudnn_benchmark``;
``env`` (environment variables read at process start, e.g. glibc's ``MALLOC_*``); and
``seed`` (only in tuning trials: every arm starts from the same seed, so loss
trajectories can be compared).

File form::

    {"format": "perfpilot.script-plan/1", "command": ["python", "train.py"],
     "changes": {"num_workers": 1, "cpu_threads": 1}}

``"load"`` (optional, an object): the load the changes won at, as a script tuning writes
it (:mod:`perfpilot.tune.load_label`); readers keep it and apply nothing from it.

Errors name the file and the key (:class:`~perfpilot.errors.PlanError`, exit code 2).
Pure data: nothing here imports torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perfpilot.errors import PlanError, UserError
from perfpilot.plan import COMPILE_MODES, PRECISIONS

SCRIPT_PLAN_FORMAT = "perfpilot.script-plan/1"

LOADER_KNOBS: tuple[str, ...] = ("num_workers", "persistent_workers", "pin_memory",
                                 "prefetch_factor", "batch_size")
# knob -> what it is (the order is the order of the report's "changes" lines)
KNOBS: dict[str, str] = {
    "num_workers": "DataLoader worker processes",
    "prefetch_factor": "batches each DataLoader worker loads ahead",
    "persistent_workers": "DataLoader workers kept between epochs",
    "pin_memory": "DataLoader batches in page-locked memory",
    "batch_size": "DataLoader batch size",
    "lr_scale": "every optimizer's learning rate multiplied by this",
    "cpu_threads": "torch.set_num_threads",
    "interop_threads": "torch.set_num_interop_threads",
    "channels_last": "model and 4-D inputs in channels_last memory format",
    "compile": "torch.compile mode of the training model",
    "precision": "autocast precision around the model's forward",
    "cudnn_benchmark": "torch.backends.cudnn.benchmark",
    "env": "environment variables set before the process starts",
    "seed": "torch/random/numpy seeded at start-up (tuning trials only)",
}
# Knobs that change what the training computes (the loss may legitimately move, within a
# tolerance); the others must leave it as it was.
MATH_KNOBS = frozenset({"precision", "compile", "channels_last", "batch_size", "lr_scale"})
_INT_MINIMUM = {"num_workers": 0, "prefetch_factor": 1, "batch_size": 1, "cpu_threads": 1,
                "interop_threads": 1, "seed": 0}
_BOOLS = ("persistent_workers", "pin_memory", "channels_last", "cudnn_benchmark")


def _bad(key: str, value: Any, why: str) -> PlanError:
    return PlanError(f"script plan key {key!r}: {value!r} {why}")


def check_change(key: str, value: Any) -> None:
    """Raise :class:`PlanError` naming ``key`` when ``value`` is not valid for it."""
    if key not in KNOBS:
        raise PlanError(f"unknown script plan key {key!r} (known keys: {', '.join(KNOBS)})")
    if key in _INT_MINIMUM:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(key, value, "is not an integer")
        if value < _INT_MINIMUM[key]:
            raise _bad(key, value, f"must be >= {_INT_MINIMUM[key]}")
    elif key in _BOOLS:
        if not isinstance(value, bool):
            raise _bad(key, value, "is not true or false")
    elif key == "lr_scale":
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or value <= 0):
            raise _bad(key, value, "must be a finite number > 0")
    elif key == "compile":
        if value not in COMPILE_MODES:
            raise _bad(key, value, f"is not one of {', '.join(COMPILE_MODES)}")
    elif key == "precision":
        if value not in PRECISIONS:
            raise _bad(key, value, f"is not one of {', '.join(PRECISIONS)}")
    elif key == "env":
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and k and isinstance(v, str) for k, v in value.items()):
            raise _bad(key, value, "must be an object of names to string values")


def validate_changes(changes: Any) -> dict[str, Any]:
    """A checked copy of ``changes`` (PlanError naming the first bad key)."""
    if not isinstance(changes, dict):
        raise PlanError(f"script plan 'changes' must be a JSON object, got "
                        f"{type(changes).__name__}")
    for key, value in changes.items():
        check_change(key, value)
    if changes.get("num_workers") == 0:
        for dep in ("prefetch_factor", "persistent_workers"):
            if changes.get(dep) not in (None, False):
                raise _bad(dep, changes[dep], "needs num_workers > 0")
    return {k: changes[k] for k in KNOBS if k in changes}


def changes_math(changes: dict[str, Any]) -> bool:
    """Whether these changes may move the training loss (see :data:`MATH_KNOBS`)."""
    return any(k in MATH_KNOBS and not _is_noop(k, v) for k, v in changes.items())


def _is_noop(key: str, value: Any) -> bool:
    return (key == "precision" and value == "fp32") or (key == "compile" and value == "off") \
        or (key == "lr_scale" and value == 1) or (key == "channels_last" and value is False)


def describe(changes: dict[str, Any]) -> str:
    """``num_workers=1, cpu_threads=1`` (``no change`` when empty)."""
    if not changes:
        return "no change"
    parts = []
    for k, v in changes.items():
        if k == "env":
            parts.extend(f"{n}={x}" for n, x in v.items())
        else:
            parts.append(f"{k}={v}")
    return ", ".join(parts)


@dataclass(frozen=True)
class ScriptPlan:
    """Changes to inject into a script (see the module docstring)."""

    changes: dict[str, Any] = field(default_factory=dict)
    command: tuple[str, ...] = ()
    load: dict[str, Any] | None = None  # the load label (module docstring); not a change

    def __post_init__(self) -> None:
        object.__setattr__(self, "changes", validate_changes(self.changes))
        object.__setattr__(self, "command", tuple(str(w) for w in self.command))

    def to_dict(self) -> dict[str, Any]:
        d = {"format": SCRIPT_PLAN_FORMAT, "command": list(self.command),
             "changes": dict(self.changes)}
        return d if self.load is None else {**d, "load": dict(self.load)}

    @classmethod
    def from_dict(cls, data: Any) -> ScriptPlan:
        if not isinstance(data, dict):
            raise PlanError(f"a script plan must be a JSON object, got {type(data).__name__}")
        fmt = data.get("format")
        if fmt != SCRIPT_PLAN_FORMAT:
            hint = (" (this is a workload plan: use it with `perfpilot run WORKLOAD --plan`)"
                    if fmt is None and "version" in data else "")
            raise PlanError(f"script plan key 'format': {fmt!r} is not "
                            f"{SCRIPT_PLAN_FORMAT!r}{hint}")
        unknown = sorted(set(data) - {"format", "command", "changes", "load"})
        if unknown:
            raise PlanError(f"unknown script plan key {unknown[0]!r}")
        load = data.get("load")
        if load is not None and not isinstance(load, dict):
            raise _bad("load", load, "must be a JSON object")
        command = data.get("command", [])
        if not isinstance(command, list) or not all(isinstance(w, str) for w in command):
            raise _bad("command", command, "must be a list of strings")
        return cls(changes=data.get("changes", {}), command=tuple(command), load=load)

    def save(self, path: str | Path) -> None:
        """Write atomically (UserError on OSError)."""
        from perfpilot.jsonio import write_json_atomic

        write_json_atomic(path, self.to_dict())


def load_script_plan(path: str | Path) -> ScriptPlan:
    """Read a script plan file; errors name the file and the key."""
    from perfpilot.jsonio import load_json

    p = Path(path)
    try:
        return ScriptPlan.from_dict(load_json(p, "script plan"))
    except PlanError as e:
        raise PlanError(f"{p}: {e}") from None
    except UserError:
        raise
