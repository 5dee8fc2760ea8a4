"""Rules that need a GPU run: syncs, pageable copies, fp32 GEMMs, idle GPU, unused memory.

All read the ``cuda`` section (see :mod:`perfpilot.probes.cuda`) and ``hot_ops``'s
``cuda`` facts; they are silent on CPU records. Each rule's measurement and gain:

``host-device-sync``   synchronizing calls per steady step (sync debug mode) and the
                       sampled time of their lines; gain: those lines' time halved
                       (the GPU work remains; the host stops waiting for it).
``pageable-memcpy``    host-to-device copies from pageable memory (bytes and count) and,
                       from the profiler window, the time of "Pageable -> Device"
                       copies; gain: that copy time halved (pinned copies run at full
                       bandwidth and can overlap compute).
``fp32-on-tensor-cores`` fp32 GEMM kernel time on a GPU with TF32 tensor cores (compute
                       capability >= 8.0) while TF32 is off; gain: GEMM share of the
                       window sped up by the TF32/fp32 ratio measured on this GPU.
``gpu-idle``           NVML utilization over the steady window; gain: the idle share
                       halved, with the fix aimed at the measured biggest host phase
                       (the finding's ``tag``; ``utilization`` in its ``measured``).
``memory-headroom``    peak allocated memory against device memory; with the GPU not
                       saturated and the step not waiting on host work (data, copies,
                       your code under 30%), a larger batch is the lever; gain: the idle
                       share sped up by how many times the batch can grow (at most 4).
"""

from __future__ import annotations

from perfpilot.diagnose.common import MIN_STEPS, Facts, loc, make, pct, where
from perfpilot.record import Finding, Measure
from perfpilot.record_probe_sections import KernelFacts

SYNC_MIN_SHARE = 0.02
IDLE_MAX_UTIL = 60.0
HEADROOM_MAX_USED = 0.4
HOST_BOUND = 0.3


def host_device_sync(f: Facts) -> list[Finding]:
    syncs = [s for s in f.record.cuda.syncs if s.steady and s.site]
    if not syncs or f.steps < MIN_STEPS:
        return []
    hot = {(h.file, h.line): h for h in f.record.hot_lines}
    total = sum(s.count for s in syncs)
    share = sum(hot[s.site[:2]].self_share for s in syncs if s.site and s.site[:2] in hot)
    if share < SYNC_MIN_SHARE:
        return []
    top = max(syncs, key=lambda s: s.count)
    evidence = (f"{total / f.steps:.1f} host-device synchronizations per step "
                f"(most at {where(top.site)}, {top.count} times); the host waits "
                f"there for {pct(share)} of the run.")
    fix = (f"Keep values on the GPU at {where(top.site)}: accumulate losses/metrics in "
           f"tensors and call .item()/.cpu() once every N steps; avoid data-dependent "
           f"shapes (nonzero, boolean masks) in the step.")
    return [make("host-device-sync", "The host keeps waiting for the GPU", evidence, fix,
                 share, 2.0, location=loc(top.site), confidence="medium")]


def _kernels(f: Facts) -> KernelFacts:
    return f.record.hot_ops.cuda or KernelFacts()


def pageable_memcpy(f: Facts) -> list[Finding]:
    h2d = f.record.cuda.h2d
    pageable = h2d.pageable_bytes
    if not h2d.bytes or pageable < 0.5 * h2d.bytes:
        return []
    window = f.record.hot_ops.window_s
    copy_s = _kernels(f).pageable_h2d_s
    share = min(copy_s / window, 1.0) if window > 0 else f.share(f.totals.get("h2d", 0.0))
    if share < SYNC_MIN_SHARE:
        return []
    ld = f.train_loader()
    site = ld.site if ld else None
    evidence = (f"{pct(pageable / h2d.bytes)} of host-to-device bytes "
                f"({pageable / 2**20:.0f} MiB in {h2d.pageable_copies} copies) come "
                f"from pageable memory; pageable copies take {pct(share)} of the run.")
    fix = ("DataLoader(..., pin_memory=True) and batch.to(device, non_blocking=True)"
           + (f" (loader at {where(site)})" if site else "") + ".")
    return [make("pageable-memcpy", "Host-to-device copies from pageable memory", evidence,
                 fix, share, 2.0, location=loc(site), confidence="medium",
                 plan_change={"pin_memory": True})]


