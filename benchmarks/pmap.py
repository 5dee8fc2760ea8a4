"""Benchmark: perfpilot.pmap against serial, multiprocessing.Pool and joblib.

1. CPU-bound pure-Python calls (~10 ms each): wall time of serial, ``pmap`` (auto and
   ``backend="process"``), ``multiprocessing.Pool`` and joblib; speedup over serial
   (target: >= 1.8x on 2 cores).
2. Tiny calls (``x + 1``): per-task overhead ``(T - T_serial) / n`` of ``pmap`` (process
   backend, and ``auto``, which runs them serially), ``Pool.map`` and joblib (target: pmap
   no worse than joblib).

"cold" includes starting the workers (pmap's shared pool and joblib's loky executor are
ended, untimed, before a cold run; ``Pool`` is created in the run), "warm" reuses them
(pmap and joblib keep their workers between maps by default; ``Pool`` is created once).
3. The Ray backend on a local Ray: start-up and speedup over serial on the CPU-bound calls.

Variants run interleaved in every round (so machine drift hits all of them) and the
figures are medians over rounds; speedups are medians of per-round ratios. The machine is
shared: the load average is recorded. Writes ``benchmarks/results/pmap.json``.

    .venv/bin/python benchmarks/pmap.py                # full (about 2-3 minutes)
    .venv/bin/python benchmarks/pmap.py --quick        # fewer rounds and items
    .venv/bin/python benchmarks/pmap.py --no-ray
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _context import Context, Section, header, readable
from _fmt import ci, is_num, num, secs, table, times

RESULTS = Path(__file__).resolve().parent / "results" / "pmap.json"


def cpu_bound(x: int) -> int:
    s = 0
    for i in range(100_000):
        s += i * i % 7
    return s + x


def tiny(x: int) -> int:
    return x + 1


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def rounds(variants: dict[str, Callable[[], Any]], n_rounds: int,
           setup: dict[str, Callable[[], Any]] | None = None) -> dict[str, list[float]]:
    """Each round runs every variant once, in a rotated order (drift hits all alike);
    ``setup[name]`` runs untimed before its variant (e.g. to make a pool cold)."""
    names = list(variants)
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(n_rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            (setup or {}).get(name, lambda: None)()
            times[name].append(timed(variants[name]))
        print(f"  round {r + 1}/{n_rounds}: " + ", ".join(
            f"{k} {times[k][-1]:.3f}s" for k in names), file=sys.stderr, flush=True)
    return times


def summary(times: dict[str, list[float]], base: str, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, ts in times.items():
        ratios = [b / t for b, t in zip(times[base], ts, strict=True)]
        over = [(t - b) / n for b, t in zip(times[base], ts, strict=True)]
        out[name] = {"median_s": statistics.median(ts), "min_s": min(ts), "times_s": ts,
                     "speedup_vs_serial": statistics.median(ratios),
                     "overhead_per_task_us": statistics.median(over) * 1e6}
    return out


def cold_setup() -> dict[str, Callable[[], Any]]:
    """Untimed steps that end the warm workers pmap and joblib keep between maps."""
    from joblib.externals.loky import get_reusable_executor

    from perfpilot.parallel import _pool

    return {"pmap_process_cold": _pool.shutdown,
            "joblib_cold": lambda: get_reusable_executor().shutdown(wait=True)}


def bench_cpu(n: int, n_rounds: int, cores: int) -> dict[str, Any]:

    from perfpilot import pmap

    items = list(range(n))
    variants = {
        "serial": lambda: [cpu_bound(x) for x in items],
        "pmap_auto": lambda: pmap(cpu_bound, items, progress=False),
        "pmap_process_cold": lambda: pmap(cpu_bound, items, backend="process", progress=False),
        "pmap_process_warm": lambda: pmap(cpu_bound, items, backend="process", progress=False),
        "mp_pool_cold": lambda: _pool_map(cpu_bound, items, cores),
        "joblib_cold": lambda: _joblib(cpu_bound, items, cores),
        "joblib_warm": lambda: _joblib(cpu_bound, items, cores),
    }
    return summary(rounds(variants, n_rounds, cold_setup()), "serial", n)


def _joblib(fn: Callable[[int], int], items: list[int], cores: int) -> list[int]:
    import joblib

    return joblib.Parallel(n_jobs=cores)(joblib.delayed(fn)(x) for x in items)


def _pool_map(fn: Callable[[int], int], items: list[int], cores: int) -> list[int]:
    with multiprocessing.Pool(cores) as pool:
        return pool.map(fn, items)


def bench_tiny(n: int, n_rounds: int, cores: int) -> dict[str, Any]:
    from perfpilot import pmap

    items = list(range(n))
    warm_pool = multiprocessing.Pool(cores)
    variants = {
        "serial": lambda: [tiny(x) for x in items],
        "pmap_auto": lambda: pmap(tiny, items, progress=False),
        "pmap_process_cold": lambda: pmap(tiny, items, backend="process", progress=False),
        "mp_pool_cold": lambda: _pool_map(tiny, items, cores),
        "joblib_cold": lambda: _joblib(tiny, items, cores),
        "pmap_process_warm": lambda: pmap(tiny, items, backend="process", progress=False),
        "mp_pool_warm": lambda: warm_pool.map(tiny, items),
        "joblib_warm": lambda: _joblib(tiny, items, cores),
    }
    try:
        return summary(rounds(variants, n_rounds, cold_setup()), "serial", n)
    finally:
        warm_pool.close()


def bench_worker_start(n_rounds: int, cores: int) -> dict[str, Any]:
    """Seconds from ProcessExecutor() to the first result of every worker."""
    from perfpilot.execute import ProcessExecutor

    times = []
    for _ in range(n_rounds):
        t0 = time.perf_counter()
        with ProcessExecutor(cores) as ex:
            [f.result() for f in [ex.submit(time.sleep, 0.05) for _ in range(cores)]]
            times.append(time.perf_counter() - t0 - 0.05)
    return {"median_s": statistics.median(times), "times_s": times}


def bench_ray(n: int, n_rounds: int, cores: int) -> dict[str, Any]:
    try:
        import ray
    except ImportError:
        return {"skipped": "ray is not installed (pip install 'perfpilot[ray]')"}
    from perfpilot import pmap

    t0 = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    start_s = time.perf_counter() - t0
    items = list(range(n))
    try:
        pmap(cpu_bound, items[:cores * 4], backend="ray", progress=False)  # warm Ray's workers
        variants = {"serial": lambda: [cpu_bound(x) for x in items],
                    "pmap_ray": lambda: pmap(cpu_bound, items, backend="ray", progress=False)}
        out = summary(rounds(variants, n_rounds), "serial", n)
    finally:
        ray.shutdown()
    return {"ray_version": ray.__version__, "ray_start_s": start_s, **out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    from perfpilot.execute import usable_cores

    cores = usable_cores()
    r = 3 if args.quick else 7
    load0 = os.getloadavg()
    print(f"{cores} usable cores, load average {load0[0]:.2f}", file=sys.stderr)
    res: dict[str, Any] = {
        "machine": {"cores": cores, "python": platform.python_version(),
                    "platform": platform.platform(), "load_avg_start": load0,
                    "cpu_pressure_start": _read("/proc/pressure/cpu"),
                    "sched_autogroup": _read("/proc/sys/kernel/sched_autogroup_enabled")},
        "worker_start": bench_worker_start(r, cores),
        "cpu_bound": {"n": 100 if args.quick else 200, "per_call": "~10 ms pure Python"},
        "tiny": {"n": 20_000 if args.quick else 100_000, "per_call": "x + 1"},
    }
    res["cpu_bound"].update(bench_cpu(res["cpu_bound"]["n"], r, cores))
    res["tiny"].update(bench_tiny(res["tiny"]["n"], r, cores))
    if not args.no_ray:
        res["ray"] = bench_ray(res["cpu_bound"]["n"], r, cores)
    res["machine"]["load_avg_end"] = os.getloadavg()
    res["machine"]["cpu_pressure_end"] = _read("/proc/pressure/cpu")
    report(res)
    RESULTS.parent.mkdir(exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(res, indent=2) + "\n")
    tmp.replace(RESULTS)
    print(f"wrote {RESULTS}")


def _read(path: str) -> str | None:
    """A kernel file's first line (CPU pressure, autogroup flag), for the record."""
    try:
        with open(path) as f:
            return f.readline().strip()
    except OSError:
        return None


