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
                       halved, with the fix aimed at the measured biggest host phase.
``memory-headroom``    peak allocated memory against device memory; with the GPU not
                       saturated and the step not waiting on host work (data, copies,
                       your code under 30%), a larger batch is the lever; gain: the idle
                       share sped up by how many times the batch can grow (at most 4).
"""

from __future__ import annotations

from perfpilot.diagnose.common import MIN_STEPS, Facts, loc, make, pct, where
from perfpilot.record import Finding

SYNC_MIN_SHARE = 0.02
IDLE_MAX_UTIL = 60.0
HEADROOM_MAX_USED = 0.4
HOST_BOUND = 0.3


def _cuda(f: Facts) -> dict:
    return f.record.cuda


def host_device_sync(f: Facts) -> list[Finding]:
    c = _cuda(f)
    syncs = [s for s in c.get("syncs", []) if s.get("steady") and s.get("site")]
    if not syncs or f.steps < MIN_STEPS:
        return []
    hot = {(h.file, h.line): h for h in f.record.hot_lines}
    total = sum(s["count"] for s in syncs)
    share = sum(hot[(s["site"][0], s["site"][1])].self_share for s in syncs
                if (s["site"][0], s["site"][1]) in hot)
    if share < SYNC_MIN_SHARE:
        return []
    top = max(syncs, key=lambda s: s["count"])
    evidence = (f"{total / f.steps:.1f} host-device synchronizations per step "
                f"(most at {where(top['site'])}, {top['count']} times); the host waits "
                f"there for {pct(share)} of the run.")
    fix = (f"Keep values on the GPU at {where(top['site'])}: accumulate losses/metrics in "
           f"tensors and call .item()/.cpu() once every N steps; avoid data-dependent "
           f"shapes (nonzero, boolean masks) in the step.")
    return [make("host-device-sync", "The host keeps waiting for the GPU", evidence, fix,
                 share, 2.0, location=loc(top["site"]), confidence="medium")]


def pageable_memcpy(f: Facts) -> list[Finding]:
    c = _cuda(f)
    h2d = c.get("h2d") or {}
    pageable = h2d.get("pageable_bytes", 0)
    if not h2d.get("bytes") or pageable < 0.5 * h2d["bytes"]:
        return []
    ops = f.record.hot_ops
    facts = ops.get("cuda") or {}
    window = float(ops.get("window_s") or 0.0)
    copy_s = float(facts.get("pageable_h2d_s") or 0.0)
    share = min(copy_s / window, 1.0) if window > 0 else f.share(f.totals.get("h2d", 0.0))
    if share < SYNC_MIN_SHARE:
        return []
    ld = f.train_loader() or {}
    evidence = (f"{pct(pageable / h2d['bytes'])} of host-to-device bytes "
                f"({pageable / 2**20:.0f} MiB in {h2d.get('pageable_copies', 0)} copies) come "
                f"from pageable memory; pageable copies take {pct(share)} of the run.")
    fix = ("DataLoader(..., pin_memory=True) and batch.to(device, non_blocking=True)"
           + (f" (loader at {where(ld.get('site'))})" if ld.get("site") else "") + ".")
    return [make("pageable-memcpy", "Host-to-device copies from pageable memory", evidence,
                 fix, share, 2.0, location=loc(ld.get("site")), confidence="medium",
                 plan_change={"pin_memory": True})]


def fp32_on_tensor_cores(f: Facts) -> list[Finding]:
    c = _cuda(f)
    cap = c.get("capability") or [0, 0]
    facts = f.record.hot_ops.get("cuda") or {}
    gemm, tc = float(facts.get("gemm_s") or 0.0), float(facts.get("gemm_tensor_core_s") or 0.0)
    window = float(f.record.hot_ops.get("window_s") or 0.0)
    cal = f.record.calibration.get("matmul") or {}
    if (cap[0] < 8 or c.get("allow_tf32_matmul") or gemm <= 0 or tc > 0.5 * gemm
            or window <= 0 or not cal):
        return []
    share = min((gemm - tc) / window, 1.0)
    factor = float(cal.get("tf32_factor", 1.0))
    if factor <= 1.05 or share < SYNC_MIN_SHARE:
        return []
    evidence = (f"fp32 GEMM kernels take {pct(share)} of the run on a {c.get('device')} "
                f"(compute capability {cap[0]}.{cap[1]}) with TF32 off; a {cal.get('size')}^2 "
                f"matmul is {factor:.1f}x faster in TF32 and {cal.get('bf16_factor', 0):.1f}x "
                f"in bf16 on this GPU.")
    fix = ("torch.set_float32_matmul_precision('high') (TF32), or train under "
           "torch.autocast('cuda', dtype=torch.bfloat16).")
    return [make("fp32-on-tensor-cores", "Matmuls run in fp32 on tensor-core hardware",
                 evidence, fix, share, factor, confidence="high",
                 plan_change={"precision": "tf32"})]


def _util(f: Facts) -> float | None:
    u = (_cuda(f).get("utilization") or {})
    return u.get("mean") if u.get("samples", 0) >= 3 else None


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
                 utilization=util, host_phase=worst)]


def memory_headroom(f: Facts) -> list[Finding]:
    c = _cuda(f)
    mem = c.get("memory") or {}
    total = mem.get("total_bytes") or c.get("total_memory_bytes")
    peak = mem.get("max_allocated_bytes")
    util = _util(f)
    if not total or not peak or peak > HEADROOM_MAX_USED * total or f.steps < MIN_STEPS:
        return []
    if util is None or util >= 90.0 or not f.samples_per_step:
        return []
    host = f.share(sum(f.totals.get(p, 0.0) for p in ("data", "h2d", "other", "io")))
    if host >= HOST_BOUND:  # the GPU waits for host work a larger batch would not remove
        return []
    grow = max(2, min(4, int(0.8 * total / max(peak, 1))))
    ld = f.train_loader() or {}
    idle = 1.0 - util / 100.0
    new = f.samples_per_step * grow
    evidence = (f"Peak GPU memory is {peak / 2**30:.1f} GiB of {total / 2**30:.0f} GiB "
                f"({pct(peak / total)}) while the GPU is busy {util:.0f}% of the run; the "
                f"batch ({f.samples_per_step}) could grow about {grow}x.")
    fix = (f"Use batch_size={new}" + (f" at {where(ld.get('site'))}" if ld.get("site") else "")
           + " and scale the learning rate; `perfpilot tune` checks time-to-accuracy.")
    return [make("memory-headroom", "GPU memory is mostly unused", evidence, fix, idle,
                 float(grow), location=loc(ld.get("site")), confidence="low",
                 plan_change={"batch_size": new})]
