"""Which changes to try on a script: from its findings *and* from a joint search.

Pure: reads the profiling run's :class:`~perfpilot.record.RunRecord`, its findings and the
machine, returns :class:`~perfpilot.script_tune_record.Candidate` values (a candidate that
cannot work here comes back ``skipped`` with the reason, so the report says why it was not
tried). Nothing is measured here.

Knobs that interact are searched together, not guessed one at a time: loader workers and
intra-op threads share the same cores (a worker process busy decoding takes a core from
torch's threads), so the grid is every ``(num_workers, cpu_threads)`` pair that fits in
the usable cores (``workers + threads <= cores + 1``: one worker mostly waiting on I/O may
share a core); precision and compile are tried alone and together. Findings add what the
grid does not cover (an allocator setting, a prefetch depth).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from perfpilot.script_plan import describe
from perfpilot.script_tune_record import Candidate

if TYPE_CHECKING:
    from perfpilot.devices import Machine
    from perfpilot.record import Finding, RunRecord

MAX_WORKERS = 8  # past this, workers cost start-up and memory for little
DATA_SHARE = 0.10  # steps waiting this much for data put worker candidates first
SCRIPT_KNOBS_FROM_FINDINGS = ("num_workers", "prefetch_factor", "persistent_workers",
                              "pin_memory", "cpu_threads", "env")


@dataclass(frozen=True)
class ScriptFacts:
    """What the candidates depend on, read once from the profiling run."""

    cores: int
    threads: int  # torch's intra-op threads as the script ran
    device: str  # "cpu" or "cuda"
    loader_workers: int | None  # the training loader's num_workers; None: no DataLoader
    loader_iters: int = 0  # times the training loader was iterated (epochs seen)
    conv: bool = False  # convolutions among the hot operators
    optimizer: str | None = None
    batch_size: int | None = None
    data_share: float = 0.0  # share of a steady step spent waiting for data

    @classmethod
    def of(cls, record: RunRecord, cores: int) -> ScriptFacts:
        loaders = [x for x in record.loaders if x.role == "train"] or \
            [x for x in record.loaders if x.batches]
        train = loaders[0] if loaders else None
        threads = record.threads.torch_threads or cores
        device = "cuda" if record.cuda.measured else "cpu"
        conv = any("conv" in op.name.lower() for op in record.hot_ops.ops)
        opt = record.optimizers[0].type if record.optimizers else None
        per = record.step_phases.per_step_s_core or {}
        total = sum(per.values())
        return cls(cores=max(1, cores), threads=int(threads), device=device,
                   loader_workers=None if train is None else int(train.num_workers),
                   loader_iters=0 if train is None else int(train.iters), conv=conv,
                   optimizer=opt, batch_size=None if train is None else train.batch_size,
                   data_share=per.get("data", 0.0) / total if total > 0 else 0.0)


def candidates(facts: ScriptFacts, findings: list[Finding],
               machine: Machine | dict[str, Any] | None = None, *,
               compile_ok: str | None = None) -> list[Candidate]:
    """Every candidate, in the order they are worth measuring (most likely gain first);
    duplicates (the same changes from two sources) appear once, under the first source.
    ``compile_ok`` is None when ``torch.compile`` can work here, else the reason."""
    loader = sorted(_from_findings(findings) + _workers_threads(facts),
                    key=lambda c: _priority(c, facts))
    out = loader + _math(facts, machine, compile_ok) + _batch(facts)
    return _dedupe(out)


def _priority(c: Candidate, facts: ScriptFacts) -> tuple[int, int, int]:
    """Loader/thread candidates most likely to gain first (a small budget races only the
    first few): those that fit in the cores, then those that add workers when the steps
    wait for data, then the nearest to the script's own setting."""
    w = c.changes.get("num_workers", facts.loader_workers or 0)
    t = c.changes.get("cpu_threads", facts.threads)
    fits = w + t <= facts.cores
    wants_workers = facts.data_share >= DATA_SHARE and facts.loader_workers == 0
    adds = wants_workers and w > 0
    dist = abs(w - (facts.loader_workers or 0)) + abs(t - facts.threads)
    return (0 if fits else 1, 0 if adds else 1, dist)


def _name(changes: dict[str, Any]) -> str:
    return describe(changes)


def _from_findings(findings: list[Finding]) -> list[Candidate]:
    out = []
    for f in findings:
        change = {k: v for k, v in (f.plan_change or {}).items()
                  if k in SCRIPT_KNOBS_FROM_FINDINGS}
        if not change or f.thin:
            continue
        out.append(Candidate(_name(change), change, f"finding:{f.id}"))
    return out


