"""Learning-rate rules for a new batch size: which scaling, and how much warmup.

Scaling from the baseline ``(B0, lr0)`` to batch ``B``:

* ``linear``: ``lr0 * B / B0`` (Goyal et al. 2017; plain and momentum SGD),
* ``sqrt``: ``lr0 * sqrt(B / B0)`` (adaptive methods: Adam, AdamW and kin; Malladi et
  al. 2022's square-root rule; also LAMB's choice),
* ``none``: ``lr0`` unchanged.

``rule_for(optimizer)`` picks linear for the SGD family and sqrt for adaptive ones (and
for unknown optimizers, the conservative choice). Warmup (Goyal et al.'s gradual warmup)
keeps the baseline's warmup in *samples*, and when the LR grows, ramps it over at least
``warmup_samples`` samples. Both the rule and the warmup can be overridden.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

LrRule = Literal["linear", "sqrt", "none"]
LR_RULES: tuple[str, ...] = ("linear", "sqrt", "none")

# Class names (lower case) of optimizers scaled linearly; everything else is adaptive.
SGD_FAMILY = ("sgd", "lars", "sgdw", "asgd")


def optimizer_family(optimizer: Any) -> Literal["sgd", "adaptive", "unknown"]:
    """``sgd`` for the SGD family, ``adaptive`` for Adam-like methods, else ``unknown``."""
    import torch

    name = type(optimizer).__name__.lower()
    if isinstance(optimizer, torch.optim.SGD) or name in SGD_FAMILY:
        return "sgd"
    adaptive = (torch.optim.Adam, torch.optim.AdamW, torch.optim.Adamax, torch.optim.NAdam,
                torch.optim.RAdam, torch.optim.Adagrad, torch.optim.Adadelta,
                torch.optim.RMSprop)
    if isinstance(optimizer, adaptive) or any(k in name for k in ("adam", "lamb", "adafactor")):
        return "adaptive"
    return "unknown"


def rule_for(optimizer: Any) -> LrRule:
    """The default scaling rule for an optimizer instance."""
    return "linear" if optimizer_family(optimizer) == "sgd" else "sqrt"


def scale_lr(lr0: float, b0: int, b: int, rule: LrRule) -> float:
    """The learning rate for batch ``b`` given ``lr0`` at ``b0`` under ``rule``."""
    if rule not in LR_RULES:
        raise ValueError(f"unknown LR rule {rule!r} (rules: {', '.join(LR_RULES)})")
    if b0 < 1 or b < 1:
        raise ValueError(f"batch sizes must be >= 1, got {b0} and {b}")
    ratio = b / b0
    return lr0 * {"linear": ratio, "sqrt": math.sqrt(ratio), "none": 1.0}[rule]


@dataclass(frozen=True)
class LrPolicy:
    """How the stage sets ``lr`` and ``warmup_steps`` for a batch size.

    ``warmup_samples``: when the scaled LR exceeds ``base_lr``, warm up over at least this
    many samples (0 disables). ``base_warmup_steps`` is the baseline's warmup, kept
    constant in samples.
    """

    rule: LrRule
    base_lr: float
    base_batch: int
    base_warmup_steps: int = 0
    warmup_samples: int = 0
    family: str = "unknown"
    source: Literal["auto", "option"] = "auto"

    def lr(self, batch: int) -> float:
        return scale_lr(self.base_lr, self.base_batch, batch, self.rule)

    def warmup_steps(self, batch: int, lr: float | None = None) -> int:
        """Warmup steps at ``batch`` with learning rate ``lr`` (default: the rule's)."""
        lr = self.lr(batch) if lr is None else lr
        kept = math.ceil(self.base_warmup_steps * self.base_batch / batch)
        if lr > self.base_lr * (1 + 1e-9) and self.warmup_samples > 0:
            return max(kept, math.ceil(self.warmup_samples / batch))
        return kept

    def rescale(self, lr: float, batch_from: int, batch_to: int) -> float:
        """Move ``lr`` tuned at ``batch_from`` to ``batch_to`` with this policy's rule."""
        return scale_lr(lr, batch_from, batch_to, self.rule)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
