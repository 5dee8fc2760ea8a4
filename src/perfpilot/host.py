"""Low-level facts about the host, for :mod:`perfpilot.devices`: cores this process may
use (affinity and cgroup v1/v2 CPU quota), /proc/cpuinfo parsing, and the compilers
torch.compile needs. Pure functions of files and the environment; paths are injectable
so tests can fake a container.
"""

from __future__ import annotations

import ast
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
# /proc/cpuinfo flags worth showing (x86 "flags", ARM "Features"), in display order.
SIMD_FLAGS: dict[str, str] = {
    "sse4_2": "SSE4.2", "avx": "AVX", "avx2": "AVX2", "fma": "FMA", "f16c": "F16C",
    "avx512f": "AVX-512", "avx512_vnni": "AVX512_VNNI", "avx512_bf16": "AVX512_BF16",
    "avx512_fp16": "AVX512_FP16", "avx_vnni": "AVX_VNNI", "amx_tile": "AMX",
    "amx_bf16": "AMX_BF16", "amx_int8": "AMX_INT8", "amx_fp16": "AMX_FP16",
    "neon": "NEON", "asimdhp": "NEON_FP16", "sve": "SVE", "sve2": "SVE2", "bf16": "BF16",
    "i8mm": "I8MM",
}


def usable_cores(*, root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """Cores this process may use: CPU affinity, capped by the cgroup CPU quota (rounded
    down, at least 1; oversubscribing a quota costs more than leaving a fraction idle)."""
    cores = affinity_cores() or os.cpu_count() or 1
    quota = cgroup_cpu_limit(root=root, proc_cgroup=proc_cgroup)
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return cores


def affinity_cores() -> int | None:
    """CPUs in this process's affinity mask (None where the OS does not say)."""
    if hasattr(os, "process_cpu_count"):  # Python 3.13+
        return os.process_cpu_count()
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return None


def cgroup_cpu_limit(*, root: Path = CGROUP_ROOT,
                     proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """CPU quota in cores from cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us`` (the
    tightest limit on this process's cgroup and its ancestors); ``None`` if unlimited."""
    limits = [lim for path in _quota_files(Path(root), Path(proc_cgroup))
              if (lim := _read_quota(path)) is not None]
    return min(limits) if limits else None


def parse_cpu_max(text: str) -> float | None:
    """cgroup v2 ``cpu.max`` (``"200000 100000"`` -> 2.0, ``"max 100000"`` -> None)."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def parse_cfs(quota_text: str, period_text: str) -> float | None:
    """cgroup v1 quota and period in microseconds (quota -1 means unlimited)."""
    try:
        quota, period = int(quota_text.strip()), int(period_text.strip())
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _quota_files(root: Path, proc_cgroup: Path) -> Iterator[Path]:
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    entries = [line.split(":", 2) for line in lines if line.count(":") >= 2]
    if not entries:  # no /proc: look at the root of both layouts
        entries = [["0", "", "/"], ["1", "cpu", "/"]]
    for _hier, controllers, rel in entries:
        if controllers == "":
            bases, name = [root], "cpu.max"
        elif "cpu" in controllers.split(","):
            bases = [root / d for d in ("cpu", "cpu,cpuacct", "cpuacct,cpu")]
            name = "cpu.cfs_quota_us"
        else:
            continue
        for base in bases:
            for d in _ancestors(base, rel):
                yield d / name


def _ancestors(base: Path, rel: str) -> Iterator[Path]:
    """``base/a/b``, ``base/a``, ``base``: in a container the process's own cgroup path
    may not exist under the mount, whose root then is that cgroup."""
    parts = [p for p in rel.split("/") if p]
    for i in range(len(parts), -1, -1):
        yield base.joinpath(*parts[:i])


def _read_quota(path: Path) -> float | None:
    try:
        if path.name == "cpu.max":
            return parse_cpu_max(path.read_text())
        return parse_cfs(path.read_text(), (path.parent / "cpu.cfs_period_us").read_text())
    except OSError:
        return None


# ---------------------------------------------------------------- CPU model and features


def parse_cpu_features(cpuinfo: str, arch: str = "") -> tuple[str, ...]:
    """Interesting SIMD features from /proc/cpuinfo text (first CPU's flags/Features)."""
    found: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            found = set(value.split())
            break
    if "asimd" in found or (arch.lower() in ("arm64", "aarch64") and not cpuinfo):
        found.add("neon")  # every 64-bit ARM CPU has NEON (ASIMD)
    if sys.platform == "darwin" and arch == "arm64" and sysctl("hw.optional.arm.FEAT_BF16"):
        found.add("bf16")
    return tuple(f for f in SIMD_FLAGS if f in found)


def cpu_model(cpuinfo: str) -> str:
    for key in ("model name", "Hardware", "Processor", "cpu model"):
        for line in cpuinfo.splitlines():
            k, _, value = line.partition(":")
            if k.strip() == key and value.strip():
                return value.strip()
    if sys.platform == "darwin":
        return sysctl("machdep.cpu.brand_string") or platform.processor() or "unknown CPU"
    return platform.processor() or platform.machine() or "unknown CPU"


# ---------------------------------------------------------------- compilers


def compile_issue(torch_dir: Path | None = None) -> str | None:
    """Why torch.compile cannot run on this Python/platform (``None``: it can), by the
    installed torch's own ``check_if_dynamo_supported``.

    Importing ``torch._dynamo`` costs about 2 s, paid by every run that records the
    machine; the check itself only reads ``sys``/``sysconfig``. So its source is read from
    the installed torch and run alone; if that fails in any way, the real import decides.
    """
    check = _dynamo_check_from_source(torch_dir)
    if check is not None:
        try:
            check()
            return None
        except RuntimeError as e:
            return str(e) or "unsupported"
        except Exception:  # the check needs more than sys/sysconfig: ask torch itself
            pass
    try:
        from torch._dynamo.eval_frame import check_if_dynamo_supported
    except Exception as e:
        return f"torch._dynamo cannot be imported ({type(e).__name__})"
    try:
        check_if_dynamo_supported()
    except Exception as e:
        return str(e) or type(e).__name__
    return None


def _dynamo_check_from_source(torch_dir: Path | None) -> Callable[[], None] | None:
    try:
        if torch_dir is None:
            import torch

            torch_dir = Path(torch.__file__).parent
        text = (torch_dir / "_dynamo" / "eval_frame.py").read_text()
        start = text.index("\ndef check_if_dynamo_supported(") + 1
        end = re.compile(r"^\S", re.M).search(text, text.index("\n", start) + 1)
        tree = ast.parse(text[start:end.start() if end else len(text)])
        if len(tree.body) != 1 or not isinstance(tree.body[0], ast.FunctionDef):
            return None
        namespace: dict[str, object] = {"sys": sys, "sysconfig": sysconfig}
        exec(compile(tree, "<torch check_if_dynamo_supported>", "exec"), namespace)
        return namespace["check_if_dynamo_supported"]  # type: ignore[return-value]
    except Exception:
        return None


def which_cxx() -> str | None:
    """The C++ compiler inductor would use (torch._inductor.config.cpp.cxx default)."""
    name = os.environ.get("CXX", "clang++" if sys.platform == "darwin" else "g++")
    if sys.platform == "win32":
        name = os.environ.get("CXX", "cl")
    return shutil.which(name)


def which_cc() -> str | None:
    """The C compiler Triton would use: $CC, else gcc, else clang."""
    cc = os.environ.get("CC")
    return shutil.which(cc) if cc else (shutil.which("gcc") or shutil.which("clang"))


# ---------------------------------------------------------------- NVML


def nvml_query() -> tuple[str, dict[str, tuple[int, float]]] | None:
    """``(driver version, {uuid: (memory used bytes, utilization %)})`` from NVML, or
    ``None`` without an NVIDIA driver. Raises ImportError without nvidia-ml-py."""
    import pynvml

    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        use = {}
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            used = int(pynvml.nvmlDeviceGetMemoryInfo(h).used)
            busy = float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
            use[norm_uuid(_text(pynvml.nvmlDeviceGetUUID(h)))] = (used, busy)
        return _text(pynvml.nvmlSystemGetDriverVersion()), use
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def norm_uuid(uuid: str | None) -> str | None:
    """GPU UUIDs as torch and NVML both spell them: lower case, without ``GPU-``."""
    return uuid.lower().removeprefix("gpu-") if uuid else None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------- small helpers


def read_text(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def sysctl(name: str) -> str | None:
    try:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True,
                             timeout=2, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    value = out.stdout.strip()
    return value if out.returncode == 0 and value not in ("", "0") else None
