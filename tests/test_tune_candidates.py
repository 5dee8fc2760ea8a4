"""Candidate generation per device type, from hand-made (faked) machines."""

from __future__ import annotations

import pytest
import torch

from perfpilot.devices import CpuInfo, GpuInfo, Machine
from perfpilot.plan import Plan
from perfpilot.tune.stages.candidates import (
    DeviceInfo,
    ModelTraits,
    device_infos,
    fit_to_device,
    hardware_candidates,
    info_for,
    loader_extras,
    model_traits,
    thread_ladder,
    worker_candidates,
)
from perfpilot.workload import Workload

CONV = ModelTraits(conv2d=True, fixed_shapes=True)
MLP = ModelTraits(conv2d=False, fixed_shapes=True)


def cpu(cores=8, features=("avx2",)):
    return CpuInfo(model="fake", arch="x86_64", logical_cores=cores, usable_cores=cores,
                   features=tuple(features))


def machine(*gpus, cores=8, features=("avx2",), cxx="g++", triton=True):
    return Machine(cpu=cpu(cores, features), gpus=tuple(gpus), torch_version="2.13.0",
                   cuda_runtime="12.8" if gpus else None, cxx_compiler=cxx, c_compiler="gcc",
                   triton=triton)


A100 = GpuInfo(index=0, name="A100", capability=(8, 0), memory_bytes=40 << 30)
V100 = GpuInfo(index=0, name="V100", capability=(7, 0), memory_bytes=16 << 30)


def cands(axis, plan, m, traits=CONV, default_threads=None):
    infos = device_infos(m, default_threads=default_threads or m.cpu.usable_cores)
    return hardware_candidates(axis, plan, infos, traits)


def tried(cs):
    return [c.label() for c in cs if c.skip is None]


def skipped(cs):
    return {c.label(): c.skip for c in cs if c.skip is not None}


# ---------------------------------------------------------------- device facts


def test_device_infos_from_a_faked_machine():
    infos = device_infos(machine(A100, cores=16))
    assert [i.device for i in infos] == ["cpu", "cuda:0"]
    assert all(i.cores == 16 for i in infos)
    assert info_for("cuda", infos).device == "cuda:0"
    with pytest.raises(ValueError, match="cuda:1"):
        info_for("cuda:1", infos)


def test_cpu_laptop_without_native_bf16():
    cs = cands("precision", Plan(), machine(features=("avx2",)))
    assert tried(cs) == []
    why = skipped(cs)
    assert "no native bf16" in why["precision=bf16"]
    assert "NVIDIA" in why["precision=tf32"] and "fp16" in why["precision=fp16"]


def test_cpu_with_amx_tries_bf16():
    cs = cands("precision", Plan(), machine(features=("avx512f", "amx_bf16")))
    assert tried(cs) == ["precision=bf16"]


def test_ampere_tries_tf32_bf16_fp16():
    cs = cands("precision", Plan(device="cuda:0"), machine(A100))
    assert tried(cs) == ["precision=tf32", "precision=bf16", "precision=fp16"]


def test_volta_has_fp16_only():
    cs = cands("precision", Plan(device="cuda:0"), machine(V100))
    assert tried(cs) == ["precision=fp16"]
    assert "8.0" in skipped(cs)["precision=tf32"] and "8.0" in skipped(cs)["precision=bf16"]


def test_fp16_on_a_non_cuda_device_is_skipped_even_if_supported():
    info = DeviceInfo("mps", {"fp32": None, "tf32": "no", "bf16": None, "fp16": None}, None, 8)
    cs = hardware_candidates("precision", Plan(device="mps"), [info], CONV)
    assert "GradScaler" in skipped(cs)["precision=fp16"]


def test_device_axis_offers_each_other_device_with_fitted_knobs():
    m = machine(A100)
    (c,) = cands("device", Plan(), m)
    assert c.changes == {"device": "cuda:0"}
    back = cands("device", Plan(device="cuda:0", precision="fp16", pin_memory=True,
                                cudnn_benchmark=True, compile="reduce-overhead"), m)
    assert back[0].changes == {"device": "cpu", "precision": "fp32", "cudnn_benchmark": False,
                               "pin_memory": False}
    assert cands("device", Plan(), machine()) == []


def test_fit_to_device_drops_compile_where_it_cannot_work():
    info = device_infos(machine(cxx=None))[0]
    assert fit_to_device(Plan(compile="default"), info)["compile"] == "off"


def test_channels_last_only_for_conv_models():
    m = machine()
    assert tried(cands("channels_last", Plan(), m, CONV)) == ["channels_last=True"]
    assert skipped(cands("channels_last", Plan(), m, MLP)) == {
        "channels_last=True": "the model has no 2-D convolutions"}


def test_cudnn_benchmark_needs_cuda_conv_and_fixed_shapes():
    m = machine(A100)
    cuda = Plan(device="cuda:0")
    assert tried(cands("cudnn_benchmark", cuda, m, CONV)) == ["cudnn_benchmark=True"]
    assert "vary" in skipped(cands("cudnn_benchmark", cuda, m, ModelTraits(True, False)))[
        "cudnn_benchmark=True"]
    assert "CUDA" in skipped(cands("cudnn_benchmark", Plan(), m, CONV))["cudnn_benchmark=True"]


