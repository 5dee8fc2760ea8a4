"""The Workload contract and how a spec string becomes a checked Workload.

A workload tells perfpilot how to train, so it can train under any Plan:

* ``model()`` -> ``torch.nn.Module`` (fresh, on the CPU; perfpilot moves it)
* ``train_data()`` -> a map-style ``Dataset`` (``__len__`` + ``__getitem__``), non-empty
* ``loss(model, batch)`` -> scalar tensor; ``batch`` is what the DataLoader yields, already
  moved to the plan's device (tensors inside tuples/lists/dicts are moved)
* ``optimizer(params, lr)`` -> ``torch.optim.Optimizer``
* ``baseline`` -> the user's current settings, a :class:`~perfpilot.plan.Plan`
* optional ``val_data()`` and ``metric(model, batch) -> float`` (the metric's mean over
  the batch), with ``direction`` (``"max"`` or ``"min"``) and ``target`` for
  time-to-target. A ``target`` needs a ``metric`` and ``val_data``.

Specs: ``path/to/file.py:factory``, ``package.module:factory`` or a built-in name (see
:data:`BUILTINS`). The factory is called with no arguments and returns a Workload; an
attribute that already is a Workload is used as is.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from perfpilot.errors import WorkloadError
from perfpilot.plan import Plan

BUILTINS: dict[str, str] = {
    "digits": "perfpilot.workloads.digits:workload",
    "charlm": "perfpilot.workloads.charlm:workload",
    "augmented": "perfpilot.workloads.augmented:workload",
}


@dataclass(frozen=True)
class Workload:
    """How to train one model; see the module docstring for the contract of each field."""

    name: str
    model: Callable[[], Any]
    train_data: Callable[[], Any]
    loss: Callable[[Any, Any], Any]
    optimizer: Callable[[Iterable[Any], float], Any]
    baseline: Plan = field(default_factory=Plan)
    val_data: Callable[[], Any] | None = None
    metric: Callable[[Any, Any], float] | None = None
    metric_name: str = "metric"
    direction: Literal["max", "min"] = "max"
    target: float | None = None
    collate_fn: Callable[[list[Any]], Any] | None = None
    seed: int = 0
    description: str = ""

    def __post_init__(self) -> None:
        for name in ("model", "train_data", "loss", "optimizer"):
            if not callable(getattr(self, name)):
                raise WorkloadError(f"workload {self.name!r}: {name!r} must be callable")
        if not isinstance(self.baseline, Plan):
            raise WorkloadError(
                f"workload {self.name!r}: 'baseline' must be a perfpilot Plan, "
                f"got {type(self.baseline).__name__}"
            )
        if self.direction not in ("max", "min"):
            raise WorkloadError(
                f"workload {self.name!r}: 'direction' must be 'max' or 'min', "
                f"got {self.direction!r}"
            )
        if self.target is not None and (self.metric is None or self.val_data is None):
            raise WorkloadError(
                f"workload {self.name!r}: a target ({self.target}) needs a metric and val_data"
            )

    def reached(self, value: float) -> bool:
        """Whether a metric value meets the target (False when there is no target)."""
        if self.target is None:
            return False
        return value >= self.target if self.direction == "max" else value <= self.target


def check_spec(spec: str) -> tuple[str, str]:
    """The ``(file or module, attribute)`` a spec names, checked as far as that is possible
    without importing anything: its form, a built-in name, the file existing, the
    top-level package being installed. Raises :class:`WorkloadError` with one clear line.

    Torch-free, so the CLI calls it before it imports torch or the workload.
    """
    target = BUILTINS.get(spec, spec)
    where, _, attr = target.rpartition(":")
    if not where or not attr:
        raise WorkloadError(
            f"workload {spec!r}: expected 'file.py:factory', 'package.module:factory' or a "
            f"built-in name ({', '.join(BUILTINS)})"
        )
    if where.endswith(".py"):
        if not Path(where).is_file():
            raise WorkloadError(f"workload file not found: {where}")
    elif not _installed(where.split(".")[0]):
        raise WorkloadError(f"workload {spec!r}: no module named {where!r}")
    return where, attr


def load_workload(spec: str) -> Workload:
    """Resolve a spec to a Workload. Raises :class:`WorkloadError` with one clear line."""
    where, attr = check_spec(spec)
    module = _import_file(where) if where.endswith(".py") else _import_module(where, spec)
    if not hasattr(module, attr):
        raise WorkloadError(f"workload {spec!r}: {where} has no attribute {attr!r}")
    obj = getattr(module, attr)
    if not isinstance(obj, Workload):
        if not callable(obj):
            raise WorkloadError(f"workload {spec!r}: {attr!r} is neither a Workload nor callable")
        try:
            obj = obj()
        except WorkloadError:
            raise
        except Exception as e:  # the user's factory: show its error, not ours
            raise WorkloadError(
                f"workload {spec!r}: factory {attr}() raised {type(e).__name__}: {e}"
            ) from e
    if not isinstance(obj, Workload):
        raise WorkloadError(
            f"workload {spec!r}: {attr}() returned {type(obj).__name__}, expected a "
            "perfpilot.Workload"
        )
    return obj


def _installed(top_level: str) -> bool:
    """Whether a top-level module can be found (``find_spec`` of a top-level name imports
    nothing)."""
    try:
        return importlib.util.find_spec(top_level) is not None
    except (ImportError, ValueError):  # "" or a relative name
        return False


def _import_file(path_str: str) -> Any:
    path = Path(path_str)
    if not path.is_file():
        raise WorkloadError(f"workload file not found: {path}")
    name = f"_perfpilot_user_{path.stem}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise WorkloadError(f"workload file cannot be imported: {path}")
    module = importlib.util.module_from_spec(spec)
    # Registered so that pickling (DataLoader workers, process executors) finds its classes.
    sys.modules[name] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        raise WorkloadError(
            f"workload file {path} failed to import: {type(e).__name__}: {e}"
        ) from e
    return module


def _import_module(name: str, spec: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and name.startswith(e.name):
            raise WorkloadError(f"workload {spec!r}: no module named {name!r}") from None
        raise WorkloadError(f"workload {spec!r}: importing {name} failed: {e}") from e
    except Exception as e:
        raise WorkloadError(
            f"workload {spec!r}: importing {name} failed: {type(e).__name__}: {e}"
        ) from e


# ---------------------------------------------------------------- checking by running


def check_dataset(dataset: Any, what: str, workload: str) -> None:
    """A map-style, non-empty dataset, or a WorkloadError naming what is wrong."""
    import torch.utils.data as tud

    if isinstance(dataset, tud.IterableDataset) or not (
        hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")
    ):
        raise WorkloadError(
            f"workload {workload!r}: {what}() returned {type(dataset).__name__}, which is not a "
            "map-style Dataset (it needs __len__ and __getitem__)"
        )
    if len(dataset) == 0:
        raise WorkloadError(f"workload {workload!r}: {what}() returned an empty dataset")


def _call(workload: Workload, what: str) -> Any:
    try:
        return getattr(workload, what)()
    except Exception as e:
        raise WorkloadError(
            f"workload {workload.name!r}: {what}() raised {type(e).__name__}: {e}"
        ) from e


def build_model(workload: Workload) -> Any:
    """Call ``model()`` and check it returns an nn.Module."""
    import torch

    model = _call(workload, "model")
    if not isinstance(model, torch.nn.Module):
        raise WorkloadError(
            f"workload {workload.name!r}: model() returned {type(model).__name__}, "
            "expected a torch.nn.Module"
        )
    return model


def build_dataset(workload: Workload, what: Literal["train_data", "val_data"]) -> Any:
    """Call ``train_data()`` or ``val_data()`` and check the result is map-style, non-empty."""
    dataset = _call(workload, what)
    check_dataset(dataset, what, workload.name)
    return dataset


def build_optimizer(workload: Workload, params: Iterable[Any], lr: float) -> Any:
    import torch

    try:
        opt = workload.optimizer(params, lr)
    except Exception as e:
        raise WorkloadError(
            f"workload {workload.name!r}: optimizer(params, lr) raised {type(e).__name__}: {e}"
        ) from e
    if not isinstance(opt, torch.optim.Optimizer):
        raise WorkloadError(
            f"workload {workload.name!r}: optimizer() returned {type(opt).__name__}, "
            "expected a torch.optim.Optimizer"
        )
    return opt


def checked_loss(workload: Workload, model: Any, batch: Any) -> Any:
    """Call ``loss(model, batch)`` and check it returns a finite-shaped scalar tensor."""
    import torch

    try:
        loss = workload.loss(model, batch)
    except Exception as e:
        raise WorkloadError(
            f"workload {workload.name!r}: loss(model, batch) raised {type(e).__name__}: {e}"
        ) from e
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise WorkloadError(
            f"workload {workload.name!r}: loss(model, batch) must return a scalar tensor, "
            f"got {shape}"
        )
    return loss


def check_workload(workload: Workload) -> None:
    """Build everything once on the CPU and compute one loss on a 2-sample batch.

    Catches contract violations up front with a clear message, before any timing starts.
    """
    from torch.utils.data import DataLoader

    model = build_model(workload)
    train = build_dataset(workload, "train_data")
    if workload.val_data is not None:
        build_dataset(workload, "val_data")
    build_optimizer(workload, model.parameters(), workload.baseline.lr)
    loader = DataLoader(train, batch_size=min(2, len(train)), collate_fn=workload.collate_fn)
    try:
        batch = next(iter(loader))
    except Exception as e:
        raise WorkloadError(
            f"workload {workload.name!r}: reading a batch from train_data() raised "
            f"{type(e).__name__}: {e}"
        ) from e
    loss = checked_loss(workload, model, batch)
    if loss.requires_grad is False:
        raise WorkloadError(
            f"workload {workload.name!r}: loss(model, batch) does not depend on the "
            "model's parameters (it has no grad_fn)"
        )
