"""Benchmark: `perfpilot profile` on real third-party training scripts, beside its peers.

The scripts are the corpus of ``tests/real/corpus.json`` (unmodified ``pytorch/examples``
code, not committed: ``tests/real/README.md`` says how to materialize it; ``--corpus`` or
``PERFPILOT_CORPUS`` names its root). Each script runs, from a scratch directory, as

* ``plain``         ``python benchmarks/_stepclock.py CLOCK STOP script.py ARGS`` -- the
  script as ``__main__`` with one ``perf_counter()`` noted per ``backward()`` and
  ``Optimizer.step()``, so a plain per-step time exists;
* ``perfpilot``     ``python -m perfpilot.cli profile --quiet --json REC -- python script.py
  ARGS`` (the whole command: probes, the parent's analysis and the record);
* ``train-doctor``  ``train-doctor profile --json --out DIR -- python script.py ARGS`` (its
  default window: 5 warm-up + at least 50 steps and 2 s, then 5 steps under
  torch.profiler; it stops the script there, by ``SystemExit(0)``, when the script is
  longer);
* ``py-spy``        ``py-spy record -r RATE -f raw -o OUT -- python _stepclock.py ...``;

interleaved round by round, the order rotating each round (``--threads N`` caps torch's
threads in every arm alike: on a shared 2-core machine, two intra-op threads with a core
taken by another process make step times swing several-fold). A script that cannot be kept
short through its own arguments (``imagenet --dummy``) is ended after the manifest's
``window_steps`` by every arm alike: ``perfpilot profile --steps N`` (2 warm-up steps + N),
the clock after 2 + N optimizer steps, ``train-doctor profile --warmup-steps 2 --steps N
--seconds 0 --profiler-steps 0``.

Per tool and script:

* ``wall`` overhead: ``tool / plain - 1`` of the whole command's wall time, the median of
  paired per-round ratios with a 95% bootstrap interval from
  :func:`perfpilot.measure.compare_samples` (5 rounds or more; fewer give the median alone);
* ``steady`` overhead: the same for the mean step time of the steady steps (after 2 warm-up
  steps): perfpilot's from its record (the steady window's per-step phases, summed),
  train-doctor's from its evidence (``step_time_ms``, per optimizer step: times the
  script's optimizer steps per training step; none where its steps are printed loss
  lines), plain's and py-spy's from the clock;
* ``fixed``: the seconds the tool adds that per-step slowdown does not explain, per round
  ``(wall_tool - wall_plain) - steps * (step_tool - step_plain)``, median over rounds
  (start-up, the profiler window, teardown, the analysis).

Then, once per script outside the rounds, ``perfpilot profile --verify``: whether the top
finding's fix, applied by re-running the script with it, makes the script faster (the
verified speedup and its 95% interval), or why there is nothing to verify.

    .venv/bin/python benchmarks/real_scripts.py                   # every script, 5 rounds
    .venv/bin/python benchmarks/real_scripts.py --quick           # 3 rounds
    .venv/bin/python benchmarks/real_scripts.py --scripts regression,word_language_model

Prints a markdown table and writes ``benchmarks/results/real_scripts.json``. Without a
corpus it says so and exits 0, writing nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _context import Context, Section, header, readable  # noqa: E402  (sibling modules)
from _fmt import num, pct, secs, table, times  # noqa: E402
from real_reads import (  # noqa: E402
    WARMUP_STEPS,
    clock_steps,
    fixed_s,
    median_or_none,
    overhead,
    pyspy_samples,
    record_steps,
    step_marks,
    td_steps,
    verdict,
)

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "tests" / "real" / "corpus.json"
CLOCK = Path(__file__).resolve().parent / "_stepclock.py"
RESULTS = ROOT / "benchmarks" / "results" / "real_scripts.json"
TOOLS = ("perfpilot", "train-doctor", "py-spy")
TIMEOUT_S = 900

# --- the manifest and the commands ------------------------------------------------------


def load_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def script_path(manifest: dict[str, Any], spec: dict[str, Any], corpus: Path) -> Path:
    return corpus / manifest["sources"][spec["source"]]["root"] / spec["path"]


def script_args(spec: dict[str, Any], corpus: Path, out: Path) -> list[str]:
    return [a.replace("{corpus}", str(corpus)).replace("{out}", str(out))
            for a in spec["args"]]


def stop_arg(spec: dict[str, Any]) -> str:
    """The clock's STOP argument: the same number of steps as ``--steps N`` runs."""
    if not spec["window_steps"]:
        return "0"
    kind, per = step_marks(spec)
    return f"{kind}:{(WARMUP_STEPS + spec['window_steps']) * per}"


