"""The machine and versions ``benchmarks/run_all`` records beside its results: CPU model,
cores, RAM, CUDA devices (torch in a subprocess, and ``nvidia-smi``), the load average,
and the versions of Python, torch, perfpilot and every peer in
``benchmarks/requirements.txt``. Standard library only: run_all imports this before it
knows whether perfpilot is importable."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REQUIREMENTS = Path(__file__).resolve().parent / "requirements.txt"
CORE_PACKAGES = ("torch", "perfpilot", "numpy")


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def cpu_model() -> str:
    m = re.search(r"^model name\s*:\s*(.+)$", _read("/proc/cpuinfo"), re.M)
    return m.group(1).strip() if m else (platform.processor() or platform.machine())


def ram_bytes() -> int | None:
    m = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.M)
    if m:
        return int(m.group(1)) * 1024
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def usable_cores() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


_TORCH_PROBE = (
    "import json, torch\n"
    "n = torch.cuda.device_count() if torch.cuda.is_available() else 0\n"
    "print(json.dumps({'cuda_available': n > 0, 'cuda_runtime': torch.version.cuda,\n"
    "    'devices': [{'index': i, 'name': torch.cuda.get_device_name(i),\n"
    "                 'memory_bytes': torch.cuda.get_device_properties(i).total_memory}\n"
    "                for i in range(n)]}))\n"
)


def gpu_info(python: str = sys.executable) -> dict[str, Any]:
    """CUDA devices as torch sees them (in a subprocess) and ``nvidia-smi``'s view."""
    out: dict[str, Any] = {"torch": None, "nvidia_smi": None}
    try:
        p = subprocess.run([python, "-c", _TORCH_PROBE], capture_output=True, text=True,
                           timeout=120)
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
        out["torch"] = json.loads(lines[-1]) if p.returncode == 0 and lines else {
            "error": p.stderr.strip()[-300:]}
    except (OSError, subprocess.TimeoutExpired) as e:
        out["torch"] = {"error": str(e)}
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            p = subprocess.run([smi, "--query-gpu=name,memory.total,driver_version",
                                "--format=csv,noheader"], capture_output=True, text=True,
                               timeout=60)
            out["nvidia_smi"] = [ln.strip() for ln in p.stdout.splitlines() if ln.strip()]
        except (OSError, subprocess.TimeoutExpired) as e:
            out["nvidia_smi"] = {"error": str(e)}
    return out


def machine_info(python: str = sys.executable) -> dict[str, Any]:
    return {"cpu_model": cpu_model(), "logical_cores": os.cpu_count(),
            "usable_cores": usable_cores(), "ram_bytes": ram_bytes(),
            "platform": platform.platform(),
            "gpu": gpu_info(python)}


def requirement_names(path: Path = REQUIREMENTS) -> list[str]:
    """Distribution names in a requirements file (comments and options ignored)."""
    out = []
    for line in _read(str(path)).splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
        if m and not line.startswith("-"):
            out.append(m.group(0))
    return out


def versions() -> dict[str, Any]:
    """Python and installed versions of perfpilot, torch and every peer benchmarked."""
    out: dict[str, Any] = {"python": platform.python_version(),
                           "python_executable": sys.executable}
    for name in [*CORE_PACKAGES, *requirement_names()]:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out
