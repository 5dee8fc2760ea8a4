"""Turn the runner's raw profile into a :class:`~perfpilot.record.RunRecord`.

Pure functions of the raw JSON (no torch, no clocks), so a record can be rebuilt and
tested offline. The record's core fields describe the *steady* steps (warm-up and the
profiler window left out); probe sections go to the record's typed section fields:

``profile``      mode, command, exit code, why it stopped, error, step definition
``timeline``     startup (interpreter, imports), warm-up, steady window, eval, I/O, tail
``step_phases``  per-step mean and total seconds per phase over steady steps (with
                 ``io``), samples per step and how they were counted
                 (``samples_from``), and a thinned series of step times
``stack_samples`` / ``hot_lines``   the record contracts (main thread, steady window)
``memory``, ``threads``, ``engine`` (workload runs)   :mod:`perfpilot.record_sections`
``hot_ops``, ``loaders``, ``io``, ``roots``, ``optimizers``, ``set_num_threads``,
``grad_in_eval``, ``calibration``, ``cuda``, ``injection``   :mod:`perfpilot.record_probe_sections`
``loss_history``  the training loss per step (:mod:`perfpilot.probes.losses`)

The probes write plain JSON in the profiled process; this is where it becomes typed.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from perfpilot.probes.children import adopt_child
from perfpilot.probes.frames import is_user_file
from perfpilot.probes.losses import loss_history
from perfpilot.record import PHASES, RunRecord, StatSummary
from perfpilot.record_probe_sections import (
    Calibration,
    CpuUse,
    CudaInfo,
    GradInEval,
    HotOps,
    Injection,
    IoCall,
    LoaderInfo,
    OptimizerInfo,
    RootModule,
    SetThreadsCall,
)
from perfpilot.record_sections import (
    HotLine,
    Memory,
    ProfileInfo,
    StackSamples,
    StepPhases,
    Threads,
    Timeline,
)

MAX_SERIES = 500
MAX_HOT_LINES = 60
_IMPORT_FILES = ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>")
# The hooks' lists (see probes.hooks.TorchHooks.section) and the section type of an item.
_HOOK_LISTS: dict[str, Any] = {"loaders": LoaderInfo, "io": IoCall, "roots": RootModule,
                               "optimizers": OptimizerInfo, "set_num_threads": SetThreadsCall}


def build_record(raw: dict[str, Any]) -> RunRecord:
    """The RunRecord of one profiled run (see the module docstring); the training of a
    script that ran it in spawned children comes from one of them
    (:func:`perfpilot.probes.children.adopt_child`)."""
    raw = adopt_child(raw)
    tr = raw["tracker"]
    clock = tr["clock"]
    steady = steady_steps(tr)
    stacks = StackSamples.from_dict(expand_stacks(raw.get("stacks") or {}))
    hooks = raw.get("hooks") or {}
    phases = step_phases(steady, tr.get("step_kind"), samples_source(tr, hooks))
    sections: dict[str, Any] = {
        "profile": ProfileInfo.from_dict(_profile_section(raw, tr, steady)),
        "timeline": Timeline.from_dict(build_timeline(raw, steady, stacks)),
        "step_phases": StepPhases.from_dict(phases),
        "stack_samples": stacks, "hot_lines": hot_lines(stacks),
        "memory": Memory.from_dict(raw.get("memory") or {}),
        "cpu": CpuUse.from_dict(raw.get("cpu") or {}),
        "threads": Threads.from_dict(raw.get("threads") or {}),
        "calibration": Calibration.from_dict(raw.get("calibration") or {}),
        "hot_ops": HotOps.from_dict(raw.get("hot_ops") or {}),
        "cuda": CudaInfo.from_dict(raw.get("cuda") or {}),
        "grad_in_eval": GradInEval.from_dict(hooks.get("grad_in_eval") or {}),
        "injection": Injection.from_dict(hooks.get("injection") or {}),
    }
    for key, section in _HOOK_LISTS.items():
        if key in hooks:
            sections[key] = tuple(section.from_dict(x) for x in hooks[key] or ())
    engine = raw.get("engine_record")
    if engine:
        return dataclasses.replace(RunRecord.from_dict(engine), **sections)
    totals = [sum(v for k, v in s["phases"].items() if k != "eval") for s in steady]
    samples = sum(s["samples"] for s in steady)
    peak = (raw.get("memory") or {}).get("peak_rss_bytes", 0)
    cuda_mem = sections["cuda"].memory.max_allocated_bytes
    return RunRecord(
        workload=_script_name(raw), plan=dict((raw.get("config") or {}).get("overrides") or {}),
        steps=len(tr.get("steps") or []),
        samples_per_s=samples / sum(totals) if totals and sum(totals) > 0 else 0.0,
        step_time_s=_summary(totals), phases_s=phases["per_step_s_core"],
        peak_memory_bytes=int(cuda_mem if cuda_mem is not None else peak),
        wall_time_s=float(clock.get("end") or clock.get("last_activity") or 0.0),
        loss_history=loss_history(hooks.get("losses") or [], tr),
        **sections,
    )


def _script_name(raw: dict[str, Any]) -> str:
    argv = raw.get("argv") or []
    if not argv:
        return "script"
    if argv[0] in ("-m", "-c") and len(argv) > 1:
        return f"{argv[0]} {argv[1][:40]}"
    return os.path.basename(argv[0])


def _summary(values: list[float]) -> StatSummary:
    if not values:
        return StatSummary(0.0, 0.0, 0.0, 0.0, 0)
    if len(values) == 1:
        v = values[0]
        return StatSummary(v, v, v, v, 1)
    try:
        from perfpilot.measure import summarize
    except ImportError:
        s = sorted(values)
        med = s[len(s) // 2]
        return StatSummary(sum(s) / len(s), med, s[0], s[-1], len(s))
    return summarize(values)


def _profile_section(raw: dict[str, Any], tr: dict[str, Any],
                     steady: list[dict[str, Any]]) -> dict[str, Any]:
    all_steps = tr.get("steps") or []
    return {
        "mode": raw.get("mode", "script"), "argv": raw.get("argv"), "cwd": raw.get("cwd"),
        "exit_code": raw.get("exit_code"), "stopped": raw.get("stopped"),
        "error": raw.get("error"), "partial": bool(raw.get("partial")),
        "step_kind": tr.get("step_kind"), "boundaries": tr.get("boundaries"),
        "steps": len(all_steps), "steady_steps": len(steady),
        "excluded_steps": sum(1 for s in all_steps if s.get("excluded")),
        "config": raw.get("config"), "torch_imported": raw.get("torch_imported"),
        "trained_in_eval_mode": tr.get("trained_in_eval_mode", 0),
        "hook_errors": [*((raw.get("hooks") or {}).get("errors") or []),
                        *(raw.get("probe_errors") or [])],
        "followed": raw.get("followed"),
        "sampler": {k: (raw.get("stacks") or {}).get(k)
                    for k in ("interval_s", "total", "seconds", "busy_s")},
    }


# ---------------------------------------------------------------- steps and time


def steady_steps(tr: dict[str, Any]) -> list[dict[str, Any]]:
    """Steps that started after warm-up and were not in the profiler window.

    With no step after warm-up (a very short run), every non-excluded step counts.
    """
    steps = [s for s in tr.get("steps") or [] if not s.get("excluded")]
    warm = (tr.get("clock") or {}).get("warmup_end")
    if warm is None:
        return steps
    after = [s for s in steps if s["start"] >= warm - 1e-9]
    return after or steps


def samples_source(tr: dict[str, Any], hooks: dict[str, Any]) -> str | None:
    """How the samples of a step were counted, in words (None when they were not)."""
    src = tr.get("samples_from")
    if src == "loader":
        loaders = [ld for ld in hooks.get("loaders") or [] if ld.get("role") == "train"]
        size = loaders[0].get("batch_size") if loaders else None
        return ("DataLoader batches" + (f" (batch_size={size})" if size else "")
                + " fetched for training")
    if src == "forward":
        models = [r for r in hooks.get("roots") or [] if r.get("role", "model") == "model"]
        if not models:
            return "the batch dimension of the training forwards' input"
        root = max(models, key=lambda r: r.get("calls", 0))
        return f"{root.get('batch_dim_from', 'dim 0 of the input')} of {root.get('type')}"
    return None


def step_phases(steady: list[dict[str, Any]], kind: str | None,
                samples_from: str | None = None) -> dict[str, Any]:
    """Per-step mean and totals per phase; ``io`` kept apart from the core phases."""
    labels = (*PHASES, "io", "eval")
    total = {p: 0.0 for p in labels}
    for s in steady:
        for p, v in s["phases"].items():
            total[p if p in total else "other"] += v
    n = max(len(steady), 1)
    per_step = {p: v / n for p, v in total.items()}
    spread = {p: _mean_interval([s["phases"].get(p, 0.0) for s in steady])
              for p in labels if total[p] > 0}
    core = {p: per_step[p] for p in PHASES}
    core["other"] += per_step["io"]  # the record's phases are the engine's six
    totals = [sum(v for k, v in s["phases"].items() if k != "eval") for s in steady]
    stride = max(1, -(-len(totals) // MAX_SERIES))
    sizes = sorted(s["samples"] for s in steady if s["samples"])
    return {
        "kind": kind, "steps": len(steady), "per_step_s": per_step, "total_s": total,
        "per_step_s_core": core,
        "per_step_ci_s": {p: ci for p, ci in spread.items() if ci is not None},
        "step_s_series": [round(t, 6) for t in totals[::stride]],
        "samples_per_step": sizes[len(sizes) // 2] if sizes else None,
        "samples_from": samples_from if sizes else None,
    }


def _mean_interval(values: list[float]) -> list[float] | None:
    """95% interval of the mean of per-step values (normal approximation: the steps are
    many and their mean is what the shares use); None below 2 values."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    half = 1.96 * (var / n) ** 0.5
    return [round(max(mean - half, 0.0), 9), round(mean + half, 9)]