def report(res: dict[str, Any]) -> None:
    m = res["machine"]
    print(f"pmap benchmark: {m['cores']} cores, load {m['load_avg_start'][0]:.1f} -> "
          f"{m['load_avg_end'][0]:.1f}; CPU pressure {m['cpu_pressure_end']}; "
          f"worker start {res['worker_start']['median_s']:.3f} s")
    cpu = res["cpu_bound"]
    print(f"\nCPU-bound, {cpu['n']} calls ({cpu['per_call']}): median wall, speedup vs serial")
    for k in ("serial", "pmap_auto", "pmap_process_cold", "pmap_process_warm", "mp_pool_cold",
              "joblib_cold", "joblib_warm"):
        print(f"  {k:<18} {cpu[k]['median_s']:7.3f} s  {cpu[k]['speedup_vs_serial']:5.2f}x")
    tiny_ = res["tiny"]
    print(f"\nTiny calls, {tiny_['n']} x ({tiny_['per_call']}): per-task overhead vs serial")
    for k in ("pmap_auto", "pmap_process_cold", "mp_pool_cold", "joblib_cold",
              "pmap_process_warm", "mp_pool_warm", "joblib_warm"):
        print(f"  {k:<18} {tiny_[k]['overhead_per_task_us']:8.2f} us/task  "
              f"({tiny_[k]['median_s']:.3f} s)")
    ray = res.get("ray")
    if ray and "skipped" not in ray:
        print(f"\nRay {ray['ray_version']} (local, start {ray['ray_start_s']:.1f} s): "
              f"pmap_ray {ray['pmap_ray']['median_s']:.3f} s vs serial "
              f"{ray['serial']['median_s']:.3f} s = {ray['pmap_ray']['speedup_vs_serial']:.2f}x")
    elif ray:
        print(f"\nRay: {ray['skipped']}")


