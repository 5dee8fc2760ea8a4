"""The profiler window: event aggregation (self vs total time), CUDA facts, quiet stderr."""

from __future__ import annotations

import os

import pytest

from perfpilot.probes.opwindow import OpWindow, _QuietFd2, summarize_events
from perfpilot.probes.steps import StepTracker


class Ev:
    def __init__(self, name: str, start: int, dur: int, device: str = "CPU",
                 thread: int = 1) -> None:
        self._n, self._s, self._d, self._dev, self._th = name, start, dur, device, thread

    def name(self) -> str:
        return self._n

    def start_ns(self) -> int:
        return self._s

    def duration_ns(self) -> int:
        return self._d

    def device_type(self) -> str:
        return f"DeviceType.{self._dev}"

    def start_thread_id(self) -> int:
        return self._th


def test_self_time_excludes_children_on_the_same_thread():
    events = [Ev("aten::linear", 0, 100), Ev("aten::addmm", 10, 80), Ev("aten::t", 5, 4),
              Ev("aten::relu", 200, 30), Ev("aten::addmm", 300, 50, thread=2)]
    out = summarize_events(events, steps=2)
    ops = {o["name"]: o for o in out["ops"]}
    assert ops["aten::linear"]["total_s"] == pytest.approx(100e-9)
    assert ops["aten::linear"]["self_s"] == pytest.approx(16e-9)
    assert ops["aten::addmm"]["count"] == 2
    assert ops["aten::addmm"]["self_s"] == pytest.approx(130e-9)
    assert ops["aten::addmm"]["per_step"] == 1.0
    assert out["aten_ops_per_step"] == 2.5
    assert out["ops"][0]["name"] == "aten::addmm"  # sorted by self time


def test_cuda_facts_from_kernel_names():
    events = [Ev("Memcpy HtoD (Pageable -> Device)", 0, 400, "CUDA"),
              Ev("ampere_sgemm_128x64_nn", 500, 1000, "CUDA"),
              Ev("sm80_xmma_gemm_tf32f32_tf32f32", 2000, 200, "CUDA"),
              Ev("void elementwise_kernel", 2500, 100, "CUDA")]
    facts = summarize_events(events, steps=1)["cuda"]
    assert facts["pageable_h2d_s"] == pytest.approx(400e-9)
    assert facts["gemm_s"] == pytest.approx(1200e-9)
    assert facts["gemm_tensor_core_s"] == pytest.approx(200e-9)
    assert facts["kernel_s"] == pytest.approx(1300e-9)


def test_window_opens_after_warmup_and_closes_after_its_steps():
    pytest.importorskip("torch")
    tracker = StepTracker()
    w = OpWindow(tracker, steps=2, after_steady=1, min_steady_s=0.0)
    w.on_boundary("optimizer")
    assert w.state == "waiting"  # no warm-up end yet
    tracker.warmup_end = tracker.clock()
    w.on_boundary("data")  # a lesser boundary kind is counted until an optimizer shows up
    w.on_boundary("optimizer")
    assert w.kind == "optimizer" and w.state == "waiting"
    w.on_boundary("optimizer")
    assert w.state == "open" and tracker.profiling
    w.on_boundary("data")
    w.on_boundary("optimizer")
    w.on_boundary("optimizer")
    assert w.state == "done" and not tracker.profiling and w.window_steps == 2
    assert w.section()["state"] == "done"


def test_quiet_fd2_drops_only_kineto_noise(capfd):
    with _QuietFd2():
        os.write(2, b"USDT:2026-11-28 SyncActivityProfilerHandler.cpp:52] profiler_start\n")
        os.write(2, b"a real warning\n")
    err = capfd.readouterr().err
    assert "a real warning" in err and "profiler_start" not in err
