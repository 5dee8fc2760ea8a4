"""Benchmark: the batch stage's choice against the baseline, two peers and a grid oracle.

For each workload (digits, charlm), every arm is a (batch size, LR, warmup):

* ``baseline``   the workload's own settings;
* ``perfpilot``  what ``BatchStage`` chooses within ``--budget`` (the CLI's code path:
  ``perfpilot tune WORKLOAD --only batch``);
* ``lightning``  the batch ``Tuner.scale_batch_size(mode="power")`` picks (Lightning's
  defaults), run in a subprocess whose address space is capped at the same memory budget
  perfpilot uses (a CPU does not fail cleanly otherwise; Lightning treats the allocator's
  "can't allocate memory" as its OOM signal);
* ``accelerate`` the batch ``find_executable_batch_size`` picks (default start 128);
* ``oracle``     the best cell of a grid over batch ``B0 * 2**k`` x LR ``lr0 * 2**j``:
  every cell screened on one seed (stopped at 1.5x the baseline's time), the best three
  repeated on all seeds, the lowest median kept.

Peers' batches get the same LR rule and warmup as perfpilot (its ``lr_policy``). Every arm
is then trained to the target on the same seeds (100, 101, ...; not the seeds the stage
tuned on), interleaved seed by seed. Time to target = samples to target (a real run,
interpolated at the crossing) / samples per second at that batch (15 rounds of 2-s
windows over all sizes, each size's window divided by the baseline batch's of the same
round, so load changing between rounds cancels). Each run's wall-clock training time is
reported next to it, with its own paired verdict: on this shared machine wall-clock
times of runs made minutes apart differ by more than the effects compared, while samples
to target do not depend on load at all. All arms use ``cpu_threads=1`` (two threads on
two busy cores collapse).

    .venv/bin/python benchmarks/batch_size.py                       # digits and charlm
    .venv/bin/python benchmarks/batch_size.py --workloads digits --seeds 5 --budget-digits 4m

Prints one table per workload and writes ``benchmarks/results/batch_size.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _context import Context, Section, header, readable
from _fmt import Doc, cell, is_num, load_str, num, secs, table, times

RESULTS = Path(__file__).resolve().parent / "results" / "batch_size.json"
BUDGETS = {"digits": "4m", "charlm": "30m"}
# Grid of the oracle, as powers of two around the baseline: batch B0*2**k, LR lr0*2**j.
GRID_K = {"digits": range(-2, 4), "charlm": range(-2, 3)}
GRID_J = {"digits": range(-1, 5), "charlm": range(0, 4)}
SCREEN_CUTOFF = 1.5  # oracle screening: stop a cell at 1.5x the baseline's time
ORACLE_TOP = 3
LOST = 6.0  # an arm still short of the target at 6x the baseline's time has lost


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- arms


def perfpilot_arm(w: Any, plan: Any, budget_s: float, mem_fraction: float) -> dict[str, Any]:
    from perfpilot.tune.stage import StageContext
    from perfpilot.tune.stages.batch.stage import BatchStage
    from perfpilot.tune.study import Study

    ctx = StageContext(workload=w, incumbent=plan, trials=Study(), budget_s=budget_s,
                       progress=lambda m: log("  " + m),
                       options={"batch": {"memory_fraction": mem_fraction}})
    t0 = time.perf_counter()
    res = BatchStage().run(ctx)
    return {"batch_size": res.plan.batch_size, "lr": res.plan.lr,
            "warmup_steps": res.plan.warmup_steps, "tuning_s": time.perf_counter() - t0,
            "summary": res.summary, "evidence": res.evidence}


def accelerate_pick(w: Any, plan: Any, n: int) -> dict[str, Any]:
    try:
        from accelerate.utils import find_executable_batch_size
    except ImportError as e:
        return {"skipped": f"accelerate is not importable ({e}); pip install accelerate"}
    from perfpilot.engine import Trainer

    @find_executable_batch_size(starting_batch_size=128)
    def fit(batch_size: int) -> int:
        with Trainer(w, plan.replace(batch_size=min(batch_size, n)), check=False) as t:
            t.train_steps(2)
        return min(batch_size, n)

    t0 = time.perf_counter()
    return {"batch_size": fit(), "tuning_s": time.perf_counter() - t0}


def lightning_pick(name: str, mem_bytes: int) -> dict[str, Any]:
    """Run Lightning's batch-size finder in a subprocess capped at ``mem_bytes`` more
    address space than it starts with."""
    try:
        import lightning  # noqa: F401
    except ImportError as e:
        return {"skipped": f"lightning is not importable ({e}); pip install lightning"}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:  # Lightning checkpoints into its cwd
        proc = subprocess.run([sys.executable, __file__, "--_lightning", name, str(mem_bytes)],
                              capture_output=True, text=True, timeout=3600, cwd=tmp)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"skipped": f"Lightning's finder failed: {proc.stderr.strip()[-300:]}"}
    return {**json.loads(lines[-1]), "tuning_s": time.perf_counter() - t0}


def _lightning_child(name: str, mem_bytes: int) -> None:
    import resource

    import psutil

    vms = psutil.Process().memory_info().vms
    resource.setrlimit(resource.RLIMIT_AS, (vms + mem_bytes + 2**30, resource.RLIM_INFINITY))
    import lightning as L
    import torch
    from lightning.pytorch.tuner import Tuner
    from torch.utils.data import DataLoader

    from perfpilot.workload import build_dataset, build_model, build_optimizer, load_workload

    torch.set_num_threads(1)
    w = load_workload(name)
    data = build_dataset(w, "train_data")

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model, self.batch_size = build_model(w), w.baseline.batch_size

        def training_step(self, batch: Any, i: int) -> Any:
            return w.loss(self.model, batch)

        def configure_optimizers(self) -> Any:
            return build_optimizer(w, self.model.parameters(), w.baseline.lr)

        def train_dataloader(self) -> Any:
            return DataLoader(data, batch_size=self.batch_size, shuffle=True,
                              collate_fn=w.collate_fn)

    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    size = Tuner(trainer).scale_batch_size(Module(), mode="power")
    print(json.dumps({"batch_size": int(size)}))


# ---------------------------------------------------------------- measuring arms


class Bench:
    """Runs to the target (cached by config and seed) and the throughput table."""

    def __init__(self, w: Any, plan: Any) -> None:
        from perfpilot.tune.stages.batch.runs import BatchRuns

        self.w, self.plan = w, plan
        self.runs = BatchRuns(w, plan)
        self.cache: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.thr: dict[int, dict[str, float]] = {}

    def throughput(self, sizes: list[int], reps: int = 15, window_s: float = 2.0) -> None:
        """Interleaved windows; each size relative to the baseline batch, paired by round
        (see ``perfpilot.tune.stages.batch.stage.paired_point``)."""
        from perfpilot.tune.stages.batch.stage import paired_point

        b0 = self.plan.batch_size
        sizes = sorted(set(sizes) | {b0})
        xs: dict[int, dict[int, float]] = {b: {} for b in sizes}
        for r in range(reps):
            for b in sizes if r % 2 == 0 else sizes[::-1]:
                xs[b][r] = self.runs.throughput(b, window_s).measurements["samples_per_s"]
        self.runs.close()
        for b in sizes:
            p = paired_point(b, xs[b], xs[b0])
            self.thr[b] = {"median": p.samples_per_s, "ci_low": p.ci_low, "ci_high": p.ci_high,
                           "windows": [xs[b][r] for r in sorted(xs[b])]}

    def ttt(self, cfg: Any, seed: int, max_samples: int) -> dict[str, Any]:
        key = (cfg.batch_size, cfg.lr, cfg.warmup_steps, seed)
        hit = self.cache.get(key)
        if hit is not None and (hit["reached"] or hit["samples"] >= max_samples):
            return hit
        o = self.runs.time_to_target(cfg, seed=seed, max_samples=max_samples,
                                     eval_fraction=0.04, noise=None)
        m = o.measurements
        samples = m.get("samples_to_target", m.get("samples", 0))
        out = {"reached": o.state == "complete", "state": o.state, "samples": samples,
               "ttt_s": samples / self.thr[cfg.batch_size]["median"],
               "wall_ttt_s": m.get("ttt_s", m.get("train_time_s")),
               "eval_time_s": m.get("eval_time_s")}
        self.cache[key] = out
        return out


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    from perfpilot.measure import summarize

    reached = [r for r in runs if r["reached"]]
    out: dict[str, Any] = {"runs": len(runs), "reached": len(reached)}
    if len(reached) < len(runs) or not runs:
        cut = max((r["ttt_s"] for r in runs), default=0.0)
        return {**out, "ttt_s": None, "censored_above_s": cut}
    t = [r["ttt_s"] for r in runs]
    s = summarize(t) if len(t) >= 2 else None
    return {**out, "ttt_s": statistics.median(t), "ci_low": s.ci_low if s else None,
            "ci_high": s.ci_high if s else None,
            "samples": statistics.median(r["samples"] for r in runs),
            "wall_ttt_s": statistics.median(r["wall_ttt_s"] for r in runs)}


# ---------------------------------------------------------------- one workload


def bench_workload(name: str, budget_s: float, seeds: list[int], mem_fraction: float,
                   grid: bool) -> dict[str, Any]:
    import psutil

    from perfpilot.tune.stages.batch.lr import LrPolicy
    from perfpilot.tune.stages.batch.runs import RunConfig
    from perfpilot.tune.stages.batch.stage import canonical_lr
    from perfpilot.workload import load_workload

    w = load_workload(name)
    plan = w.baseline.replace(cpu_threads=1)
    b0, lr0 = plan.batch_size, plan.lr
    load0 = os.getloadavg()[0]
    log(f"{name}: perfpilot BatchStage, budget {budget_s:.0f} s")
    pp = perfpilot_arm(w, plan, budget_s, mem_fraction)
    pol = LrPolicy(**pp["evidence"]["lr_policy"])
    mem_bytes = int(psutil.virtual_memory().available * mem_fraction)
    bench = Bench(w, plan)
    n = bench.runs.dataset_size()
    log(f"{name}: peers' batch-size finders")
    peers = {"lightning": lightning_pick(name, mem_bytes),
             "accelerate": accelerate_pick(w, plan, n)}
    for v in peers.values():  # a pick above the data set trains as one full batch
        if "batch_size" in v:
            v["picked"], v["batch_size"] = v["batch_size"], min(v["batch_size"], n)

    def cfg(b: int, lr: float | None = None) -> Any:
        lr = canonical_lr(pol.lr(b) if lr is None else lr, lr0)
        return RunConfig(b, lr, pol.warmup_steps(b, lr))

    arms = {"baseline": RunConfig(b0, lr0, plan.warmup_steps),
            "perfpilot": RunConfig(pp["batch_size"], pp["lr"], pp["warmup_steps"])}
    arms.update({k: cfg(v["batch_size"]) for k, v in peers.items() if "batch_size" in v})
    cells = [cfg(b0 * 2**k if k >= 0 else b0 // 2**-k, lr0 * 2**j)
             for k, j in itertools.product(GRID_K[name], GRID_J[name])] if grid else []
    log(f"{name}: throughput at {len({c.batch_size for c in [*arms.values(), *cells]})} sizes")
    bench.throughput(sorted({c.batch_size for c in [*arms.values(), *cells]}))
    base_first = bench.ttt(arms["baseline"], seeds[0], 10**9)
    cap_s = LOST * base_first["ttt_s"]

    def limit(c: Any, seconds: float) -> int:
        return max(1, math.ceil(seconds * bench.thr[c.batch_size]["median"]))

    oracle: dict[str, Any] = {}
    if grid:
        log(f"{name}: oracle grid, {len(cells)} cells screened on seed {seeds[0]}")
        screen = {c: bench.ttt(c, seeds[0], limit(c, SCREEN_CUTOFF * base_first["ttt_s"]))
                  for c in cells}
        top = sorted((c for c in cells if screen[c]["reached"]),
                     key=lambda c: screen[c]["ttt_s"])[:ORACLE_TOP]
        oracle = {"screen": [{**c.key(), **screen[c]} for c in cells],
                  "top": [c.key() for c in top]}
        for i, c in enumerate(top):
            arms[f"oracle#{i + 1}"] = c
    runs: dict[str, list[dict[str, Any]]] = {a: [] for a in arms}
    for i, seed in enumerate(seeds):
        order = list(arms) if i % 2 == 0 else list(arms)[::-1]
        log(f"{name}: seed {seed}: {len(order)} arms")
        for a in order:
            if runs[a] and not runs[a][-1]["reached"]:
                continue  # lost on an earlier seed already: not reached within the cap
            runs[a].append(bench.ttt(arms[a], seed, limit(arms[a], cap_s)))
    table = {a: {**arms[a].key(), **summarize_runs(runs[a])} for a in arms}
    _oracle_row(table)
    verdicts = _verdicts(runs, table)
    return {"workload": name, "budget_s": budget_s, "seeds": seeds, "cpu_threads": 1,
            "load_avg_start": load0, "load_avg_end": os.getloadavg()[0],
            "throughput": bench.thr, "arms": table, "verdicts": verdicts,
            "peers": peers, "perfpilot": {k: v for k, v in pp.items() if k != "evidence"},
            "perfpilot_evidence": pp["evidence"], "oracle": oracle,
            "memory_budget_bytes": mem_bytes}


def _oracle_row(table: dict[str, Any]) -> None:
    done = {a: r for a, r in table.items() if a.startswith("oracle#") and r["ttt_s"]}
    if done:
        best = min(done, key=lambda a: done[a]["ttt_s"])
        table["oracle"] = {**done[best], "cell": best}


def _verdicts(runs: dict[str, list[dict[str, Any]]], table: dict[str, Any]) -> dict[str, Any]:
    """perfpilot against each arm: paired by seed through perfpilot.measure."""
    from perfpilot.measure import MIN_ROUNDS, compare_samples

    out: dict[str, Any] = {}
    pp = runs["perfpilot"]
    for a in runs:
        if a == "perfpilot" or a.startswith("oracle#"):
            continue
        other = runs[a]
        row = {"ratio_of_medians": None, "verdict": None}
        if table[a]["ttt_s"] and table["perfpilot"]["ttt_s"]:
            row["ratio_of_medians"] = table[a]["ttt_s"] / table["perfpilot"]["ttt_s"]
        if not table[a]["ttt_s"] and table["perfpilot"]["ttt_s"]:
            row["verdict"] = "faster (the other arm did not reach the target)"
        elif len(other) == len(pp) >= MIN_ROUNDS:
            c = compare_samples([r["ttt_s"] for r in other], [r["ttt_s"] for r in pp])
            row.update(verdict=c.verdict, ci_low=c.ci_low, ci_high=c.ci_high,
                       describe=c.describe())
            wall = compare_samples([r["wall_ttt_s"] for r in other],
                                   [r["wall_ttt_s"] for r in pp])
            row.update(wall_verdict=wall.verdict, wall_describe=wall.describe())
        out[a] = row
    if "oracle" in table and table["perfpilot"]["ttt_s"]:
        out["oracle"] = {"perfpilot_over_oracle": table["perfpilot"]["ttt_s"]
                         / table["oracle"]["ttt_s"]}
    return out


# ---------------------------------------------------------------- output


def print_table(r: dict[str, Any]) -> None:
    print(f"\n{r['workload']}: time to target, median over seeds {r['seeds']} "
          f"(load avg {r['load_avg_start']:.1f} -> {r['load_avg_end']:.1f})")
    print(markdown(r))
    for a, v in r["verdicts"].items():
        print(f"  perfpilot vs {a}: {v.get('describe') or v}")
        if v.get("wall_describe"):
            print(f"      wall clock: {v['wall_describe']}")


def markdown(r: dict[str, Any]) -> str:
    rows = ["| arm | batch | lr | samples to target | time to target s (95% CI) | wall s |"
            " vs baseline |", "|---|---|---|---|---|---|---|"]
    base = r["arms"]["baseline"]["ttt_s"]
    names = ["baseline", "perfpilot", "lightning", "accelerate", "oracle"]
    for a in names:
        if a not in r["arms"]:
            skip = r["peers"].get(a, {}).get("skipped")
            if skip:
                rows.append(f"| {a} | skipped: {skip} | | | | | |")
            continue
        x = r["arms"][a]
        if x["ttt_s"] is None:
            rows.append(f"| {a} | {x['batch_size']} | {x['lr']:.3g} | not reached | "
                        f"> {x['censored_above_s']:.2f} | | |")
            continue
        ci = f" ({x['ci_low']:.2f}-{x['ci_high']:.2f})" if x.get("ci_low") else ""
        rows.append(f"| {a} | {x['batch_size']} | {x['lr']:.3g} | {x['samples']:.0f} | "
                    f"{x['ttt_s']:.2f}{ci} | {x['wall_ttt_s']:.2f} | "
                    f"{base / x['ttt_s']:.2f}x |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_lightning"]:
        _lightning_child(argv[1], int(argv[2]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default="digits,charlm")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--budget-digits", default=BUDGETS["digits"])
    p.add_argument("--budget-charlm", default=BUDGETS["charlm"])
    p.add_argument("--memory-fraction", type=float, default=0.25)
    p.add_argument("--no-grid", action="store_true", help="skip the oracle grid")
    p.add_argument("--grid-k", help="oracle batch exponents, e.g. -1,0,1 (B0 * 2**k)")
    p.add_argument("--grid-j", help="oracle LR exponents, e.g. 0,1,2 (lr0 * 2**j)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    from perfpilot.commands.tune import parse_duration

    for opt, grid in (("grid_k", GRID_K), ("grid_j", GRID_J)):
        if getattr(args, opt):
            values = [int(v) for v in getattr(args, opt).split(",")]
            grid.update({name: values for name in grid})
    t0 = time.perf_counter()
    # Other workloads' results already in --out are kept (one workload can be rerun alone).
    old = json.loads(args.out.read_text()).get("results", []) if args.out.is_file() else []
    results = [r for r in old if r["workload"] not in args.workloads.split(",")]
    for name in args.workloads.split(","):
        budget = parse_duration(getattr(args, f"budget_{name}", "4m"), "--budget")
        t_w = time.perf_counter()
        r = bench_workload(name, budget, list(range(100, 100 + args.seeds)),
                           args.memory_fraction, grid=not args.no_grid)
        results.append(r)
        print_table(r)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        r["runtime_s"] = time.perf_counter() - t_w
        args.out.write_text(json.dumps({"results": results}, indent=1, default=str))
    print(f"\nruntime {time.perf_counter() - t0:.0f} s; wrote {args.out}")
    return 0


# ---------------------------------------------------------------- docs/benchmarks.md


def _batch_table(r: Doc) -> str:
    """The arms as :func:`markdown` writes them; a simpler table when an arm lacks a
    figure that one needs."""
    try:
        return markdown(r)
    except Exception:  # noqa: BLE001 - an arm without a figure: the table below
        pass
    rows = []
    for a, x in (r.get("arms") or {}).items():
        rows.append([a, cell(x.get("batch_size")), num(x.get("lr")), num(x.get("samples")),
                     secs(x.get("ttt_s"), x.get("ci_low"), x.get("ci_high"))
                     if x.get("ttt_s") is not None
                     else f"not reached (> {secs(x.get('censored_above_s'))})",
                     secs(x.get("wall_ttt_s"))])
    return table(["arm", "batch", "lr", "samples to target", "time to target (95% CI)",
                  "wall"], rows)


def section(ctx: Context) -> list[str]:
    doc = ctx.results.get("batch_size")
    out = header(ctx, "Batch size: perfpilot vs Lightning, Accelerate and a grid oracle",
                 "batch_size", "batch_size.py", doc)
    if not readable(doc):
        return out
    out += ["Time to target = samples to target (real runs, interpolated at the crossing) / "
            "samples per second at that batch; median over seeds with its 95% bootstrap "
            "interval. \"vs baseline\" is the baseline's time over the arm's. Verdicts pair "
            "perfpilot with each arm seed by seed (`perfpilot.measure.compare_samples`); "
            "the ratio is the other arm's time over perfpilot's (> 1: perfpilot faster).", ""]
    if is_num(doc.get("runtime_s")):
        out += [f"Benchmark run time: {secs(doc['runtime_s'])}.", ""]
    for r in doc.get("results") or []:
        out += [f"### {r.get('workload')}", "",
                f"Stage budget {secs(r.get('budget_s'))}; seeds {cell(r.get('seeds'))}; "
                f"load average {load_str(r.get('load_avg_start'), r.get('load_avg_end'))}"
                + (f"; this workload's benchmark took {secs(r['runtime_s'])}"
                   if is_num(r.get("runtime_s")) else "") + ".",
                "", _batch_table(r), ""]
        vrows = []
        for a, v in (r.get("verdicts") or {}).items():
            if "perfpilot_over_oracle" in v:
                vrows.append([a, f"perfpilot's time / oracle's: "
                              f"{times(v['perfpilot_over_oracle'])}", "", ""])
                continue
            ratio = times(v.get("ratio_of_medians"))
            paired = (times(None) if v.get("ci_low") is None else
                      f"{v.get('describe') or ''}")
            vrows.append([a, ratio, f"{v.get('verdict') or 'not enough seeds'}"
                          + (f": {paired}" if v.get("ci_low") is not None else ""),
                          v.get("wall_describe") or "–"])
        if vrows:
            out += [table(["perfpilot vs", "ratio of medians", "paired verdict (95% CI)",
                           "wall-clock verdict"], vrows), ""]
        skipped = [f"- {a}: skipped ({p['skipped']})"
                   for a, p in (r.get("peers") or {}).items() if "skipped" in p]
        picked = [f"- {a} picked batch {p.get('picked')}, trained at {p.get('batch_size')}"
                  + (f" (finder took {secs(p.get('tuning_s'))})" if "tuning_s" in p else "")
                  for a, p in (r.get("peers") or {}).items() if "picked" in p]
        pp = r.get("perfpilot") or {}
        if pp:
            picked.insert(0, f"- perfpilot chose batch {pp.get('batch_size')}, lr "
                             f"{num(pp.get('lr'))}, warmup {pp.get('warmup_steps')} in "
                             f"{secs(pp.get('tuning_s'))}: {pp.get('summary', '')}")
        out += [*picked, *skipped, ""]
    return out


SECTION = Section(order=20, files=("batch_size",), render=section)


if __name__ == "__main__":
    sys.exit(main())