def build_timeline(raw: dict[str, Any], steady: list[dict[str, Any]],
                   stacks: StackSamples) -> dict[str, Any]:
    """Where the wall time went, from process start to exit (seconds)."""
    tr = raw["tracker"]
    c = tr["clock"]
    end = c.get("end") or c.get("last_activity") or c.get("script_start") or 0.0
    last_step_end = max((s["end"] for s in steady), default=None)
    window_end = end
    if raw.get("mode") == "workload" and last_step_end is not None:
        window_end = last_step_end  # the engine's final evaluation is not the user's run
    first = c.get("first_activity")
    warm = c.get("warmup_end") or first
    start_steady = warm if warm is not None else c.get("script_start", 0.0)
    window = max(window_end - start_steady - tr.get("profiled_s", 0.0)
                 - tr.get("skipped_s", 0.0), 0.0)
    segs = [seg for seg in (tr.get("eval") or {}).get("segments", [])
            if warm is not None and seg[0] >= warm - 1e-9]
    eval_s = sum(seg[2] for seg in segs)
    io = [r for r in (raw.get("hooks") or {}).get("io", []) if r.get("phase") == "steady"]
    train = sum(sum(v for k, v in s["phases"].items() if k != "eval") for s in steady)
    return {
        "total_s": end, "interpreter_s": c.get("script_start") or 0.0,
        "imports_s": import_seconds(stacks),
        "startup_s": (first if first is not None else end),
        "warmup_s": (warm - first) if (warm is not None and first is not None) else 0.0,
        "steady_s": window, "train_s": train, "eval_s": eval_s, "eval_passes": len(segs),
        "io_s": sum(r["seconds"] for r in io),
        "tail_s": max(end - last_step_end, 0.0) if last_step_end is not None else 0.0,
        "profiler_s": tr.get("profiled_s", 0.0), "skipped_s": tr.get("skipped_s", 0.0),
        "steady_from": start_steady,
    }


