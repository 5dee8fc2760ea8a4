"""``perfpilot devices``: what this machine offers for training, and why not when not.

Shows the CPU (model, cores this process may use, SIMD features, native bf16), every
device a plan may name (cpu, cuda:N, mps, xla) with the precisions and torch.compile
support perfpilot will consider there, and the reason for everything unavailable.
``--json`` prints :meth:`perfpilot.devices.Machine.to_dict` instead; ``--check FILE``
checks a plan file against this machine (exit 2 with the reason when it cannot run) and,
when the plan says the load its gain was measured at (``"load"``, written by ``tune``),
whether the machine's load now matches it (a warning when not: the plan is still valid).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from perfpilot.devices import GpuInfo, Machine

GIB = 1024**3


def register(app: typer.Typer) -> None:
    app.command("devices")(devices_command)


def devices_command(
    as_json: bool = typer.Option(False, "--json", help="Print the machine as JSON."),
    check: Path | None = typer.Option(
        None, "--check", metavar="FILE",
        help="Check a plan file against this machine (missing keys take the defaults)."),
) -> None:
    """Show devices, precisions and torch.compile support on this machine."""
    from rich.console import Console

    from perfpilot import devices
    from perfpilot.plan import load_plan

    if check is not None:
        load_plan(check)  # a broken plan file fails before discover() imports torch
    machine = devices.discover()
    if as_json:
        typer.echo(json.dumps(machine.to_dict(), indent=2))
    else:
        render_machine(machine, Console(highlight=False))
    if check is not None:
        _check_plan_file(check, machine)


def _check_plan_file(path: Path, machine: Machine) -> None:
    from perfpilot import devices
    from perfpilot.errors import PlanError
    from perfpilot.plan import load_plan

    plan = load_plan(path)
    try:
        devices.check_plan(plan, machine)
    except PlanError as e:
        raise PlanError(f"{path}: {e}") from None
    typer.echo(f"{path}: this machine can run the plan", err=True)
    for note in devices.plan_notes(plan, machine):
        typer.echo(f"  note: {note}", err=True)
    _check_load(path)


def _check_load(path: Path) -> None:
    """The plan's load label against the load now (half a second's watch); a warning when
    the plan won at another load than the machine has now (:mod:`perfpilot.tune.
    load_label`). Nothing without a label."""
    from perfpilot.errors import PlanError
    from perfpilot.plan import LOAD_KEY, plan_load
    from perfpilot.tune.load_label import check

    label = plan_load(path)
    if label is None:
        return
    try:
        holds, verdict = check(label)
    except ValueError as e:
        raise PlanError(f"{path}: plan key {LOAD_KEY!r}: {e}") from None
    head = "warning: load mismatch" if holds is False else "load"
    typer.echo(f"  {head}: {verdict}", err=True)


def render_machine(machine: Machine, console: Console) -> None:
    """The terminal view of ``machine`` (pure formatting; everything comes from it)."""
    from rich.table import Table

    torch = machine.torch_version or "not installed"
    if machine.torch_version and machine.cuda_runtime is None:
        torch += " (CPU-only build)"
    elif machine.cuda_runtime:
        torch += f" (CUDA {machine.cuda_runtime})"
    console.print(f"[bold]perfpilot devices[/] - {machine.os} - Python {machine.python} - "
                  f"torch {torch}")
    facts = Table.grid(padding=(0, 2))
    for key, value in _cpu_facts(machine):
        facts.add_row(f"[bold]{key}[/]", value)
    console.print(facts)
    console.print(_device_table(machine))
    _print_reasons(machine, console)


def _cpu_facts(machine: Machine) -> list[tuple[str, str]]:
    cpu = machine.cpu
    quota = "none" if cpu.quota_cores is None else f"{cpu.quota_cores:g} cores"
    cores = (f"{cpu.usable_cores} usable (affinity {cpu.affinity_cores or '?'}, cgroup quota "
             f"{quota}) - {cpu.logical_cores} logical - {cpu.physical_cores or '?'} physical")
    simd = " ".join(cpu.simd) or "none detected"
    kernels = f" - torch kernels {cpu.torch_capability}" if cpu.torch_capability else ""
    bf16 = "native" if cpu.native_bf16 else "emulated (slow)"
    rows = [("CPU", f"{cpu.model} ({cpu.arch})"), ("cores", cores),
            ("SIMD", f"{simd}{kernels} - bf16 {bf16}")]
    if cpu.memory_bytes:
        rows.append(("memory", f"{cpu.memory_bytes / GIB:.1f} GiB"))
    rows.append(("compile", _compilers(machine)))
    if machine.nvidia_driver:
        rows.append(("driver", f"NVIDIA {machine.nvidia_driver}"))
    return rows


def _compilers(machine: Machine) -> str:
    if machine.compile_issue:
        return f"unavailable: {machine.compile_issue}"
    cxx = machine.cxx_compiler or "no C++ compiler (CPU inductor needs one)"
    triton = "Triton installed" if machine.triton else "Triton not installed"
    return f"C++ {cxx} - C {machine.c_compiler or 'none'} - {triton}"


def _device_table(machine: Machine):  # -> rich.table.Table
    from rich.table import Table

    from perfpilot import devices

    table = Table(show_edge=False, header_style="bold")
    for col in ("device", "hardware", "memory", *devices.PRECISION_ORDER, "compile"):
        table.add_column(col)
    for device in devices.device_options(machine):
        support = devices.precision_support(device, machine)
        marks = [_mark(support[p]) for p in devices.PRECISION_ORDER]
        if device == "cpu" and support["bf16"] is None:
            marks[2] += " (native)" if machine.cpu.native_bf16 else " (emulated)"
        compile_mark = _mark(devices.compile_support(device, machine))
        hw, mem = _describe(device, machine)
        table.add_row(device, hw, mem, *marks, compile_mark)
    return table


def _describe(device: str, machine: Machine) -> tuple[str, str]:
    if device == "cpu":
        cpu, mem = machine.cpu, machine.cpu.memory_bytes
        kernels = f", {cpu.torch_capability}" if cpu.torch_capability else ""
        return (f"{cpu.usable_cores} usable cores{kernels}",
                f"{mem / GIB:.1f} GiB" if mem else "?")
    if device.startswith("cuda"):
        gpu = machine.gpus[int(device.split(":")[1])]
        return _gpu_text(gpu), _gpu_memory(gpu)
    if device == "mps":
        return "Apple GPU (Metal Performance Shaders)", "shared"
    xla = machine.xla
    return (f"{xla.device_type} x{xla.devices} via torch_xla" if xla else "XLA"), "?"


def _gpu_text(gpu: GpuInfo) -> str:
    major, minor = gpu.capability
    parts = [f"cc {major}.{minor}"]
    if gpu.multiprocessors:
        parts.append(f"{gpu.multiprocessors} SMs")
    if not gpu.tensor_cores:
        parts.append("no tensor cores")
    return f"{gpu.name} ({', '.join(parts)})"


def _gpu_memory(gpu: GpuInfo) -> str:
    text = f"{gpu.memory_bytes / GIB:.1f} GiB"
    if gpu.memory_used_bytes is not None:
        text += f" ({gpu.memory_used_bytes / GIB:.1f} used)"
    if gpu.utilization_pct is not None:
        text += f" {gpu.utilization_pct:.0f}% busy"
    return text


def _mark(reason: str | None) -> str:
    return "[green]yes[/]" if reason is None else "[red]no[/]"


def _print_reasons(machine: Machine, console: Console) -> None:
    from rich.markup import escape

    from perfpilot import devices

    lines = []
    for device in devices.device_options(machine):
        for precision, why in devices.precision_support(device, machine).items():
            if why:
                lines.append(f"  {device} {precision}: {why}")
        why = devices.compile_support(device, machine)
        if why:
            lines.append(f"  {device} compile: {why}")
    if lines:
        console.print("[bold]Not available[/]")
        for line in lines:
            console.print(escape(line), soft_wrap=True)
    for note in machine.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
