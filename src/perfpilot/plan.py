"""The Plan: every knob perfpilot may set, as a frozen value with a JSON form.

Contract (DESIGN.md): JSON with a ``"version"`` field; unknown keys and bad values are
rejected with a :class:`~perfpilot.errors.PlanError` whose message names the key. A plan
file may be partial: missing keys are taken from a base plan (usually the workload's
baseline), so ``{"batch_size": 128}`` is a valid plan file. A plan written by ``tune``
may also hold ``"load"``: the load its gain was measured at (an object,
:mod:`perfpilot.tune.load_label`); it is not a knob: readers skip it, :func:`plan_load`
returns it.

Runtime application of a plan (device placement, autocast, compile, loader kwargs...)
lives in :mod:`perfpilot.apply_plan`; whether a device can do a plan lives in
:mod:`perfpilot.devices`. This module is pure data.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from perfpilot.errors import PlanError, UserError

PLAN_VERSION = 1
LOAD_KEY = "load"  # not a knob: the load the plan was measured at (tune.load_label)

Precision = Literal["fp32", "tf32", "bf16", "fp16"]
CompileMode = Literal["off", "default", "reduce-overhead", "max-autotune"]

PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "bf16", "fp16")
COMPILE_MODES: tuple[str, ...] = ("off", "default", "reduce-overhead", "max-autotune")
_DEVICE_RE = re.compile(r"^(cpu|mps|xla|cuda(:\d+)?)$")


@dataclass(frozen=True)
class Plan:
    """All settings of one training configuration.

    ``None`` for ``prefetch_factor``, ``cpu_threads`` and ``interop_threads`` means
    "leave PyTorch's default".
    """

    device: str = "cpu"
    precision: Precision = "fp32"
    compile: CompileMode = "off"
    channels_last: bool = False
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 0
    grad_accum: int = 1
    num_workers: int = 0
    prefetch_factor: int | None = None
    pin_memory: bool = False
    persistent_workers: bool = False
    cpu_threads: int | None = None
    interop_threads: int | None = None
    cudnn_benchmark: bool = False

    def __post_init__(self) -> None:
        _normalize_numbers(self)
        validate(self)

    def replace(self, **changes: Any) -> Plan:
        """A copy with ``changes`` applied (validated; unknown keys rejected)."""
        _reject_unknown(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, with ``version`` first."""
        return {"version": PLAN_VERSION, **dataclasses.asdict(self)}

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def diff(self, other: Plan) -> dict[str, tuple[Any, Any]]:
        """Keys whose values differ, as ``{key: (self_value, other_value)}``."""
        a, b = dataclasses.asdict(self), dataclasses.asdict(other)
        return {k: (a[k], b[k]) for k in a if a[k] != b[k]}

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: Plan | None = None) -> Plan:
        """Build a plan from its JSON form; missing keys come from ``base`` (or defaults)."""
        data = _knobs_of(data)
        return dataclasses.replace(base or cls(), **data)


_INT_KNOBS = ("batch_size", "warmup_steps", "grad_accum", "num_workers", "prefetch_factor",
              "cpu_threads", "interop_threads")


def _normalize_numbers(plan: Plan) -> None:
    """numpy integers/floats (as tuners produce) become Python ints/floats; bools stay
    rejected by validation."""
    import numbers

    for key in _INT_KNOBS:
        v = getattr(plan, key)
        if isinstance(v, numbers.Integral) and not isinstance(v, (bool, int)):
            object.__setattr__(plan, key, int(v))
    lr = plan.lr
    if isinstance(lr, numbers.Real) and not isinstance(lr, (bool, int, float)):
        object.__setattr__(plan, "lr", float(lr))


def knob_names() -> tuple[str, ...]:
    """Names of every knob, in declaration order."""
    return tuple(f.name for f in fields(Plan))


def load_plan(path: str | Path, base: Plan | None = None) -> Plan:
    """Read a plan file; errors name the file and the key."""
    p = Path(path)
    data = _read_json(p)
    try:
        return Plan.from_dict(data, base=base)
    except PlanError as e:
        raise PlanError(f"{p}: {e}") from None


def check_plan_file(path: str | Path) -> None:
    """Check a plan file as far as it can be checked without its base plan: readable JSON,
    a supported version, known keys, each value valid on its own. Errors name the file
    and the key, as :func:`load_plan`'s do.

    Cheap and torch-free, so the CLI calls it before importing torch or the workload;
    rules between keys (``prefetch_factor`` needs ``num_workers > 0``) wait for
    :func:`load_plan`, since the missing keys come from the workload's baseline.
    """
    p = Path(path)
    data = _read_json(p)
    try:
        for key, value in _knobs_of(data).items():
            check_value(key, value)
    except PlanError as e:
        raise PlanError(f"{p}: {e}") from None