def commands(py: str, script: Path, args: list[str], spec: dict[str, Any],
             files: dict[str, str], rate: int) -> dict[str, list[str]]:
    """Each arm's command line; ``files`` names where each writes what is read back."""
    n = spec["window_steps"]
    clock = [py, str(CLOCK), files["clock"], stop_arg(spec), str(script), *args]
    td_window = (["--warmup-steps", str(WARMUP_STEPS), "--steps", str(n), "--seconds", "0",
                  "--profiler-steps", "0"] if n else [])
    bindir = Path(py).parent
    td = shutil.which("train-doctor") or str(bindir / "train-doctor")
    pyspy = shutil.which("py-spy") or str(bindir / "py-spy")
    return {
        "plain": clock,
        "perfpilot": [py, "-m", "perfpilot.cli", "profile", "--quiet", "--json", files["record"],
                      *(["--steps", str(n)] if n else []), "--", py, str(script), *args],
        "train-doctor": [td, "profile", "--json", "--out", files["td_dir"], *td_window, "--",
                         py, str(script), *args],
        "py-spy": [pyspy, "record", "-r", str(rate), "-f", "raw", "-o", files["pyspy"],
                   "--", *clock[:2], files["clock_pyspy"], *clock[3:]],
    }


# --- running ----------------------------------------------------------------------------


def thread_env(threads: int | None) -> dict[str, str] | None:
    """The environment every arm runs in: ``--threads N`` caps torch's intra-op threads
    (OMP/MKL) for all arms alike; None keeps the scripts' own default."""
    if not threads:
        return None
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def timed(cmd: list[str], cwd: Path, stdout: Path,
          env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process tree) of one run that must exit 0."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(stdout, "w") as out:
        res = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.PIPE, text=True,
                             timeout=TIMEOUT_S, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... exited {res.returncode}: "
                           f"{res.stderr[-600:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def read_arm(arm: str, files: dict[str, str], stdout: Path, spec: dict[str, Any]
             ) -> dict[str, Any]:
    """What one run of an arm says: steps, steady step time, its top item."""
    if arm in ("plain", "py-spy"):
        with open(files["clock" if arm == "plain" else "clock_pyspy"]) as f:
            steps, step_s = clock_steps(json.load(f), spec)
        got: dict[str, Any] = {"steps": steps, "step_s": step_s}
        if arm == "py-spy":
            got["samples"] = pyspy_samples(files["pyspy"])
        return got
    if arm == "perfpilot":
        with open(files["record"]) as f:
            steps, step_s, top = record_steps(json.load(f))
        return {"steps": steps, "step_s": step_s, "top": top}
    out = json.loads(stdout.read_text())
    with open(Path(out["run_dir"]) / "evidence.json") as f:
        evidence = json.load(f)
    steps, step_s, top, boundary = td_steps(out, evidence, spec)
    return {"steps": steps, "step_s": step_s, "top": top, "boundary": boundary,
            "stopped_script": (evidence.get("steps") or {}).get("end_reason")
            == "window_complete"}


def verify(py: str, script: Path, args: list[str], spec: dict[str, Any],
           tmp: Path) -> dict[str, Any]:
    """``perfpilot profile --verify`` once: the top finding and its measured fix."""
    rec = tmp / "verify.json"
    n = spec["window_steps"]
    cmd = [py, "-m", "perfpilot.cli", "profile", "--quiet", "--verify", "--json", str(rec),
           *(["--steps", str(n)] if n else []), "--", py, str(script), *args]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=TIMEOUT_S * 2)
    out: dict[str, Any] = {"wall_s": time.perf_counter() - t0}
    if not rec.exists():
        return {**out, "error": f"exit {res.returncode}: {res.stderr[-400:]}"}
    return {**out, **verdict(json.loads(rec.read_text()))}