# ---------------------------------------------------------------- stacks


def expand_stacks(compact: dict[str, Any]) -> dict[str, Any]:
    """The ``stack_samples`` contract form (absolute file paths in every frame)."""
    if not compact:
        return {"interval_s": 0.0, "total": 0, "stacks": []}
    files = compact.get("files")
    out = {k: v for k, v in compact.items() if k not in ("files", "stacks")}
    stacks = []
    for s in compact.get("stacks", []):
        frames = s["frames"] if files is None else [[files[f], ln, fn]
                                                     for f, ln, fn in s["frames"]]
        stacks.append({**s, "frames": frames})
    out["stacks"] = stacks
    return out


def import_seconds(stacks: StackSamples) -> float:
    """Main-thread time spent importing modules (any frame in importlib's bootstrap)."""
    return sum(s.seconds or 0.0 for s in stacks.stacks
               if s.thread == "MainThread" and any(f[0] in _IMPORT_FILES for f in s.frames))


def hot_lines(stacks: StackSamples, limit: int = MAX_HOT_LINES) -> tuple[HotLine, ...]:
    """User lines of the main thread in the steady window (see :class:`HotLine`).

    ``self_share``: time the line was the innermost *user* frame (what it calls in
    libraries counts as its own time); ``total_share``: time it was anywhere on the
    stack; ``python_share``: self time spent running Python bytecode (see the sampler),
    ``own_python_share`` the part of it in the line itself (not in library Python it calls);
    ``tags``: self seconds per phase tag (``data``, ``forward``, ``eval``...). Samples
    whose leaf line is uncertain (GIL hand-offs, see the sampler) count for the frames
    above it only, so self shares may sum to less than 1.
    """
    chosen = stacks.main_stacks()
    denom = sum(s.weight for s in chosen)
    if denom <= 0:
        return ()
    lines: dict[tuple[str, int], dict[str, Any]] = {}
    for s in chosen:
        w = s.weight
        user = [f for f in s.frames if is_user_file(f[0])]
        seen = set()
        handoff = s.handoff_s if user and user[-1] is s.frames[-1] else 0.0
        for f in user:
            key = (f[0], f[1])
            entry = lines.setdefault(key, {"file": f[0], "line": f[1], "function": f[2],
                                           "self": 0.0, "total": 0.0, "python": 0.0,
                                           "own_python": 0.0, "tags": {}})
            if key not in seen:
                entry["total"] += w - (handoff if f is user[-1] else 0.0)
                seen.add(key)
        if user:
            leaf = lines[(user[-1][0], user[-1][1])]
            w -= handoff  # Python that ran before this line (see the sampler): unplaced
            leaf["self"] += w
            leaf["python"] += s.python_s
            if user[-1] is s.frames[-1]:  # the user's line itself, not library code
                leaf["own_python"] += s.python_s
            tag = s.tag or "other"
            leaf["tags"][tag] = leaf["tags"].get(tag, 0.0) + w
    out = [HotLine(file=e["file"], line=e["line"], function=e["function"],
                   self_share=e["self"] / denom, total_share=e["total"] / denom,
                   python_share=e["python"] / denom, own_python_share=e["own_python"] / denom,
                   seconds=e["self"], tags={k: round(v, 6) for k, v in e["tags"].items()})
           for e in lines.values()]
    out.sort(key=lambda e: (e.total_share, e.self_share), reverse=True)
    return tuple(out[:limit])