def _workers_threads(facts: ScriptFacts) -> list[Candidate]:
    """The joint grid (see the module docstring), nearest to the script's setting first."""
    cores, t0 = facts.cores, facts.threads
    thread_opts = sorted({t for t in (1, max(1, cores // 2), cores) if t <= cores})
    if facts.loader_workers is None:
        worker_opts = [None]
    else:
        w0 = facts.loader_workers
        worker_opts = sorted({w for w in (0, 1, 2, max(1, cores // 2), cores)
                              if w <= min(MAX_WORKERS, cores)} | {w0})
    grid = []
    for w in worker_opts:
        for t in thread_opts:
            if w is not None and w + t > cores + 1:
                continue
            change: dict[str, Any] = {}
            if w is not None and w != facts.loader_workers:
                change["num_workers"] = w
                if w > 0 and facts.loader_iters > 1:  # workers restart every epoch otherwise
                    change["persistent_workers"] = True
            if t != t0:
                change["cpu_threads"] = t
            if change:
                grid.append((abs((w or 0) - (facts.loader_workers or 0)) + abs(t - t0), change))
    grid.sort(key=lambda x: x[0])
    label = "search:workers×threads" if facts.loader_workers is not None else "search:threads"
    return [Candidate(_name(c), c, label) for _, c in grid]


def _math(facts: ScriptFacts, machine: Machine | dict[str, Any] | None,
          compile_ok: str | None) -> list[Candidate]:
    """Precision × compile (and channels_last for convolutions)."""
    from perfpilot import devices

    out: list[Candidate] = []
    support: dict[str, str | None] = {}
    if machine is not None:
        try:
            support = devices.precision_support(facts.device, machine)
        except Exception as e:  # noqa: BLE001 - the reason goes in the record
            support = {p: f"precision support unknown: {e}" for p in ("tf32", "bf16", "fp16")}
    precisions = ["tf32", "bf16"] if facts.device == "cuda" else ["bf16"]
    for p in precisions:
        reason = support.get(p)
        if p == "bf16" and facts.device == "cpu" and reason is None and machine is not None:
            cpu = devices.as_machine(machine).cpu
            if not cpu.native_bf16:
                reason = ("this CPU has no bf16 instructions (AVX512_BF16/AMX): bf16 "
                          "autocast would emulate them, slower than fp32")
        out.append(Candidate(f"precision={p}", {"precision": p}, "search:precision",
                             fate="skipped" if reason else "pending", reason=reason or ""))
    out.append(Candidate("precision=fp16", {"precision": "fp16"}, "search:precision",
                         fate="skipped", reason="fp16 needs a GradScaler in the script's "
                         "loop; perfpilot does not inject one (bf16 needs none)"))
    out.append(Candidate("compile=default", {"compile": "default"}, "search:compile",
                         fate="skipped" if compile_ok else "pending", reason=compile_ok or ""))
    best_p = next((c for c in out if c.source == "search:precision" and c.fate == "pending"),
                  None)
    if best_p is not None and not compile_ok:
        both = {**best_p.changes, "compile": "default"}
        out.append(Candidate(_name(both), both, "search:precision×compile"))
    if facts.conv:
        out.append(Candidate("channels_last=True", {"channels_last": True},
                             "search:memory-format"))
    return out


def lr_rule(optimizer: str | None) -> str:
    """``linear`` for the SGD family, ``sqrt`` for adaptive or unknown optimizers (the
    batch stage's rule, :mod:`perfpilot.tune.stages.batch.lr`, by class name)."""
    from perfpilot.tune.stages.batch.lr import SGD_FAMILY

    return "linear" if (optimizer or "").lower() in SGD_FAMILY else "sqrt"


def _batch(facts: ScriptFacts) -> list[Candidate]:
    """Twice the training loader's batch with the learning rate scaled by the rule;
    judged by time to the baseline's loss, not by speed."""
    if not facts.batch_size or facts.loader_workers is None:
        return []
    if facts.optimizer is None:
        return [Candidate("batch_size x2", {"batch_size": 2 * facts.batch_size}, "search:batch",
                          fate="skipped", reason="no optimizer step was seen: the learning "
                          "rate cannot be scaled with the batch")]
    rule = lr_rule(facts.optimizer)
    scale = 2.0 if rule == "linear" else round(math.sqrt(2.0), 4)
    change = {"batch_size": 2 * facts.batch_size, "lr_scale": scale}
    return [Candidate(_name(change), change, f"search:batch×lr ({rule} rule for "
                      f"{facts.optimizer})")]


def batch_ratio(changes: dict[str, Any], facts_batch: int | None) -> float | None:
    """The candidate's batch over the baseline's, when it changes the batch."""
    b = changes.get("batch_size")
    return b / facts_batch if b and facts_batch else None


def _dedupe(cands: list[Candidate]) -> list[Candidate]:
    seen: set[str] = set()
    out = []
    for c in cands:
        key = repr(sorted(c.changes.items()))
        if key in seen:
            continue
        seen.add(key)
        out.append(c)
    return out


def combine(winners: list[Candidate]) -> dict[str, Any] | None:
    """The changes of the winners merged, one per knob group (the best of each group
    first in ``winners``); None when fewer than two groups won (nothing to combine)."""
    merged: dict[str, Any] = {}
    groups = 0
    for c in winners:
        if any(k in merged for k in c.changes):
            continue  # same knobs as a better winner: keep that one
        merged.update(c.changes)
        groups += 1
    return merged if groups >= 2 else None


def window_steps(step_s: float, *, target_s: float = 2.5, minimum: int = 20,
                 maximum: int = 400) -> int:
    """Steady steps per measured run: about ``target_s`` seconds, at least the minimum
    evidence of 20 steps (:data:`perfpilot.diagnose.evidence.MIN_STEADY_STEPS`)."""
    if not (step_s > 0 and math.isfinite(step_s)):
        return minimum
    return int(min(maximum, max(minimum, math.ceil(target_s / step_s))))