def bench_script(manifest: dict[str, Any], spec: dict[str, Any], corpus: Path, py: str,
                 tools: list[str], rounds: int, rate: int, do_verify: bool,
                 threads: int | None = None) -> dict[str, Any]:
    script = script_path(manifest, spec, corpus)
    arms = ["plain", *tools]
    runs: dict[str, list[dict[str, Any]]] = {a: [] for a in arms}
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix=f"real_{spec['name']}_") as tmp_s:
        tmp = Path(tmp_s)
        for r in range(rounds):
            for arm in arms[r % len(arms):] + arms[:r % len(arms)]:
                if arm in errors:
                    continue
                work = tmp / f"{arm}_{r}"
                work.mkdir()
                files = {"clock": str(work / "clock.json"), "record": str(work / "rec.json"),
                         "td_dir": str(work / "td"), "pyspy": str(work / "pyspy.txt"),
                         "clock_pyspy": str(work / "clock_pyspy.json")}
                cmd = commands(py, script, script_args(spec, corpus, work), spec, files,
                               rate)[arm]
                try:
                    wall, cpu = timed(cmd, work, work / "stdout.txt", thread_env(threads))
                    runs[arm].append({"wall_s": wall, "cpu_s": cpu,
                                      **read_arm(arm, files, work / "stdout.txt", spec)})
                except (RuntimeError, OSError, ValueError, KeyError,
                        subprocess.TimeoutExpired) as e:
                    errors[arm] = str(e)[-500:]
                shutil.rmtree(work, ignore_errors=True)
        if "plain" in errors:
            raise RuntimeError(f"{spec['name']}: the plain run failed: {errors['plain']}")
        checked = verify(py, script, script_args(spec, corpus, tmp), spec, tmp) \
            if do_verify else None
    return summarize(spec, runs, errors, tools, checked)


def summarize(spec: dict[str, Any], runs: dict[str, list[dict[str, Any]]],
              errors: dict[str, str], tools: list[str],
              checked: dict[str, Any] | None) -> dict[str, Any]:
    plain = runs["plain"]
    out: dict[str, Any] = {
        "window_steps": spec["window_steps"], "plain": {
            "wall_s": statistics.median(p["wall_s"] for p in plain),
            "step_s": median_or_none([p["step_s"] for p in plain]),
            "steps": [p["steps"] for p in plain], "runs": plain},
        "tools": {}, "verify": checked}
    for tool in tools:
        if tool in errors:
            out["tools"][tool] = {"skipped": errors[tool]}
            continue
        t = runs[tool]
        out["tools"][tool] = {
            "wall_s": statistics.median(x["wall_s"] for x in t),
            "wall": overhead([p["wall_s"] for p in plain], [x["wall_s"] for x in t]),
            "cpu": overhead([p["cpu_s"] for p in plain], [x["cpu_s"] for x in t]),
            "step_s": median_or_none([x["step_s"] for x in t]),
            "steady": overhead([p["step_s"] or 0 for p in plain],
                               [x["step_s"] or 0 for x in t]),
            "fixed_s": fixed_s(plain, t), "steps": [x["steps"] for x in t],
            "top": t[-1].get("top"), "runs": t}
    return out


# --- report -----------------------------------------------------------------------------


def _top(t: dict[str, Any]) -> str:
    top = t.get("top") or {}
    if not top:
        return "none"
    sp = top.get("estimated_speedup")
    return f"`{top.get('id')}`" + (f" (est. {times(sp)})" if sp else "")


def _verified(v: dict[str, Any] | None) -> str:
    if not v:
        return "not run"
    if "ratio" in v:
        return f"{times(v['ratio'], v.get('ci_low'), v.get('ci_high'))}: {v['result']}"
    return str(v.get("result") or v.get("error"))


