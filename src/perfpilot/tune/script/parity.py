"""Loss parity for scripts: a candidate must train the model the baseline trains.

Both runs start from the same seed (injected), so over the same step numbers their
training losses line up step by step. The check compares the mean loss over the last
half of the common steps (single steps are noisy; the first steps are warm-up):

    |candidate - baseline| <= rtol * |baseline| + noise

with ``rtol`` :data:`RTOL_SAME` for changes that leave the math alone (workers, threads,
allocator settings: only the order of floating-point sums may change) and
:data:`RTOL_MATH` for changes that may move it (precision, compile, memory format), and
``noise`` the difference between two baseline runs (the script's own nondeterminism,
e.g. random augmentation in worker processes). A non-finite loss always fails. The rule
with its figures is the verdict's ``rule`` (it goes in the record and the report).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from perfpilot.script_tune_record import Parity

RTOL_SAME = 0.02
RTOL_MATH = 0.05
MIN_COMMON = 4  # steps both runs have; below this, nothing is judged


def _common(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]
            ) -> list[tuple[float, float]]:
    da = {int(r[0]): float(r[1]) for r in a if len(r) >= 2}
    db = {int(r[0]): float(r[1]) for r in b if len(r) >= 2}
    return [(da[s], db[s]) for s in sorted(set(da) & set(db))]


def _tail_means(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    tail = pairs[len(pairs) // 2:]
    return (sum(p[0] for p in tail) / len(tail), sum(p[1] for p in tail) / len(tail))


def window_diff(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> float | None:
    """|mean difference| of two runs' losses over the last half of their common steps."""
    pairs = _common(a, b)
    if len(pairs) < MIN_COMMON or not all(math.isfinite(x) and math.isfinite(y)
                                          for x, y in pairs):
        return None
    ma, mb = _tail_means(pairs)
    return abs(ma - mb)


def judge_runs(baseline: Sequence[Sequence[float]], candidate: Sequence[Sequence[float]], *,
               changes_math: bool, noise: float = 0.0) -> Parity | None:
    """The parity verdict, or None when there is nothing to compare (no losses seen:
    the script's loss was not a scalar passed to ``backward``)."""
    bad = next((r for r in candidate if len(r) >= 2 and not math.isfinite(float(r[1]))),
               None)
    if bad is not None:
        return Parity(False, steps=len(candidate),
                      rule=f"the loss is {bad[1]} at step {int(bad[0])}")
    pairs = _common(baseline, candidate)
    if len(pairs) < MIN_COMMON:
        return None
    mb, mc = _tail_means(pairs)
    rtol = RTOL_MATH if changes_math else RTOL_SAME
    tol = rtol * abs(mb) + noise
    step_diff = max(abs(x - y) for x, y in pairs)
    kind = "may change the math" if changes_math else "should leave the math alone"
    within = abs(mc - mb) <= tol
    tail = len(pairs) - len(pairs) // 2
    rule = (f"mean loss over the last {tail} of {len(pairs)} common steps: {mc:.5g} vs "
            f"baseline {mb:.5g}, difference "
            f"{abs(mc - mb):.3g} {'<=' if within else '>'} tolerance {tol:.3g} "
            f"({rtol:g} x baseline + run-to-run noise {noise:.3g}; the change {kind})")
    if not within:
        rule = "the loss differs from the baseline's: " + rule
    return Parity(within, mb, mc, tol, len(pairs), step_diff, rule)