def _read_json(p: Path) -> Any:
    """The JSON in plan file ``p``; every failure a PlanError naming the file."""
    from perfpilot.jsonio import load_json

    try:
        return load_json(p, "plan file")
    except PlanError:
        raise
    except UserError as e:
        raise PlanError(str(e)) from None


def _knobs_of(data: Any) -> dict[str, Any]:
    """The knobs of a plan's JSON form (``version`` checked and dropped; unknown keys are
    errors)."""
    if not isinstance(data, dict):
        raise PlanError(f"a plan must be a JSON object, got {type(data).__name__}")
    data = dict(data)
    load = data.pop(LOAD_KEY, None)
    if load is not None and not isinstance(load, dict):
        raise PlanError(f"plan key {LOAD_KEY!r} must be a JSON object, got "
                        f"{type(load).__name__}")
    version = data.pop("version", PLAN_VERSION)
    if type(version) is not int or version != PLAN_VERSION:  # True == 1, but not a version
        raise PlanError(
            f"plan key 'version': {version!r} is not supported (this perfpilot reads "
            f"version {PLAN_VERSION})"
        )
    _reject_unknown(data)
    return data


def save_plan(plan: Plan, path: str | Path, load: dict[str, Any] | None = None) -> None:
    """Write ``plan`` atomically: a crash never leaves half a plan (UserError on OSError).
    ``load``: the label written under ``"load"`` after the knobs (none: no key)."""
    from perfpilot.jsonio import write_text_atomic

    data = plan.to_dict() if load is None else {**plan.to_dict(), LOAD_KEY: load}
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def plan_load(path: str | Path) -> dict[str, Any] | None:
    """The ``"load"`` label of plan file ``path``, None when it has none; the file is
    read once and its keys checked (PlanError naming the file and the key); callers that
    need its values checked call :func:`check_plan_file` or :func:`load_plan` first."""
    p = Path(path)
    data = _read_json(p)
    try:
        _knobs_of(data)  # the version, the keys and the label's type
    except PlanError as e:
        raise PlanError(f"{p}: {e}") from None
    return data.get(LOAD_KEY)


def _reject_unknown(data: dict[str, Any]) -> None:
    unknown = sorted(set(data) - set(knob_names()))
    if unknown:
        raise PlanError(
            f"unknown plan key {unknown[0]!r} (known keys: {', '.join(knob_names())})"
        )


def _bad(key: str, value: Any, why: str) -> PlanError:
    return PlanError(f"plan key {key!r}: {value!r} {why}")


def _check_int(key: str, value: Any, minimum: int, optional: bool = False) -> None:
    if optional and value is None:
        return
    # bool is an int subclass; True as a batch size is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(key, value, "is not an integer")
    if value < minimum:
        raise _bad(key, value, f"must be >= {minimum}")


def _check_bool(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _bad(key, value, "is not true or false")


_BOOL_KNOBS = ("channels_last", "pin_memory", "persistent_workers", "cudnn_benchmark")
# int knob -> its minimum; the optional ones may also be None ("PyTorch's default")
_INT_MINIMUM = {"batch_size": 1, "warmup_steps": 0, "grad_accum": 1, "num_workers": 0,
                "prefetch_factor": 1, "cpu_threads": 1, "interop_threads": 1}
_OPTIONAL_INTS = ("prefetch_factor", "cpu_threads", "interop_threads")


def check_value(key: str, value: Any) -> None:
    """Raise :class:`PlanError` naming ``key`` if ``value`` is not valid for it on its own
    (rules between keys are :func:`validate`'s)."""
    if key == "device":
        if not isinstance(value, str) or not _DEVICE_RE.fullmatch(value):
            raise _bad("device", value, "is not one of cpu, cuda, cuda:N, mps, xla")
    elif key == "precision":
        if value not in PRECISIONS:
            raise _bad("precision", value, f"is not one of {', '.join(PRECISIONS)}")
    elif key == "compile":
        if value not in COMPILE_MODES:
            raise _bad("compile", value, f"is not one of {', '.join(COMPILE_MODES)}")
    elif key in _BOOL_KNOBS:
        _check_bool(key, value)
    elif key in _INT_MINIMUM:
        _check_int(key, value, _INT_MINIMUM[key], optional=key in _OPTIONAL_INTS)
    elif key == "lr":
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or value <= 0):
            raise _bad("lr", value, "must be a finite number > 0")
    else:
        _reject_unknown({key: value})


def validate(plan: Plan) -> None:
    """Raise :class:`PlanError` naming the first bad key. Device support is not checked here."""
    for key in knob_names():
        check_value(key, getattr(plan, key))
    if plan.num_workers == 0 and plan.prefetch_factor is not None:
        raise _bad("prefetch_factor", plan.prefetch_factor, "needs num_workers > 0")
    if plan.num_workers == 0 and plan.persistent_workers:
        raise _bad("persistent_workers", True, "needs num_workers > 0")