def rows(results: dict[str, Any]) -> list[list[str]]:
    out = []
    for name, r in results.items():
        if not isinstance(r, dict) or "plain" not in r:
            continue
        p = r["plain"]
        stop = f", ended after {WARMUP_STEPS}+{r['window_steps']} steps" \
            if r.get("window_steps") else ""
        for tool, t in (r.get("tools") or {}).items():
            first = tool == next(iter(r["tools"]))
            lead = [f"{name}{stop}" if first else "",
                    f"{secs(p.get('wall_s'))}, {secs(p.get('step_s'))}/step" if first else ""]
            if "skipped" in t:
                out.append([*lead, tool, f"failed: {str(t['skipped'])[:120]}", "", "", "",
                            "", ""])
                continue
            w, s = t.get("wall") or {}, t.get("steady") or {}
            steps = sorted(set(t.get("steps") or []))
            out.append([*lead, tool, pct(w.get("overhead"), w.get("ci_low"), w.get("ci_high")),
                        pct(s.get("overhead"), s.get("ci_low"), s.get("ci_high")),
                        secs(t.get("fixed_s")), ",".join(map(str, steps)) or "–",
                        _top(t) if tool != "py-spy" else "(stacks only)",
                        _verified(r.get("verify")) if tool == "perfpilot" else ""])
    return out


HEADER = ["script", "plain (wall, step)", "tool", "wall overhead", "steady (per step)",
          "fixed", "steps seen", "top finding", "top fix, verified"]


def markdown(results: dict[str, Any]) -> str:
    return table(HEADER, rows(results))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default=os.environ.get("PERFPILOT_CORPUS", ""),
                    help="corpus root (default: $PERFPILOT_CORPUS)")
    ap.add_argument("--scripts", default=None, help="comma-separated names (default: all)")
    ap.add_argument("--rounds", type=int, default=None, help="default 5 (3 with --quick)")
    ap.add_argument("--quick", action="store_true", help="3 rounds")
    ap.add_argument("--rate", type=int, default=100, help="py-spy's sampling rate")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--no-verify", action="store_true", help="skip perfpilot --verify")
    ap.add_argument("--threads", type=int, default=None,
                    help="OMP/MKL threads for every arm of the timed rounds (default: the "
                         "scripts' own); --verify always runs with the scripts' default")
    ap.add_argument("--out", type=Path, default=RESULTS, help="result JSON path")
    args = ap.parse_args()
    corpus = Path(args.corpus) if args.corpus else None
    if corpus is None or not corpus.is_dir():
        print("real_scripts: skipped, no corpus (set PERFPILOT_CORPUS or --corpus; "
              "tests/real/README.md says how to materialize it); nothing written")
        return
    manifest = load_manifest()
    specs = {s["name"]: s for s in manifest["scripts"]}
    names = [n.strip() for n in args.scripts.split(",")] if args.scripts else list(specs)
    rounds = args.rounds or (3 if args.quick else 5)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    py = sys.executable
    t_start, load0 = time.perf_counter(), os.getloadavg()
    results: dict[str, Any] = {}
    for name in names:
        spec = specs[name]
        missing = [m for m in spec["needs_modules"] if _missing(py, m)]
        if missing:
            results[name] = {"skipped": f"{py} cannot import {', '.join(missing)}"}
            print(f"{name}: skipped, {results[name]['skipped']}", flush=True)
            continue
        load_before = os.getloadavg()
        r = bench_script(manifest, spec, corpus, py, tools, rounds, args.rate,
                         not args.no_verify, args.threads)
        r["loadavg_before"], r["loadavg_after"] = load_before, os.getloadavg()
        results[name] = r
        print(f"{name}: plain {r['plain']['wall_s']:.1f}s; " + "; ".join(
            f"{t} {pct((r['tools'][t].get('wall') or {}).get('overhead'))}"
            for t in tools) + f"; verify: {_verified(r['verify'])}", flush=True)
    print("\n" + markdown(results))
    elapsed = time.perf_counter() - t_start
    from _machine import machine_info, versions

    payload = {"benchmark": "real_scripts",
               "command": " ".join([Path(py).name, *sys.argv]), "rounds": rounds,
               "threads": args.threads,
               "rate_hz": args.rate, "manifest": str(MANIFEST.relative_to(ROOT)),
               "corpus_commit": {k: v["commit"] for k, v in manifest["sources"].items()},
               "commands": {t: " ".join(c) for t, c in commands(
                   "python", Path("script.py"), ["ARGS"], specs[names[0]],
                   {k: k.upper() for k in ("clock", "record", "td_dir", "pyspy",
                                           "clock_pyspy")}, args.rate).items()},
               "scripts": results,
               "machine": {**machine_info(py), "loadavg_start": load0,
                           "loadavg_end": os.getloadavg(), "versions": versions()},
               "elapsed_s": elapsed, "finished_at": time.time()}
    payload["machine"].pop("gpu", None)
    payload["machine"]["versions"]["torchvision"] = _version(py, "torchvision")
    out = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    from perfpilot.jsonio import write_json_atomic  # the project's one atomic writer

    write_json_atomic(out, payload)
    print(f"\n{elapsed / 60:.1f} min; load average {load0[0]:.1f} -> {os.getloadavg()[0]:.1f}; "
          f"wrote {out}")


