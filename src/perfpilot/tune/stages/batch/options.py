"""The batch stage's options (``ctx.options["batch"]``), checked: a wrong key or value is
the user's mistake and says which."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from perfpilot.errors import UserError
from perfpilot.tune.stages.batch.lr import LR_RULES


@dataclass(frozen=True)
class BatchOptions:
    """Options of the batch stage (``ctx.options["batch"]``, every key optional).

    ``lr_rule``: ``auto`` (linear for SGD, sqrt for adaptive optimizers) or a rule;
    ``warmup_fraction``: when the LR grows, warm up over this fraction of the samples the
    baseline needed to reach the target; ``warmup_steps``: a fixed warmup instead;
    ``min_batch``/``max_batch``: bounds of the search (default ``B0 // 8`` and the dataset
    size); ``memory_fraction``: CPU memory budget as a fraction of available RAM;
    ``margin``: safety margin below an out-of-memory failure; ``candidates``: how many
    predicted sizes to validate; ``repeats``: most time-to-target runs per finalist;
    ``throughput_repeats``: windows per batch size; ``noise_*``: noise-scale estimator
    settings; ``prune_slack``: a run is stopped at ``(1 + slack) x`` the best time to
    target; ``eval_fraction``: evaluation spacing as a fraction of elapsed training time;
    ``refine_runs``: most runs of the pattern search over batch and LR (0: validate the
    predicted candidates only); ``finalists``: configurations repeated with the baseline;
    ``lr_factor``: the LR step of the search.
    """

    lr_rule: Literal["auto", "linear", "sqrt", "none"] = "auto"
    warmup_fraction: float = 0.05
    warmup_steps: int | None = None
    min_batch: int | None = None
    max_batch: int | None = None
    memory_fraction: float = 0.5
    margin: float = 0.1
    candidates: int = 3
    repeats: int = 5
    throughput_repeats: int = 7
    noise_estimates: int = 8
    noise_small_batch: int | None = None
    noise_large_batch: int | None = None
    prune_slack: float = 0.2
    eval_fraction: float = 0.04
    refine_runs: int = 8
    finalists: int = 2
    lr_factor: float = 2.0

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> BatchOptions:
        raw = options.get("batch") or {}
        if not isinstance(raw, Mapping):
            raise UserError(f"option 'batch' must be a mapping, got {type(raw).__name__}")
        known = {f.name: f for f in fields(cls)}
        for key, value in raw.items():
            if key not in known:
                raise UserError(f"unknown batch option {key!r} (options: {', '.join(known)})")
            _check_option(key, value)
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# option -> (smallest allowed value, whether the value must be whole, largest or None)
_BOUNDS: dict[str, tuple[float, bool, float | None]] = {
    "warmup_fraction": (0, False, 1), "memory_fraction": (0, False, 1), "margin": (0, False, 1),
    "eval_fraction": (0, False, 1), "prune_slack": (0, False, None),
    "lr_factor": (1.0001, False, None), "warmup_steps": (0, True, None),
    "refine_runs": (0, True, None), "finalists": (1, True, None),
    "repeats": (1, True, None), "throughput_repeats": (2, True, None),
    "noise_estimates": (2, True, None), "candidates": (1, True, None),
}
_OPTIONAL = ("warmup_steps", "min_batch", "max_batch", "noise_small_batch", "noise_large_batch")


def _check_option(key: str, value: Any) -> None:
    if key == "lr_rule":
        if value not in ("auto", *LR_RULES):
            raise UserError(f"batch option 'lr_rule': {value!r} is not auto, "
                            f"{', '.join(LR_RULES)}")
        return
    if value is None and key in _OPTIONAL:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"batch option {key!r}: {value!r} is not a number")
    low, whole, high = _BOUNDS.get(key, (1, True, None))
    if whole and value != int(value):
        raise UserError(f"batch option {key!r}: {value!r} is not a whole number")
    if value < low or (high is not None and value >= high):
        span = f"[{low:g}, {high:g})" if high is not None else f">= {low:g}"
        raise UserError(f"batch option {key!r}: {value!r} must be {span}")