def fp32_on_tensor_cores(f: Facts) -> list[Finding]:
    c = f.record.cuda
    cap = c.capability if len(c.capability) >= 2 else (0, 0)
    kernels = _kernels(f)
    gemm, tc = kernels.gemm_s, kernels.gemm_tensor_core_s
    window = f.record.hot_ops.window_s
    cal = f.record.calibration.matmul
    if (cap[0] < 8 or c.allow_tf32_matmul or gemm <= 0 or tc > 0.5 * gemm
            or window <= 0 or cal is None):
        return []
    share = min((gemm - tc) / window, 1.0)
    factor = cal.tf32_factor
    if factor <= 1.05 or share < SYNC_MIN_SHARE:
        return []
    evidence = (f"fp32 GEMM kernels take {pct(share)} of the run on a {c.device} "
                f"(compute capability {cap[0]}.{cap[1]}) with TF32 off; a {cal.size}^2 "
                f"matmul is {factor:.1f}x faster in TF32 and {cal.bf16_factor:.1f}x "
                f"in bf16 on this GPU.")
    fix = ("torch.set_float32_matmul_precision('high') (TF32), or train under "
           "torch.autocast('cuda', dtype=torch.bfloat16).")
    return [make("fp32-on-tensor-cores", "Matmuls run in fp32 on tensor-core hardware",
                 evidence, fix, share, factor, confidence="high",
                 plan_change={"precision": "tf32"})]


def _util(f: Facts) -> float | None:
    u = f.record.cuda.utilization
    return u.mean if u.samples >= 3 else None


def gpu_idle(f: Facts) -> list[Finding]:
    util = _util(f)
    if util is None or util >= IDLE_MAX_UTIL or f.steps < MIN_STEPS:
        return []
    idle = 1.0 - util / 100.0
    host = {p: f.totals.get(p, 0.0) for p in ("data", "h2d", "other", "optimizer")}
    worst = max(host, key=host.get)
    evidence = (f"The GPU was busy {util:.0f}% of the steady run (NVML); the largest "
                f"host-side phase is {worst} ({pct(f.share(host[worst]))} of the run).")
    fixes = {"data": "feed it faster: DataLoader(num_workers=..., pin_memory=True, "
                     "persistent_workers=True)",
             "h2d": "pin memory and copy with non_blocking=True",
             "other": "cut per-step Python work: torch.compile(model) or CUDA graphs "
                      "(mode='reduce-overhead'), and avoid host syncs",
             "optimizer": "use a fused optimizer (e.g. torch.optim.AdamW(..., fused=True))"}
    return [make("gpu-idle", "The GPU is idle much of the time", evidence,
                 f"Keep the GPU busy: {fixes[worst]}.", idle, 2.0, confidence="low",
                 tag=worst, measured=[Measure("utilization", util, "%")])]


def memory_headroom(f: Facts) -> list[Finding]:
    c = f.record.cuda
    total = c.memory.total_bytes or c.total_memory_bytes
    peak = c.memory.max_allocated_bytes
    util = _util(f)
    if not total or not peak or peak > HEADROOM_MAX_USED * total or f.steps < MIN_STEPS:
        return []
    if util is None or util >= 90.0 or not f.samples_per_step:
        return []
    host = f.share(sum(f.totals.get(p, 0.0) for p in ("data", "h2d", "other", "io")))
    if host >= HOST_BOUND:  # the GPU waits for host work a larger batch would not remove
        return []
    grow = max(2, min(4, int(0.8 * total / max(peak, 1))))
    ld = f.train_loader()
    site = ld.site if ld else None
    idle = 1.0 - util / 100.0
    new = f.samples_per_step * grow
    evidence = (f"Peak GPU memory is {peak / 2**30:.1f} GiB of {total / 2**30:.0f} GiB "
                f"({pct(peak / total)}) while the GPU is busy {util:.0f}% of the run; the "
                f"batch ({f.samples_per_step}) could grow about {grow}x.")
    fix = (f"Use batch_size={new}" + (f" at {where(site)}" if site else "")
           + " and scale the learning rate; `perfpilot tune` checks time-to-accuracy.")
    return [make("memory-headroom", "GPU memory is mostly unused", evidence, fix, idle,
                 float(grow), location=loc(site), confidence="low",
                 plan_change={"batch_size": new})]