def test_cpu_threads_ladder_most_first_without_the_incumbent():
    # PyTorch's default is 4 here: cpu_threads=4 would be the same plan as None.
    assert tried(cands("cpu_threads", Plan(), machine(cores=4))) == [
        "cpu_threads=3", "cpu_threads=2", "cpu_threads=1"]
    # A quota of 4 cores but PyTorch defaulting to 16 threads: 4 is a real candidate.
    assert tried(cands("cpu_threads", Plan(), machine(cores=4), default_threads=16)) == [
        "cpu_threads=4", "cpu_threads=3", "cpu_threads=2", "cpu_threads=1"]
    assert tried(cands("cpu_threads", Plan(cpu_threads=2), machine(cores=2))) == ["cpu_threads=1"]
    # Two loader workers on 8 cores leave 4 for intra-op threads.
    assert tried(cands("cpu_threads", Plan(num_workers=2, cpu_threads=1), machine(cores=8))) == [
        "cpu_threads=4", "cpu_threads=3", "cpu_threads=2"]
    assert tried(cands("cpu_threads", Plan(device="cuda:0"), machine(A100))) == []
    assert thread_ladder(64) == [1, 2, 4, 8, 16, 32, 64]
    assert thread_ladder(12) == [1, 2, 4, 8, 12]
    assert thread_ladder(1) == [1]


def test_interop_threads_are_listed_with_the_reason_they_are_not_measured():
    cs = cands("interop_threads", Plan(), machine(cores=4))
    assert [c.label() for c in cs] == ["interop_threads=1", "interop_threads=4"]
    assert all("once per process" in c.skip for c in cs)


def test_compile_modes_per_device():
    cpu_cs = cands("compile", Plan(), machine())
    assert tried(cpu_cs) == ["compile=default", "compile=max-autotune"]
    assert "CUDA graphs" in skipped(cpu_cs)["compile=reduce-overhead"]
    gpu_cs = cands("compile", Plan(device="cuda:0"), machine(A100))
    assert tried(gpu_cs) == ["compile=default", "compile=reduce-overhead", "compile=max-autotune"]
    no_triton = cands("compile", Plan(device="cuda:0"), machine(A100, triton=False))
    assert tried(no_triton) == [] and all("Triton" in r for r in skipped(no_triton).values())
    no_cxx = cands("compile", Plan(), machine(cxx=None))
    assert tried(no_cxx) == [] and all("C++ compiler" in r for r in skipped(no_cxx).values())


def test_unknown_axis():
    with pytest.raises(ValueError, match="unknown hardware axis"):
        cands("warp", Plan(), machine())


# ---------------------------------------------------------------- loader


def test_worker_candidates_keep_workers_times_threads_within_cores():
    cs = worker_candidates(Plan(), cores=4)
    assert [c.changes for c in cs] == [
        {"num_workers": 1}, {"num_workers": 2, "cpu_threads": 2},
        {"num_workers": 3, "cpu_threads": 1}, {"num_workers": 4, "cpu_threads": 1}]
    for c in cs:
        p = c.apply(Plan())
        assert p.num_workers * (p.cpu_threads or 4) <= 4


def test_oversubscribed_incumbent_gets_a_fitted_candidate_first():
    cs = worker_candidates(Plan(num_workers=8, cpu_threads=2), cores=2)
    assert cs[0].changes == {"num_workers": 2, "cpu_threads": 1}


def test_loader_extras_per_device():
    m_cpu, m_gpu = device_infos(machine())[0], device_infos(machine(A100))[1]
    none = {c.label(): c.skip for c in loader_extras(Plan(), m_cpu)}
    assert "num_workers > 0" in none["persistent_workers=True"]
    assert "num_workers > 0" in none["prefetch_factor=4"]
    assert "CUDA" in none["pin_memory=True"]
    two = loader_extras(Plan(device="cuda:0", num_workers=2), m_gpu)
    assert tried(two) == ["persistent_workers=True", "prefetch_factor=4", "pin_memory=True"]


# ---------------------------------------------------------------- model traits


class _Seq(torch.utils.data.Dataset):
    def __init__(self, lengths):
        self.lengths = lengths

    def __len__(self):
        return len(self.lengths)

    def __getitem__(self, i):
        return torch.zeros(self.lengths[i]), torch.tensor(0)


def _workload(model, lengths):
    return Workload(name="t", model=model, train_data=lambda: _Seq(lengths),
                    loss=lambda m, b: m(b[0]).sum(), optimizer=torch.optim.SGD)


def test_model_traits_conv_and_shapes():
    conv = _workload(lambda: torch.nn.Conv2d(1, 2, 3), [4, 4, 4, 4])
    assert model_traits(conv) == ModelTraits(conv2d=True, fixed_shapes=True)
    varying = _workload(lambda: torch.nn.Linear(4, 1), [4, 5, 6, 7])
    assert model_traits(varying) == ModelTraits(conv2d=False, fixed_shapes=False)
