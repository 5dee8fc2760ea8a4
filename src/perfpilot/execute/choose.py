"""Choosing an executor for trials, with the timing rule.

The timing rule: a trial that measures speed must not share the resource it measures.
Two timing trials on the same CPU cores, or on the same GPU, slow each other down and
both measurements are wrong. So for ``timing=True``:

- ``inline``: one trial at a time by construction;
- ``process`` on a machine without (visible) GPUs: exactly one worker;
- ``process`` with N visible GPUs: one worker per GPU, each pinned to its GPU through
  ``CUDA_VISIBLE_DEVICES`` (the replacement of a dead worker gets the same GPU);
- ``ray`` with a GPU per trial (``resources={"num_gpus": 1}``): Ray's GPU accounting
  gives each trial its own GPU; without GPUs: at most one trial per node.

Asking for more concurrency than that with ``timing=True`` is a :class:`UserError`.
Trials that do not time anything (``timing=False``: e.g. convergence to an accuracy
measured in steps) may share: one worker per core by default.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from perfpilot.errors import UserError
from perfpilot.execute.base import Executor, InlineExecutor, usable_cores

ExecutorKind = Literal["inline", "process", "ray"]


def choose_executor(kind: ExecutorKind = "process", *, timing: bool,
                    workers: int | Literal["auto"] = "auto", gpus: int | None = None,
                    address: str | None = None, resources: dict[str, Any] | None = None,
                    **options: Any) -> Executor:
    """An executor of ``kind`` whose concurrency obeys the timing rule (module docstring).

    ``gpus``: GPUs visible to trials (``None``: count them with torch). ``address`` and
    ``resources`` are for Ray; other ``options`` go to the executor's constructor.
    """
    if kind == "inline":
        return InlineExecutor()
    if kind == "process":
        return _process(timing=timing, workers=workers, gpus=gpus, **options)
    if kind == "ray":
        return _ray(timing=timing, workers=workers, address=address, resources=resources,
                    **options)
    raise UserError(f"unknown executor {kind!r} (executors: inline, process, ray)")


def _process(*, timing: bool, workers: int | Literal["auto"], gpus: int | None,
             **options: Any) -> Executor:
    from perfpilot.execute.process import ProcessExecutor

    n_gpus = visible_gpus() if gpus is None else gpus
    if not timing:
        n = usable_cores() if workers == "auto" else workers
        return ProcessExecutor(n, **options)
    limit = max(1, n_gpus)
    n = limit if workers == "auto" else workers
    if n > limit:
        what = f"{n_gpus} GPUs" if n_gpus else "a machine without GPUs"
        raise UserError(f"workers={n}: timing trials must not share what they measure; "
                        f"on {what} at most {limit} may run at once (or pass timing=False)")
    if n_gpus:
        options.setdefault("worker_env", lambda slot: {"CUDA_VISIBLE_DEVICES": str(slot)})
    return ProcessExecutor(n, **options)


def _ray(*, timing: bool, workers: int | Literal["auto"], address: str | None,
         resources: dict[str, Any] | None, **options: Any) -> Executor:
    from perfpilot.execute.ray_executor import RayExecutor

    if workers != "auto":
        raise UserError("workers: the Ray executor's concurrency comes from the cluster's "
                        "resources; set resources= (e.g. {'num_gpus': 1}) instead")
    resources = dict(resources or {})
    per_node = None
    if timing and not resources.get("num_gpus"):
        per_node = 1  # CPU timing trials: one per node (Ray's GPU accounting does the rest)
    return RayExecutor(address, resources=resources, max_per_node=per_node, **options)


def visible_gpus() -> int:
    """CUDA devices trials could use (0 without torch or CUDA)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return 0
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0