# ---------------------------------------------------------------- docs/benchmarks.md


def _paired(base: list[float], other: list[float]) -> dict[str, Any] | None:
    """Speedup over serial with its 95% interval from interleaved rounds."""
    from perfpilot.measure import MIN_ROUNDS, compare_samples

    if len(base) != len(other) or len(base) < MIN_ROUNDS or min(base + other) <= 0:
        return None
    c = compare_samples(base, other, paired=True)
    return {"mid": c.ratio, "lo": c.ci_low, "hi": c.ci_high}


def _median_spread(xs: list[float], kind: str) -> str:
    """Median with a 95% bootstrap interval, or the range when too few rounds."""
    from perfpilot.measure import MIN_ROUNDS, median_ci

    f = {"s": secs, "x": times}.get(kind, lambda m, lo=None, hi=None: num(m) + ci(lo, hi))
    if not xs:
        return "–"
    med = statistics.median(xs)
    if len(xs) >= MIN_ROUNDS:
        lo, hi = median_ci(xs)
        return f(med, lo, hi)
    return f(med) + f" (range {num(min(xs))}–{num(max(xs))}, {len(xs)} rounds)"


def section(ctx: Context) -> list[str]:
    doc = ctx.results.get("pmap")
    out = header(ctx, "pmap vs multiprocessing.Pool, joblib and Ray", "pmap", "pmap.py", doc)
    if not readable(doc):
        return out
    m = doc.get("machine") or {}
    if m.get("cpu_pressure_end"):
        out += [f"CPU pressure at the end: `{m['cpu_pressure_end']}`.", ""]
    ws = doc.get("worker_start") or {}
    if ws:
        out += [f"Worker start (all workers answering): "
                f"{_median_spread(ws.get('times_s') or [], 's')}.", ""]
    out += ["Medians over interleaved rounds; speedups are medians of per-round ratios to "
            "serial with their 95% bootstrap interval (a range when fewer rounds than an "
            "interval needs).", ""]
    for key, title in (("cpu_bound", "CPU-bound calls"), ("tiny", "Tiny calls")):
        sec = doc.get(key) or {}
        if not sec:
            continue
        serial = (sec.get("serial") or {}).get("times_s") or []
        n = sec.get("n")
        rows = []
        for name, v in sec.items():
            if not isinstance(v, dict) or "median_s" not in v:
                continue
            ts = v.get("times_s") or []
            sp = _paired(serial, ts) if name != "serial" else None
            speed = (times(sp["mid"], sp["lo"], sp["hi"]) if sp
                     else _median_spread([b / t for b, t in zip(serial, ts, strict=False)
                                          if t > 0], "x") if name != "serial" else "1x")
            over = "–"
            if name != "serial" and is_num(n) and len(ts) == len(serial):
                over = _median_spread([(t - b) / n * 1e6 for b, t in zip(serial, ts,
                                                                         strict=True)], "")
            rows.append([name, secs(v.get("median_s")), speed, over])
        out += [f"### {title}: {num(n)} x {sec.get('per_call', '')}", "",
                table(["variant", "median wall", "speedup vs serial",
                       "overhead per task (µs)"], rows), ""]
    ray = doc.get("ray")
    if isinstance(ray, dict):
        if "skipped" in ray:
            out += [f"Ray: skipped ({ray['skipped']}).", ""]
        else:
            serial = (ray.get("serial") or {}).get("times_s") or []
            pr = ray.get("pmap_ray") or {}
            sp = _paired(serial, pr.get("times_s") or [])
            out += [f"Ray {ray.get('ray_version')} (local; start {secs(ray.get('ray_start_s'))}):"
                    f" `pmap(backend=\"ray\")` {secs(pr.get('median_s'))} vs serial "
                    f"{secs((ray.get('serial') or {}).get('median_s'))}, speedup "
                    + (times(sp["mid"], sp["lo"], sp["hi"]) if sp
                       else times(pr.get("speedup_vs_serial"))) + ".", ""]
    return out


SECTION = Section(order=40, files=("pmap",), render=section)


if __name__ == "__main__":
    main()
