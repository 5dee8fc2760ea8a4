"""CUDA rules on synthetic records (no GPU needed), and how symptoms defer to causes."""

from __future__ import annotations

import pytest
from test_diagnose_rules import SCRIPT, changed, hot, only, record

from perfpilot.diagnose import diagnose, facts_of
from perfpilot.diagnose.cuda import (
    fp32_on_tensor_cores,
    gpu_idle,
    host_device_sync,
    memory_headroom,
    pageable_memcpy,
)
from perfpilot.record import amdahl

GiB = 2**30


def cuda(**over):
    base = {"device": "NVIDIA H100", "capability": [9, 0], "total_memory_bytes": 80 * GiB,
            "allow_tf32_matmul": False, "syncs": [], "h2d": {"bytes": 0},
            "utilization": {"samples": 20, "mean": 95.0},
            "memory": {"max_allocated_bytes": 60 * GiB, "total_bytes": 80 * GiB}}
    base.update(over)
    return base


def test_host_device_sync_from_sync_sites_and_their_time():
    syncs = [{"site": [SCRIPT, 40, "main"], "steady": True, "count": 100},
             {"site": [SCRIPT, 41, "main"], "steady": False, "count": 5}]
    rec = record(cuda=cuda(syncs=syncs), hot_lines=[hot(40, "main", 0.3, 0.0)])
    f = only(host_device_sync(facts_of(rec)), "host-device-sync")
    assert f.estimated_speedup == pytest.approx(amdahl(0.3, 2), rel=1e-3)
    assert "2.0 host-device synchronizations per step" in f.evidence
    assert f.location["line"] == 40
    rec = changed(rec, hot_lines=[hot(40, "main", 0.005, 0.0)])  # syncs that cost nothing
    assert host_device_sync(facts_of(rec)) == []


def test_pageable_memcpy_from_copy_bytes_and_window_time():
    h2d = {"bytes": 100 * 2**20, "pageable_bytes": 90 * 2**20, "pageable_copies": 50}
    ops = {"window_s": 1.0, "cuda": {"pageable_h2d_s": 0.25}}
    f = only(pageable_memcpy(facts_of(record(cuda=cuda(h2d=h2d), hot_ops=ops))),
             "pageable-memcpy")
    assert f.time_share == pytest.approx(0.25)
    assert "pin_memory=True" in f.fix and f.plan_change == {"pin_memory": True}
    h2d["pageable_bytes"] = 10 * 2**20  # mostly pinned already
    assert pageable_memcpy(facts_of(record(cuda=cuda(h2d=h2d), hot_ops=ops))) == []


def test_fp32_on_tensor_cores_uses_the_measured_tf32_factor():
    ops = {"window_s": 1.0, "cuda": {"gemm_s": 0.6, "gemm_tensor_core_s": 0.0}}
    cal = {"matmul": {"size": 4096, "tf32_factor": 3.0, "bf16_factor": 6.0}}
    rec = record(cuda=cuda(), hot_ops=ops, calibration=cal)
    f = only(fp32_on_tensor_cores(facts_of(rec)), "fp32-on-tensor-cores")
    assert f.estimated_speedup == pytest.approx(amdahl(0.6, 3.0), rel=1e-3)
    assert f.plan_change == {"precision": "tf32"}
    old_gpu = record(cuda=cuda(capability=[7, 0]), hot_ops=ops, calibration=cal)
    assert fp32_on_tensor_cores(facts_of(old_gpu)) == []
    tf32_on = record(cuda=cuda(allow_tf32_matmul=True), hot_ops=ops, calibration=cal)
    assert fp32_on_tensor_cores(facts_of(tf32_on)) == []


def test_gpu_idle_points_at_the_biggest_host_phase():
    rec = record({"other": 0.05}, cuda=cuda(utilization={"samples": 10, "mean": 30.0}))
    f = only(gpu_idle(facts_of(rec)), "gpu-idle")
    assert f.time_share == pytest.approx(0.7)
    assert f.tag == "other" and "torch.compile" in f.fix
    assert f.measured_value("utilization") == 30.0
    busy = record(cuda=cuda(utilization={"samples": 10, "mean": 85.0}))
    assert gpu_idle(facts_of(busy)) == []


def test_memory_headroom_when_the_step_is_not_host_bound():
    mem = {"max_allocated_bytes": 2 * GiB, "total_bytes": 80 * GiB}
    rec = record(cuda=cuda(memory=mem, utilization={"samples": 10, "mean": 40.0}))
    f = only(memory_headroom(facts_of(rec)), "memory-headroom")
    assert f.plan_change == {"batch_size": 128}
    assert f.estimated_speedup == pytest.approx(amdahl(0.6, 4), rel=1e-3)
    host_bound = record({"other": 0.05}, cuda=cuda(memory=mem,
                                                    utilization={"samples": 10, "mean": 40.0}))
    assert memory_headroom(facts_of(host_bound)) == []


def test_cpu_records_raise_no_cuda_findings():
    found = diagnose(record({"data": 0.001}), lint=False)
    assert not {f.id for f in found} & {"host-device-sync", "pageable-memcpy", "gpu-idle",
                                          "fp32-on-tensor-cores", "memory-headroom"}


def test_gpu_idle_defers_to_its_cause():
    rec = record({"data": 0.06}, cuda=cuda(utilization={"samples": 10, "mean": 25.0}))
    ids = [f.id for f in diagnose(rec, lint=False)]
    assert "dataloader-bound" in ids and "gpu-idle" not in ids


def test_memory_headroom_replaces_small_batch_on_a_roomy_gpu():
    mem = {"max_allocated_bytes": 1 * GiB, "total_bytes": 80 * GiB}
    rec = record({"forward": 0.002, "backward": 0.002, "optimizer": 0.004},
                 cuda=cuda(memory=mem, utilization={"samples": 10, "mean": 30.0}))
    rec = changed(rec, step_phases={"samples_per_step": 8})
    ids = [f.id for f in diagnose(rec, lint=False)]
    assert ids[0] == "memory-headroom" and "small-batch" not in ids


def test_nvml_handle_follows_cuda_visible_devices():
    from perfpilot.probes.cuda import nvml_handle

    class NV:
        def nvmlDeviceGetHandleByIndex(self, i):
            return ("index", i)

        def nvmlDeviceGetHandleByUUID(self, u):
            return ("uuid", u)

    nv = NV()
    assert nvml_handle(nv, 0, "3,1") == ("index", 3)
    assert nvml_handle(nv, 1, "3,1") == ("index", 1)
    assert nvml_handle(nv, 0, "GPU-abc") == ("uuid", "GPU-abc")
    assert nvml_handle(nv, 0, "") == ("index", 0)