def _version(py: str, dist: str) -> str | None:
    res = subprocess.run([py, "-c", "import importlib.metadata as m, sys; "
                          "print(m.version(sys.argv[1]))", dist], capture_output=True,
                         text=True, timeout=60)
    return res.stdout.strip() or None if res.returncode == 0 else None


def _missing(py: str, module: str) -> bool:
    return subprocess.run([py, "-c", f"import {module}"], capture_output=True,
                          timeout=300).returncode != 0


# ---------------------------------------------------------------- docs/benchmarks.md


def section(ctx: Context) -> list[str]:
    doc = ctx.results.get("real_scripts")
    out = header(ctx, "", "real_scripts", "real_scripts.py", doc)[2:]
    out = ["### Real third-party scripts, perfpilot beside train-doctor and py-spy "
           "(`real_scripts.py`)", "", *out]
    if not readable(doc):
        return out
    scripts = doc.get("scripts") or {}
    out += [f"Unmodified `pytorch/examples` scripts (`tests/real/corpus.json`, commit "
            f"`{str((doc.get('corpus_commit') or {}).get('pytorch/examples', '?'))[:9]}`; "
            "not in the repository, see `tests/real/README.md`), "
            f"{doc.get('rounds', '–')} interleaved rounds each. Wall overhead = the "
            "command's wall time / plain − 1; steady = mean steady step time / plain's − 1 "
            "(median of paired per-round ratios, 95% bootstrap interval from 5 rounds); "
            "fixed = the extra seconds per-step slowdown does not explain. \"steps seen\": "
            "what each tool counted as training steps. The plain run notes one clock per "
            "step (`benchmarks/_stepclock.py`). The last column is `perfpilot profile "
            "--verify`: the top finding's fix applied in a re-run, its measured speedup. "
            "`regression` draws its targets unseeded, so its step count differs run to run; "
            "a script ended after a window runs the same number of steps in every arm, "
            "except that perfpilot's `--steps N` adds the steps of its torch.profiler window "
            "(and keeps one steady step fewer than N: `tests/real` marks it as a known bug). "
            "The run needs the corpus and an environment with torchvision (both in "
            "`tests/real/README.md`), so `run_all --quick` leaves it out.", ""]
    v = (doc.get("machine") or {}).get("versions") or {}
    out += [f"Measured as `{doc.get('command', '?')}` with `PERFPILOT_CORPUS` set"
            + (f", torch's threads capped at {doc['threads']} in every timed arm"
               if doc.get("threads") else "")
            + "; " + ", ".join(f"{k} {v.get(k)}" for k in
                               ("torch", "torchvision", "train-doctor", "py-spy") if v.get(k))
            + ".", ""]
    loads = [f"{n} {num((r.get('loadavg_before') or [None])[0])}"
             for n, r in scripts.items() if isinstance(r, dict) and "plain" in r]
    if loads:
        out += ["Load average (1 min) when each script's rounds began: " + ", ".join(loads)
                + ".", ""]
    body = rows(scripts)
    if body:
        out += [table(HEADER, body), ""]
    skipped = [f"{n}: {r['skipped']}" for n, r in scripts.items()
               if isinstance(r, dict) and "skipped" in r]
    if skipped:
        out += ["Skipped: " + "; ".join(skipped) + ".", ""]
    if isinstance(doc.get("elapsed_s"), (int, float)):
        out += [f"Benchmark run time: {secs(doc['elapsed_s'])}.", ""]
    return out


SECTION = Section(order=12, files=("real_scripts",), render=section)


if __name__ == "__main__":
    main()
