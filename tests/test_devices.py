"""Tests of perfpilot.devices, perfpilot.host and `perfpilot devices`, with faked
machines (an A100, a V100, a Pascal GPU, no GPU, MPS, XLA) and faked cgroup files."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from perfpilot import devices, host
from perfpilot.commands import devices as devices_cmd
from perfpilot.devices import (
    CpuInfo,
    GpuInfo,
    Machine,
    XlaInfo,
    check_plan,
    compile_support,
    device_options,
    device_support,
    plan_notes,
    precision_support,
)
from perfpilot.errors import PlanError
from perfpilot.plan import Plan

GIB = 1024**3
XEON = CpuInfo(model="Fake Xeon", arch="x86_64", logical_cores=8, physical_cores=4,
               usable_cores=4, affinity_cores=8, quota_cores=4.0,
               features=("avx2", "avx512f", "avx512_bf16", "amx_bf16"),
               torch_capability="AVX512", memory_bytes=64 * GIB)
OLD_CPU = CpuInfo(model="Old CPU", arch="x86_64", logical_cores=4, usable_cores=4,
                  features=("avx", "avx2"))
M1 = CpuInfo(model="Apple M1", arch="arm64", logical_cores=8, usable_cores=8,
             features=("neon",))
A100 = GpuInfo(index=0, name="NVIDIA A100-SXM4-40GB", capability=(8, 0),
               memory_bytes=40 * GIB, multiprocessors=108, memory_used_bytes=GIB,
               utilization_pct=3.0)
V100 = GpuInfo(index=0, name="Tesla V100-SXM2-16GB", capability=(7, 0), memory_bytes=16 * GIB)
P100 = GpuInfo(index=0, name="Tesla P100", capability=(6, 0), memory_bytes=16 * GIB)
TOOLS = dict(cxx_compiler="/usr/bin/g++", c_compiler="/usr/bin/gcc")


def machine(cpu: CpuInfo = XEON, gpus: tuple[GpuInfo, ...] = (), **kw) -> Machine:
    cuda = "12.4" if gpus else None
    return Machine(cpu=cpu, gpus=gpus, torch_version="2.13.0+cu124" if gpus else "2.13.0+cpu",
                   cuda_runtime=cuda, python="3.11.7", os="Linux 6.1",
                   **{**TOOLS, "triton": bool(gpus), **kw})


CPU_ONLY = machine()
ON_A100 = machine(gpus=(A100,), nvidia_driver="550.54")
ON_V100 = machine(gpus=(V100,))
ON_P100 = machine(gpus=(P100,))
ON_MAC = machine(cpu=M1, mps=True)
ON_TPU = machine(xla=XlaInfo(device_type="TPU", devices=4, version="2.5"))


# ---------------------------------------------------------------- capabilities


def test_gpu_flags_follow_compute_capability():
    assert (A100.tensor_cores, A100.bf16, A100.tf32) == (True, True, True)
    assert (V100.tensor_cores, V100.bf16, V100.tf32) == (True, False, False)
    assert (P100.tensor_cores, P100.bf16) == (False, False)
    assert A100.device == "cuda:0"


def test_cpu_native_bf16_and_simd_names():
    assert XEON.native_bf16 and not OLD_CPU.native_bf16
    assert XEON.simd == ("AVX2", "AVX-512", "AVX512_BF16", "AMX_BF16")
    assert M1.simd == ("NEON",)


def test_device_options():
    assert device_options(CPU_ONLY) == ["cpu"]
    two = machine(gpus=(A100, GpuInfo(1, "NVIDIA A100", (8, 0), 40 * GIB)))
    assert device_options(two) == ["cpu", "cuda:0", "cuda:1"]
    assert device_options(ON_MAC) == ["cpu", "mps"]
    assert device_options(ON_TPU) == ["cpu", "xla"]


def test_precisions_on_a100_are_all_supported():
    assert precision_support("cuda:0", ON_A100) == dict.fromkeys(("fp32", "tf32", "bf16",
                                                                   "fp16"))
    assert precision_support("cuda", ON_A100)["bf16"] is None


def test_precisions_on_v100_explain_compute_capability():
    s = precision_support("cuda", ON_V100)
    assert s["fp32"] is None and s["fp16"] is None
    assert "8.0" in s["tf32"] and "7.0" in s["tf32"]
    assert "8.0" in s["bf16"] and "emulate" in s["bf16"]


def test_precisions_on_cpu_and_mps_and_xla():
    cpu = precision_support("cpu", CPU_ONLY)
    assert cpu["fp32"] is None and cpu["bf16"] is None
    assert "CUDA and MPS" in cpu["fp16"] and "NVIDIA" in cpu["tf32"]
    assert precision_support("cpu", machine(cpu=OLD_CPU))["bf16"] is None  # allowed, slow
    mps = precision_support("mps", ON_MAC)
    assert mps["fp16"] is None and mps["tf32"] is not None
    xla = precision_support("xla", ON_TPU)
    assert xla["bf16"] is None and "XLA" in xla["fp16"]


def test_precisions_of_a_missing_device_say_so():
    s = precision_support("cuda:1", ON_A100)
    assert all(r and "cuda:1 is not available" in r for r in s.values())


@pytest.mark.parametrize("device, m, match", [
    ("cuda", CPU_ONLY, "no CUDA GPU found; torch 2.13.0\\+cpu is a CPU-only build"),
    ("cuda:3", ON_A100, "has 1 CUDA GPU: cuda:0"),
    ("mps", CPU_ONLY, "MPS is not available"),
    ("xla", CPU_ONLY, "torch_xla"),
    ("tpu", CPU_ONLY, "not a device name"),
    ("cpu:1", CPU_ONLY, "only one cpu"),
])
def test_device_support_reasons(device, m, match):
    reason = device_support(device, m)
    assert reason is not None
    assert re.search(match, reason), reason


def test_compile_support():
    assert compile_support("cpu", CPU_ONLY) is None
    assert compile_support("cuda:0", ON_A100) is None
    assert "C++ compiler" in compile_support("cpu", machine(cxx_compiler=None))
    assert "Triton" in compile_support("cuda", machine(gpus=(A100,), triton=False))
    assert "7.0" in compile_support("cuda", ON_P100)
    assert "C compiler" in compile_support("cuda", machine(gpus=(A100,), c_compiler=None))
    issue = machine(compile_issue="Python 3.15+ not yet supported for torch.compile")
    assert "3.15" in compile_support("cpu", issue)
    assert "XLA" in compile_support("xla", ON_TPU)


# ---------------------------------------------------------------- check_plan


@pytest.mark.parametrize("plan, m, match", [
    (Plan(device="cuda"), CPU_ONLY, r"plan key 'device': 'cuda' is not available \(no CUDA"),
    (Plan(device="cuda:3"), ON_A100, r"plan key 'device': 'cuda:3' .*1 CUDA GPU: cuda:0"),
    (Plan(device="mps"), CPU_ONLY, r"plan key 'device': 'mps' is not available"),
    (Plan(device="xla"), ON_A100, r"plan key 'device': 'xla' is not available"),
    (Plan(precision="fp16"), CPU_ONLY,
     r"plan key 'precision': 'fp16' is not available on cpu \(fp16 is offered on CUDA"),
    (Plan(precision="tf32"), CPU_ONLY, r"plan key 'precision': 'tf32' .* on cpu"),
    (Plan(device="cuda", precision="tf32"), ON_V100, r"'tf32' .* on cuda .*8\.0.*7\.0"),
    (Plan(device="cuda", precision="bf16"), ON_V100, r"plan key 'precision': 'bf16'"),
    (Plan(compile="default"), machine(cxx_compiler=None),
     r"plan key 'compile': 'default' is not available on cpu \(.*C\+\+ compiler"),
    (Plan(device="cuda", compile="max-autotune"), ON_P100, r"plan key 'compile'.*7\.0"),
])
def test_check_plan_rejects_with_key_value_and_reason(plan, m, match):
    with pytest.raises(PlanError, match=match):
        check_plan(plan, m)


@pytest.mark.parametrize("plan, m", [
    (Plan(device="cuda", precision="bf16", compile="max-autotune", channels_last=True),
     ON_A100),
    (Plan(device="cuda:0", precision="fp16", cudnn_benchmark=True, pin_memory=True), ON_V100),
    (Plan(precision="bf16", compile="default"), CPU_ONLY),
    (Plan(precision="bf16"), machine(cpu=OLD_CPU)),
    (Plan(device="mps", precision="fp16"), ON_MAC),
    (Plan(device="xla", precision="bf16"), ON_TPU),
    (Plan(pin_memory=True, cudnn_benchmark=True, cpu_threads=64), CPU_ONLY),
    (Plan(compile="off"), machine(cxx_compiler=None)),  # compile off: no compiler needed
])
def test_check_plan_accepts_what_the_machine_can_run(plan, m):
    check_plan(plan, m)


def test_plan_notes_explain_harmless_settings():
    notes = plan_notes(Plan(pin_memory=True, cudnn_benchmark=True, cpu_threads=16,
                            compile="reduce-overhead"), CPU_ONLY)
    text = "\n".join(notes)
    assert "pin_memory has no effect" in text and "cudnn_benchmark" in text
    assert "cpu_threads=16 exceeds the 4 cores" in text and "CUDA graphs" in text
    assert any("emulated" in n for n in plan_notes(Plan(precision="bf16"),
                                                   machine(cpu=OLD_CPU)))
    assert plan_notes(Plan(precision="bf16"), CPU_ONLY) == []  # native bf16: no note
    assert any("tensor cores" in n for n in plan_notes(Plan(device="cuda", precision="fp16"),
                                                       ON_P100))
    assert plan_notes(Plan(device="cuda", precision="bf16", pin_memory=True), ON_A100) == []


# ---------------------------------------------------------------- Machine values


@pytest.mark.parametrize("m", [CPU_ONLY, ON_A100, ON_MAC, ON_TPU])
def test_machine_json_round_trip(m):
    d = json.loads(json.dumps(m.to_dict()))
    assert Machine.from_dict(d) == m
    assert d["devices"] == device_options(m)
    assert set(d["support"]) == set(d["devices"])


def test_machine_dict_has_derived_flags():
    d = ON_A100.to_dict()
    gpu = d["gpus"][0]
    assert (gpu["device"], gpu["tensor_cores"], gpu["bf16"], gpu["tf32"]) == (
        "cuda:0", True, True, True)
    assert gpu["capability"] == [8, 0] and d["cpu"]["native_bf16"] is True
    assert d["support"]["cuda:0"]["precision"]["tf32"] is None


def test_machine_is_frozen():
    with pytest.raises(AttributeError):
        CPU_ONLY.mps = True  # type: ignore[misc]


# ---------------------------------------------------------------- cgroups and cores


@pytest.mark.parametrize("text, cores", [
    ("200000 100000\n", 2.0), ("150000 100000", 1.5), ("max 100000\n", None),
    ("garbage", None), ("", None), ("0 100000", None),
])
def test_parse_cpu_max(text, cores):
    assert host.parse_cpu_max(text) == cores


def test_parse_cfs():
    assert host.parse_cfs("50000\n", "100000\n") == 0.5
    assert host.parse_cfs("-1\n", "100000\n") is None
    assert host.parse_cfs("x", "100000") is None


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_takes_the_tightest_ancestor(tmp_path):
    root = tmp_path / "cgroup"
    _write(root / "cpu.max", "max 100000\n")
    _write(root / "user.slice" / "cpu.max", "400000 100000\n")
    _write(root / "user.slice" / "job" / "cpu.max", "150000 100000\n")
    proc = tmp_path / "proc_cgroup"
    proc.write_text("0::/user.slice/job\n")
    assert host.cgroup_cpu_limit(root=root, proc_cgroup=proc) == 1.5


def test_cgroup_v1_in_a_container_reads_the_mount_root(tmp_path):
    root = tmp_path / "cgroup"
    _write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "300000\n")
    _write(root / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    proc = tmp_path / "proc_cgroup"  # the host path does not exist inside the container
    proc.write_text("12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n")
    assert host.cgroup_cpu_limit(root=root, proc_cgroup=proc) == 3.0


def test_cgroup_unlimited_or_missing_is_none(tmp_path):
    root = tmp_path / "cgroup"
    _write(root / "cpu" / "cpu.cfs_quota_us", "-1\n")
    _write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    proc = tmp_path / "proc_cgroup"
    proc.write_text("3:cpu:/\n")
    assert host.cgroup_cpu_limit(root=root, proc_cgroup=proc) is None
    assert host.cgroup_cpu_limit(root=tmp_path / "none", proc_cgroup=proc) is None


def test_cgroup_without_proc_file_looks_at_the_root(tmp_path):
    root = tmp_path / "cgroup"
    _write(root / "cpu.max", "250000 100000\n")
    assert host.cgroup_cpu_limit(root=root, proc_cgroup=tmp_path / "missing") == 2.5


@pytest.mark.parametrize("quota, affinity, expected", [
    ("250000 100000", 8, 2), ("50000 100000", 8, 1), ("max 100000", 8, 8),
    ("800000 100000", 2, 2),
])
def test_usable_cores_caps_affinity_by_quota(tmp_path, monkeypatch, quota, affinity, expected):
    _write(tmp_path / "cpu.max", quota)
    proc = tmp_path / "proc_cgroup"
    proc.write_text("0::/\n")
    monkeypatch.setattr(host, "affinity_cores", lambda: affinity)
    assert host.usable_cores(root=tmp_path, proc_cgroup=proc) == expected


def _fake_torch(tmp_path: Path, body: str) -> Path:
    _write(tmp_path / "torch" / "_dynamo" / "eval_frame.py",
           "import sys\n\nX = 1\n\n\n" + body + "\n\ndef other():\n    pass\n")
    return tmp_path / "torch"


def test_compile_issue_runs_torchs_own_check_without_importing_dynamo(tmp_path):
    refuse = _fake_torch(tmp_path, "def check_if_dynamo_supported():\n"
                                   "    if sys.version_info >= (3, 0):\n"
                                   "        raise RuntimeError('Python 3.0+ not yet supported')")
    assert host.compile_issue(refuse) == "Python 3.0+ not yet supported"
    fine = _fake_torch(tmp_path / "b", "def check_if_dynamo_supported():\n    return None")
    assert host.compile_issue(fine) is None


def test_compile_issue_falls_back_to_torch_when_the_source_is_unusual(tmp_path, monkeypatch):
    odd = _fake_torch(tmp_path, "def check_if_dynamo_supported():\n    helper()")  # NameError
    calls = []
    fake = type(sys)("torch._dynamo.eval_frame")
    fake.check_if_dynamo_supported = lambda: calls.append(1)
    monkeypatch.setitem(sys.modules, "torch._dynamo.eval_frame", fake)
    assert host.compile_issue(odd) is None and calls == [1]
    missing = tmp_path / "nothing"
    assert host.compile_issue(missing) is None and calls == [1, 1]


def test_parse_cpu_features_x86_and_arm():
    x86 = "processor : 0\nmodel name : Fake\nflags : fpu sse4_2 avx avx2 amx_bf16 amx_tile\n"
    assert host.parse_cpu_features(x86, "x86_64") == ("sse4_2", "avx", "avx2",
                                                          "amx_tile", "amx_bf16")
    arm = "processor : 0\nFeatures : fp asimd asimdhp sve bf16 i8mm\n"
    feats = host.parse_cpu_features(arm, "aarch64")
    assert {"neon", "sve", "bf16", "i8mm"} <= set(feats)
    assert CpuInfo("arm", "aarch64", 4, features=feats).native_bf16
    assert host.cpu_model(x86) == "Fake"


# ---------------------------------------------------------------- NVML (faked module)


class FakeNvml:
    """The few pynvml calls perfpilot makes, for two GPUs in NVML's own order."""

    def __init__(self, uuids: list[str]):
        self.uuids = uuids
        self.shutdown = False

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        self.shutdown = True

    def nvmlSystemGetDriverVersion(self):
        return b"550.54.15"

    def nvmlDeviceGetCount(self):
        return len(self.uuids)

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetUUID(self, h):
        return self.uuids[h]

    def nvmlDeviceGetMemoryInfo(self, h):
        return type("Mem", (), {"used": (h + 1) * GIB})()

    def nvmlDeviceGetUtilizationRates(self, h):
        return type("Util", (), {"gpu": 10 * (h + 1)})()


