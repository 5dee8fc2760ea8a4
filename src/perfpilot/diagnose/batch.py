"""``small-batch``: per-step fixed costs dominate, so each sample costs more than it must.

Measured: the part of a training step that does not grow with the batch size: the
optimizer phase (``step``/``zero_grad``) plus, from the profiler window, the number of
operators per step times PyTorch's per-operator dispatch cost (timed on this machine
with a tiny op; capped at the forward+backward time). Fix: a ``k`` times larger batch
runs those costs ``k`` times less often per sample. Gain: Amdahl with that fixed share of
the run divided by ``k`` (the per-sample work itself is assumed unchanged, which is
conservative: larger kernels are also more efficient). Larger batches change training
dynamics: scale the learning rate and let ``perfpilot tune`` judge time-to-accuracy.
Measured number: ``fixed_fraction`` (of the training step).
"""

from __future__ import annotations

from perfpilot.diagnose.common import MIN_STEPS, Facts, loc, make, pct, secs, where
from perfpilot.record import Finding, Measure

MIN_FIXED = 0.25  # fixed share of the training step before the rule speaks
MAX_BATCH = 1024
TARGET_BATCH = 256


def fixed_per_step(f: Facts) -> tuple[float, str]:
    """Seconds per step that do not depend on the batch size, and how they were found."""
    opt = f.per_step.get("optimizer", 0.0)
    ops = f.record.hot_ops.aten_ops_per_step
    cost = f.record.calibration.op_overhead_s
    fwd_bwd = f.per_step.get("forward", 0.0) + f.per_step.get("backward", 0.0)
    if ops and cost:
        dispatch = min(float(ops) * float(cost), fwd_bwd)
        how = (f"optimizer {secs(opt)} + {ops:.0f} operators x {secs(float(cost))} "
               f"dispatch each")
        return opt + dispatch, how
    return opt, f"optimizer {secs(opt)}"


def small_batch(f: Facts) -> list[Finding]:
    batch = f.samples_per_step
    if not f.trains or f.steps < MIN_STEPS or not batch or batch >= MAX_BATCH or f.step_s <= 0:
        return []
    fixed, how = fixed_per_step(f)
    fixed_frac = fixed / f.step_s
    if fixed_frac < MIN_FIXED:
        return []
    k = max(2, min(8, TARGET_BATCH // batch)) if batch < TARGET_BATCH else 2
    train_share = f.share(f.train_s)
    share = fixed_frac * train_share
    ld = f.train_loader()
    new = batch * k
    evidence = (f"Batch of {batch} samples: {pct(fixed_frac)} of each {secs(f.step_s)} step "
                f"is per-step overhead that does not grow with the batch ({how}); "
                f"training is {pct(train_share)} of the run.")
    site = ld.site if ld else None
    fix = (f"Use batch_size={new} (DataLoader at {where(site)}) and scale the learning rate "
           f"with it (e.g. linearly, with warm-up); check accuracy with `perfpilot tune`."
           if site else f"Use a {k}x larger batch ({new}) and scale the learning rate.")
    return [make("small-batch", "The batch is too small to amortize per-step overhead",
                 evidence, fix, share, float(k), location=loc(site),
                 confidence="medium", plan_change={"batch_size": new},
                 measured=[Measure("fixed_fraction", fixed_frac, "fraction")])]
