"""Numerical parity: a faster setting must train the same model.

From the same seed and the same data, a candidate's training losses over its first K steps
are compared with those of the fp32 reference (the incumbent with ``precision="fp32"`` and
``compile="off"``). A candidate is refused when a loss is NaN/inf (state ``nan``), when its
loss grows instead of falling (``failed``, divergence), or when the mean loss over the last
quarter of the K steps differs from the reference's by more than the tolerance
(``failed``). The reason is recorded in the trial, never only logged.

The tolerance is stated, not hidden: ``|cand - ref| <= rtol * |ref| + atol`` on the window
means. Reduced precision legitimately moves losses a little; a broken setting moves them a
lot or makes them non-finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from perfpilot.plan import Plan

DEFAULT_STEPS = 20
DEFAULT_RTOL = 0.05
DEFAULT_ATOL = 0.01
DIVERGENCE_FACTOR = 1.5  # a final loss 1.5x the first one, when the reference fell


@dataclass(frozen=True)
class Tolerance:
    """How far a candidate's loss may move from the reference after ``steps`` steps."""

    steps: int = DEFAULT_STEPS
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return f"|loss - ref| <= {self.rtol:g}*|ref| + {self.atol:g} after {self.steps} steps"


@dataclass(frozen=True)
class ParityVerdict:
    ok: bool
    state: Literal["complete", "nan", "failed"]
    reason: str
    candidate_loss: float | None = None
    reference_loss: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ParityFailure(Exception):
    """Raised while measuring a candidate that fails parity; carries the trial state."""

    def __init__(self, verdict: ParityVerdict) -> None:
        super().__init__(verdict.reason)
        self.verdict = verdict


def reference_plan(plan: Plan) -> Plan:
    """The fp32 reference of ``plan``: same everything, full precision, eager."""
    return plan.replace(precision="fp32", compile="off")


def window_mean(losses: Sequence[float]) -> float:
    """Mean of the last quarter of ``losses`` (at least one): single steps are too noisy."""
    k = max(1, len(losses) // 4)
    tail = list(losses)[-k:]
    return sum(tail) / len(tail)


def first_nonfinite(losses: Sequence[float]) -> int | None:
    for i, v in enumerate(losses):
        if not math.isfinite(v):
            return i
    return None


def judge(reference: Sequence[float], candidate: Sequence[float], tol: Tolerance) -> ParityVerdict:
    """Compare the first ``tol.steps`` losses of a candidate with the reference's."""
    k = min(tol.steps, len(reference), len(candidate))
    bad = first_nonfinite(candidate[: tol.steps])
    if bad is not None:
        return ParityVerdict(False, "nan", f"parity: loss is {candidate[bad]} at step {bad + 1}")
    if k == 0:
        return ParityVerdict(False, "failed", "parity: no losses to compare")
    ref, cand = list(reference[:k]), list(candidate[:k])
    r, c = window_mean(ref), window_mean(cand)
    if c > DIVERGENCE_FACTOR * abs(cand[0]) and r <= ref[0]:
        return ParityVerdict(False, "failed", f"parity: diverged, loss rose from {cand[0]:.4g} "
                             f"to {c:.4g} in {k} steps while the fp32 reference fell to "
                             f"{r:.4g}", c, r)
    limit = tol.rtol * abs(r) + tol.atol
    if abs(c - r) > limit:
        return ParityVerdict(False, "failed", f"parity: loss after {k} steps is {c:.4g}, fp32 "
                             f"reference {r:.4g}; differs by {abs(c - r):.3g} > {limit:.3g} "
                             f"({tol.describe()})", c, r)
    return ParityVerdict(True, "complete", f"parity: loss {c:.4g} vs fp32 reference {r:.4g} "
                         f"after {k} steps (within {limit:.3g})", c, r)


def checker(reference: Sequence[float], tol: Tolerance) -> Callable[[Sequence[float]], None]:
    """A check for :func:`perfpilot.tune.abtest.ab_test`: raises :class:`ParityFailure`
    as soon as the candidate's losses fail (NaN at any step; the tolerance once K steps ran)."""
    finite = finite_checker()
    needed = min(tol.steps, len(reference))

    def check(losses: Sequence[float]) -> None:
        finite(losses)
        if len(losses) >= needed:
            verdict = judge(reference, losses, tol)
            if not verdict.ok:
                raise ParityFailure(verdict)

    return check


def finite_checker() -> Callable[[Sequence[float]], None]:
    """A check that only refuses non-finite losses (for knobs that do not change the math)."""

    def check(losses: Sequence[float]) -> None:
        bad = first_nonfinite(losses)
        if bad is not None:
            raise ParityFailure(ParityVerdict(False, "nan", f"loss is {losses[bad]} at step "
                                              f"{bad + 1}"))

    return check