class FakeTorch:
    __version__ = "2.13.0+cpu"
    version = type("V", (), {"cuda": None})()


def test_nvml_is_matched_to_torch_devices_by_uuid(monkeypatch):
    fake = FakeNvml(["GPU-AAAA", "GPU-BBBB"])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    # torch sees only NVML's second GPU (CUDA_VISIBLE_DEVICES=1), as its cuda:0
    visible = (dataclasses.replace(A100, uuid="bbbb", memory_used_bytes=None,
                                   utilization_pct=None),)
    notes: list[str] = []
    driver, gpus = devices._nvml(visible, FakeTorch, notes)
    assert driver == "550.54.15" and notes == [] and fake.shutdown
    assert (gpus[0].memory_used_bytes, gpus[0].utilization_pct) == (2 * GIB, 20.0)


def test_nvml_gpus_that_torch_cannot_use_become_a_note(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(["GPU-AAAA"]))
    notes: list[str] = []
    devices._nvml((), FakeTorch, notes)
    assert notes == ["NVML sees 1 NVIDIA GPU(s) but torch cannot use them "
                     "(torch 2.13.0+cpu is a CPU-only build)"]


def test_missing_nvidia_ml_py_is_a_note_only_with_gpus(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    notes: list[str] = []
    assert devices._nvml((), FakeTorch, notes) == (None, ()) and notes == []
    devices._nvml((A100,), FakeTorch, notes)
    assert "nvidia-ml-py" in notes[0]


# ---------------------------------------------------------------- the real machine


def test_discover_this_machine_is_cached_and_serializable():
    m = devices.discover()
    assert m is devices.discover()
    assert m.cpu.logical_cores >= 1 and 1 <= m.cpu.usable_cores <= m.cpu.logical_cores
    assert "cpu" in device_options(m)
    json.dumps(m.to_dict())
    check_plan(Plan(), m)  # the default plan runs anywhere


# ---------------------------------------------------------------- the CLI command


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:  # a group, so the command keeps its name
        pass

    devices_cmd.register(app)
    return app


def test_devices_command_table(monkeypatch):
    monkeypatch.setattr(devices, "discover", lambda **kw: ON_A100)
    result = CliRunner().invoke(_app(), ["devices"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "NVIDIA A100-SXM4-40GB (cc 8.0, 108 SMs)" in out
    assert "cuda:0" in out and "40.0 GiB (1.0 used) 3% busy" in out
    assert "NVIDIA 550.54" in out and "AVX512_BF16" in out
    assert "cpu fp16: fp16 is offered on CUDA and MPS only" in out


def test_devices_command_names_gpus_without_tensor_cores(monkeypatch):
    monkeypatch.setattr(devices, "discover", lambda **kw: ON_P100)
    result = CliRunner().invoke(_app(), ["devices"], env={"COLUMNS": "200"})
    assert "Tesla P100 (cc 6.0, no tensor cores)" in result.output
    assert "cuda:0 compile: Triton needs compute capability 7.0+" in result.output


def test_devices_command_json_is_machine_to_dict(monkeypatch):
    monkeypatch.setattr(devices, "discover", lambda **kw: ON_V100)
    result = CliRunner().invoke(_app(), ["devices", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == ON_V100.to_dict()


def test_devices_check_reports_plan_errors_and_notes(monkeypatch, tmp_path):
    monkeypatch.setattr(devices, "discover", lambda **kw: CPU_ONLY)
    bad = tmp_path / "bad.json"
    bad.write_text('{"precision": "fp16"}')
    result = CliRunner().invoke(_app(), ["devices", "--json", "--check", str(bad)])
    assert isinstance(result.exception, PlanError)
    assert str(bad) in str(result.exception) and "'fp16'" in str(result.exception)
    ok = tmp_path / "ok.json"
    ok.write_text('{"pin_memory": true}')
    result = CliRunner().invoke(_app(), ["devices", "--json", "--check", str(ok)])
    assert result.exit_code == 0 and "pin_memory has no effect" in result.stderr


def test_devices_registered_in_the_real_cli(capsys):
    from perfpilot.cli import main

    assert main(["devices", "--json"]) == 0
    assert "cpu" in json.loads(capsys.readouterr().out)["devices"]


def test_capabilities_accept_the_json_form_of_a_machine():
    d = json.loads(json.dumps(ON_A100.to_dict()))  # as in RunRecord.machine
    assert precision_support("cuda:0", d) == precision_support("cuda:0", ON_A100)
    assert device_options(d) == ["cpu", "cuda:0"]
    assert devices.as_machine(d) == ON_A100
    with pytest.raises(PlanError, match="'device'"):
        check_plan(Plan(device="cuda"), CPU_ONLY.to_dict())
