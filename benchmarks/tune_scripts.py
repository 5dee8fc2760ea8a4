"""Benchmark: tuning unmodified training scripts, `perfpilot tune` beside `train-doctor fix`.

Each script (``examples/scripts/loader_bound.py``; with ``PERFPILOT_CORPUS`` set also the
corpus of ``tests/real/corpus.json``, run with the same arguments as
``benchmarks/real_scripts.py``) is handed, unmodified, to each tuner, in the same session,
the tool going first alternating script by script:

* ``train-doctor fix --json --out TD -- python script.py ARGS`` (profiles, tries the
  changes it can inject, keeps those its paired compare calls faster, writes a patch);
* ``python -m perfpilot.cli tune --budget B --out PP -- python script.py ARGS``
  (``PP/record.json`` ``perfpilot.script-tune/1``, ``PP/train.patch``, ``PP/plan.json``).

Each tool runs on a scratch copy of the script's folder (the corpus and the repository
are never written to). Per tool and script the row records what the tool says (its proven
speedup and interval, whether it kept a change, what it changed, every candidate it
tried, its wall time), whether its patch applies (``git apply --check`` in another clean
copy of the folder), and whether the patched script is in fact faster: the original and
the patched copy (under ``perfpilot run-script --plan`` when perfpilot's plan has knobs
only its launcher applies) run plain through ``benchmarks/_stepclock.py``, interleaved
for ``--rounds`` rounds (the order alternating), compared by the median of paired per-round
ratios of the steady step time and of the wall time, with 95% bootstrap intervals
(:func:`perfpilot.measure.compare_samples`) and the count of rounds the patched run won.
A tool that fails is a row with its error; the other rows still run.

    .venv/bin/python benchmarks/tune_scripts.py                          # both tools
    .venv/bin/python benchmarks/tune_scripts.py --only-tool train-doctor --quick
    PERFPILOT_CORPUS=/work/corpus .venv/bin/python benchmarks/tune_scripts.py \\
        --scripts loader_bound,dcgan --rounds 5 --budget 5m

Run it with a Python that has torch (and torchvision for the corpus's dcgan and
imagenet) and train-doctor; perfpilot is imported from this checkout's ``src``. Prints a
markdown table (load average before -> after each script) and writes
``benchmarks/results/tune_scripts.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
# perfpilot from this checkout (its statistics, its atomic writer), whichever Python runs
# this: the peers' environment need not have perfpilot installed.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "src"))
from _context import Context, Section, header, readable  # noqa: E402  (sibling modules)
from _fmt import changes_str, load_str, secs, table, times  # noqa: E402
from real_reads import clock_steps  # noqa: E402
from tune_reads import ab_summary, read_perfpilot, read_train_doctor  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CLOCK = Path(__file__).resolve().parent / "_stepclock.py"
RESULTS = ROOT / "benchmarks" / "results" / "tune_scripts.json"
TOOLS = ("perfpilot", "train-doctor")
TOOL_TIMEOUT_S = 3600
RUN_TIMEOUT_S = 900

# The example: the tools get 3 epochs (192 steps); the A/B runs stop after AB_STEPS.
EXAMPLE = {"name": "loader_bound", "path": str(ROOT / "examples" / "scripts" / "loader_bound.py"),
           "args": ["--epochs", "3"], "needs_modules": ["torch", "numpy"],
           "script_counts": {"optimizer_steps_per_step": 1, "backward_per_step": 1},
           "ab_steps": 60, "ab_steps_quick": 30}


# --- the scripts ------------------------------------------------------------------------


def corpus_scripts(corpus: Path) -> list[dict[str, Any]]:
    """The corpus's scripts as entries like :data:`EXAMPLE`: real_scripts.py's arguments;
    the A/B runs a window script (``imagenet``) for 2 + its window steps, the others to
    their end (they are short)."""
    from real_scripts import load_manifest, script_path

    m = load_manifest()
    out = []
    for s in m["scripts"]:
        out.append({"name": s["name"], "path": str(script_path(m, s, corpus)),
                    "args": list(s["args"]), "needs_modules": s["needs_modules"],
                    "script_counts": s["script_counts"],
                    "ab_steps": 2 + s["window_steps"] if s["window_steps"] else 0})
    return out


def args_for(entry: dict[str, Any], corpus: Path | None, work: Path) -> list[str]:
    return [a.replace("{corpus}", str(corpus or "")).replace("{out}", str(work))
            for a in entry["args"]]


def stop_for(entry: dict[str, Any], quick: bool) -> str:
    """_stepclock's STOP: ``optimizer:N`` (or ``backward:N``) for a bounded A/B run."""
    n = entry.get("ab_steps_quick") if quick and entry.get("ab_steps_quick") else \
        entry.get("ab_steps")
    if not n:
        return "0"
    counts = entry["script_counts"]
    kind = "optimizer" if counts["optimizer_steps_per_step"] else "backward"
    return f"{kind}:{n * (counts['optimizer_steps_per_step'] or counts['backward_per_step'])}"


# --- running ----------------------------------------------------------------------------


def pp_env() -> dict[str, str]:
    """The environment of every run: perfpilot imported from this checkout's src."""
    src = str(ROOT / "src")
    old = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": src + (os.pathsep + old if old else "")}


def copy_folder(script: Path, into: Path) -> Path:
    """A clean copy of the script's folder under ``into``; returns the copied script."""
    dst = into / script.parent.name
    shutil.copytree(script.parent, dst, ignore=shutil.ignore_patterns(
        "__pycache__", ".train-doctor", "*.pt", "*.pth"))
    return dst / script.name


def tool_command(tool: str, py: str, td: str, script: Path, args: list[str], out: Path,
                 budget: str) -> list[str]:
    if tool == "train-doctor":
        return [td, "fix", "--json", "--no-card", "--out", str(out), "--", py, str(script),
                *args]
    return [py, "-m", "perfpilot.cli", "tune", "--budget", budget, "--out", str(out), "--",
            py, str(script), *args]


def run_tool(tool: str, py: str, td: str, entry: dict[str, Any], corpus: Path | None,
             tmp: Path, budget: str) -> dict[str, Any]:
    """Run one tuner on a scratch copy of the script's folder; what it said, its wall
    time and where its outputs are."""
    script = copy_folder(Path(entry["path"]), tmp / f"{tool}_src")
    work, out = tmp / f"{tool}_work", tmp / f"{tool}_out"
    work.mkdir()
    cmd = tool_command(tool, py, td, script, args_for(entry, corpus, work), out, budget)
    t0 = time.perf_counter()
    try:
        res = subprocess.run(cmd, cwd=work, capture_output=True, text=True,
                             timeout=TOOL_TIMEOUT_S, env=pp_env())
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": f"{type(e).__name__}: {e}"[-500:],
                "wall_s": time.perf_counter() - t0}
    wall = time.perf_counter() - t0
    try:
        got = read_train_doctor(res.stdout, out) if tool == "train-doctor" \
            else read_perfpilot(out)
    except (OSError, ValueError, KeyError, TypeError) as e:
        got = {"error": f"unreadable output: {type(e).__name__}: {e}"}
    got = {**got, "wall_s": wall, "exit_code": res.returncode,
           "command": " ".join(cmd[:3] + ["..."])}
    if res.returncode != 0 and not got.get("accepted"):
        got["error"] = (got.get("error") or "") + \
            f" (exit {res.returncode}: {res.stderr.strip()[-400:]})"
    return got


def patch_check(entry: dict[str, Any], patch: str | None, tmp: Path, tag: str
                ) -> tuple[dict[str, Any], Path | None]:
    """Whether ``patch`` applies (``git apply --check``, from a clean copy of the folder,
    then from the folder above it) and, when it does, the patched copy's script."""
    if not patch:
        return {"applies": None, "why": "no patch written"}, None
    if not Path(patch).read_text().strip():
        return {"applies": None, "why": "empty patch"}, None
    script = copy_folder(Path(entry["path"]), tmp / f"patched_{tag}")
    errors = []
    for where in (script.parent, script.parent.parent):
        chk = subprocess.run(["git", "apply", "--check", patch], cwd=where,
                             capture_output=True, text=True)
        if chk.returncode == 0:
            subprocess.run(["git", "apply", patch], cwd=where, check=True,
                           capture_output=True)
            return {"applies": True, "from": "folder" if where == script.parent
                    else "parent"}, script
        errors.append(chk.stderr.strip()[-300:])
    return {"applies": False, "why": " | ".join(errors)}, None


def clock_run(cmd_prefix: list[str], py: str, script: Path, args: list[str], stop: str,
              work: Path, entry: dict[str, Any]) -> dict[str, Any]:
    clock = work / "clock.json"
    t0 = time.perf_counter()
    res = subprocess.run([*cmd_prefix, py, str(CLOCK), str(clock), stop, str(script), *args],
                         cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True, timeout=RUN_TIMEOUT_S, env=pp_env())
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"exit {res.returncode}: {res.stderr.strip()[-400:]}")
    import json

    steps, step_s = clock_steps(json.loads(clock.read_text()), entry)
    return {"wall_s": wall, "step_s": step_s, "steps": steps}


def ab_test(py: str, entry: dict[str, Any], corpus: Path | None, patched: Path,
            launcher_plan: str | None, rounds: int, quick: bool, tmp: Path,
            tag: str) -> dict[str, Any]:
    """The original and the patched script, run plain, interleaved ``rounds`` times."""
    orig = copy_folder(Path(entry["path"]), tmp / f"orig_{tag}")
    stop = stop_for(entry, quick)
    launch = [py, "-m", "perfpilot.cli", "run-script", "--plan", launcher_plan, "--"] \
        if launcher_plan else []
    runs: dict[str, list[dict[str, Any]]] = {"original": [], "patched": []}
    for r in range(rounds):
        for arm in (("original", "patched") if r % 2 == 0 else ("patched", "original")):
            work = tmp / f"ab_{tag}_{arm}_{r}"
            work.mkdir()
            script, prefix = (orig, []) if arm == "original" else (patched, launch)
            try:
                runs[arm].append(clock_run(prefix, py, script, args_for(entry, corpus, work),
                                           stop, work, entry))
            except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as e:
                return {"error": f"{arm} run {r}: {e}"[-500:], "runs": runs}
            shutil.rmtree(work, ignore_errors=True)
    return {**ab_summary(runs["original"], runs["patched"]), "stop": stop,
            "with_launcher": bool(launcher_plan), "runs": runs}


def bench_tool(tool: str, py: str, td: str, entry: dict[str, Any], corpus: Path | None,
               tmp: Path, budget: str, rounds: int, quick: bool) -> dict[str, Any]:
    got = run_tool(tool, py, td, entry, corpus, tmp, budget)
    if got.get("error") and not got.get("accepted"):
        return got
    check, patched = patch_check(entry, got.get("patch_path"), tmp, tool)
    got["patch"] = check
    launcher = got.get("plan_path") if got.get("launcher") else None
    if patched is None and launcher:
        patched = copy_folder(Path(entry["path"]), tmp / f"patched_{tool}")
    if patched is None:
        got["ab"] = {"skipped": "nothing to apply" if check["applies"] is not False
                     else "the patch does not apply"}
        return got
    got["ab"] = ab_test(py, entry, corpus, patched, launcher, rounds, quick, tmp, tool)
    return got


def bench_script(entry: dict[str, Any], order: list[str], py: str, td: str,
                 corpus: Path | None, budget: str, rounds: int, quick: bool
                 ) -> dict[str, Any]:
    out: dict[str, Any] = {"order": order, "loadavg_before": list(os.getloadavg()),
                           "tools": {}}
    t0 = time.perf_counter()
    for tool in order:
        with tempfile.TemporaryDirectory(prefix=f"tune_{entry['name']}_{tool}_") as tmp:
            load0 = os.getloadavg()
            r = bench_tool(tool, py, td, entry, corpus, Path(tmp), budget, rounds, quick)
            r["loadavg_before"], r["loadavg_after"] = list(load0), list(os.getloadavg())
            out["tools"][tool] = r
        print(f"  {entry['name']} / {tool}: {summary_line(r)}", flush=True)
    out["loadavg_after"] = list(os.getloadavg())
    out["elapsed_s"] = time.perf_counter() - t0
    return out


def summary_line(r: dict[str, Any]) -> str:
    if r.get("error") and not r.get("accepted"):
        return f"failed: {str(r['error'])[:200]}"
    ab = r.get("ab") or {}
    step = ab.get("step") or {}
    return (f"claims {times(r.get('speedup'), r.get('ci_low'), r.get('ci_high'))}, "
            f"changes {changes_str(r.get('changes'))}, patch {patch_str(r)}, "
            f"A/B per step {times(step.get('speedup'), step.get('ci_low'), step.get('ci_high'))}"
            f"{' (' + ab['skipped'] + ')' if ab.get('skipped') else ''}; "
            f"{secs(r.get('wall_s'))}")


# --- report -----------------------------------------------------------------------------


def patch_str(r: dict[str, Any]) -> str:
    p = r.get("patch") or {}
    if p.get("applies") is True:
        return "applies"
    if p.get("applies") is False:
        return "does not apply"
    return p.get("why") or "–"


def _ab_cell(ab: dict[str, Any], key: str) -> str:
    if not ab:
        return "–"
    if ab.get("skipped") or ab.get("error"):
        return str(ab.get("skipped") or ("failed: " + str(ab["error"])[:80]))
    f = ab.get(key) or {}
    won = f" ({f['faster_rounds']}/{f['n']} rounds faster)" \
        if f.get("faster_rounds") is not None else ""
    return times(f.get("speedup"), f.get("ci_low"), f.get("ci_high")) + won


HEADER = ["script", "tool", "load", "tool wall", "tool's proven speedup", "kept", "changes",
          "patch", "patched vs original, per step", "wall"]
PENDING = "perfpilot figures: pending"


def rows(scripts: dict[str, Any], tools: tuple[str, ...] = TOOLS) -> list[list[str]]:
    out = []
    for name, s in scripts.items():
        if not isinstance(s, dict) or "tools" not in s:
            continue
        for tool in tools:
            r = (s.get("tools") or {}).get(tool)
            load = load_str((r or {}).get("loadavg_before"), (r or {}).get("loadavg_after"))
            if r is None or (tool == "perfpilot" and r.get("error")
                             and not r.get("accepted")):
                why = f" ({str(r['error'])[:100]})" if r and r.get("error") else ""
                out.append([name, tool, load if r else "–", PENDING + why, "", "", "", "",
                            "", ""] if tool == "perfpilot" else
                           [name, tool, "–", "not run", "", "", "", "", "", ""])
                continue
            if r.get("error") and not r.get("accepted"):
                out.append([name, tool, load, secs(r.get("wall_s")),
                            f"failed: {str(r['error'])[:120]}", "", "", "", "", ""])
                continue
            ab = r.get("ab") or {}
            out.append([name, tool, load, secs(r.get("wall_s")),
                        times(r.get("speedup"), r.get("ci_low"), r.get("ci_high")),
                        "yes" if r.get("accepted") else "no",
                        changes_str(r.get("changes")) if r.get("changes") else "none",
                        patch_str(r), _ab_cell(ab, "step"), _ab_cell(ab, "wall")])
    return out


def tried_lines(scripts: dict[str, Any]) -> list[str]:
    """One line per script and tool: every candidate, its fate and ratio."""
    out = []
    for name, s in scripts.items():
        for tool, r in ((s or {}).get("tools") or {}).items():
            cands = r.get("candidates") or []
            if not cands:
                if r.get("headline") or r.get("suggestions"):
                    out.append(f"- {name}, {tool}: nothing tried; "
                               f"{r.get('headline') or ''} (suggested only: "
                               f"{', '.join(r.get('suggestions') or []) or 'none'})")
                continue
            out.append(f"- {name}, {tool}: " + "; ".join(
                f"{c.get('name')} ({changes_str(c.get('changes'))}): {c.get('fate')}, "
                f"{times(c.get('ratio'), c.get('ci_low'), c.get('ci_high'))}"
                + (f", {c['reason']}" if c.get("reason") else "") for c in cands))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default=os.environ.get("PERFPILOT_CORPUS", ""),
                    help="corpus root (default: $PERFPILOT_CORPUS; without it only the "
                         "example)")
    ap.add_argument("--scripts", default=None, help="comma-separated names (default: all)")
    ap.add_argument("--rounds", type=int, default=None,
                    help="A/B rounds, patched vs original (default 5; 3 with --quick)")
    ap.add_argument("--budget", default=None, help="perfpilot tune --budget (default 5m; "
                                                    "2m with --quick)")
    ap.add_argument("--only-tool", choices=("perfpilot", "train-doctor", "both"),
                    default="both")
    ap.add_argument("--quick", action="store_true",
                    help="3 A/B rounds, shorter A/B runs, a 2m budget")
    ap.add_argument("--train-doctor", default=None, help="train-doctor executable "
                    "(default: on PATH, else beside this Python)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="result JSON path")
    a = ap.parse_args()
    py = sys.executable
    td = a.train_doctor or shutil.which("train-doctor") or str(Path(py).parent / "train-doctor")
    corpus = Path(a.corpus) if a.corpus and Path(a.corpus).is_dir() else None
    entries = [EXAMPLE, *(corpus_scripts(corpus) if corpus else [])]
    if a.scripts:
        wanted = [n.strip() for n in a.scripts.split(",")]
        entries = [e for e in entries if e["name"] in wanted]
    tools = list(TOOLS) if a.only_tool == "both" else [a.only_tool]
    rounds = a.rounds or (3 if a.quick else 5)
    budget = a.budget or ("2m" if a.quick else "5m")
    t_start, load0 = time.perf_counter(), os.getloadavg()
    results: dict[str, Any] = {}
    for i, entry in enumerate(entries):
        missing = [m for m in entry["needs_modules"] if _missing(py, m)]
        if missing:
            results[entry["name"]] = {"skipped": f"{py} cannot import {', '.join(missing)}"}
            print(f"{entry['name']}: skipped, {results[entry['name']]['skipped']}")
            continue
        order = tools if i % 2 == 0 else tools[::-1]
        print(f"{entry['name']}: {' then '.join(order)}", flush=True)
        results[entry["name"]] = bench_script(entry, order, py, td, corpus, budget, rounds,
                                              a.quick)
    print("\n" + table(HEADER, rows(results, tuple(tools))))
    for line in tried_lines(results):
        print(line)
    elapsed = time.perf_counter() - t_start
    from _machine import machine_info, versions

    from perfpilot.jsonio import write_json_atomic  # the project's one atomic writer

    payload = {"benchmark": "tune_scripts", "command": " ".join([Path(py).name, *sys.argv]),
               "rounds": rounds, "budget": budget, "quick": a.quick, "tools": tools,
               "corpus": bool(corpus),
               "commands": {t: " ".join(tool_command(t, "python", "train-doctor",
                                                     Path("script.py"), ["ARGS"], Path("OUT"),
                                                     budget)) for t in tools},
               "scripts": results,
               "machine": {**machine_info(py), "loadavg_start": list(load0),
                           "loadavg_end": list(os.getloadavg()), "versions": versions()},
               "elapsed_s": elapsed, "finished_at": time.time()}
    payload["machine"].pop("gpu", None)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(a.out.resolve(), payload)
    print(f"\n{elapsed / 60:.1f} min; load average {load0[0]:.1f} -> "
          f"{os.getloadavg()[0]:.1f}; wrote {a.out}")


def _missing(py: str, module: str) -> bool:
    return subprocess.run([py, "-c", f"import {module}"], capture_output=True,
                          timeout=300).returncode != 0


# ---------------------------------------------------------------- docs/benchmarks.md


def section(ctx: Context) -> list[str]:
    doc = ctx.results.get("tune_scripts")
    out = header(ctx, "", "tune_scripts", "tune_scripts.py", doc)[2:]
    out = ["## Tuning unmodified scripts: perfpilot tune vs train-doctor fix "
           "(`tune_scripts.py`)", "", *out]
    out += ["Each tool gets the script unmodified (`perfpilot tune --budget B --out DIR -- "
            "python script.py ARGS`, `train-doctor fix --json --out DIR -- python script.py "
            "ARGS`), on a scratch copy of its folder, the tool going first alternating "
            "script by script. \"Tool's proven speedup\" is what the tool itself reports "
            "(train-doctor: its paired compare of the kept change; perfpilot: "
            "`record.json` result). Then its patch is checked with `git apply --check` on a "
            "clean copy and the patched script (with `perfpilot run-script --plan` when the "
            "plan has launcher-only knobs) runs plain against the original, interleaved: "
            "speedup = original / patched, median of paired per-round ratios of the steady "
            "step time (and of the whole run's wall time) with a 95% bootstrap interval, and "
            "the rounds the patched run won.", ""]
    if not readable(doc):
        return out + [table(HEADER, [["loader_bound", "perfpilot", "–", PENDING, "", "",
                                      "", "", "", ""]]), ""]
    scripts = doc.get("scripts") or {}
    v = (doc.get("machine") or {}).get("versions") or {}
    out += [f"Measured as `{doc.get('command', '?')}`: {doc.get('rounds')} A/B rounds"
            + (f", perfpilot budget {doc['budget']}" if doc.get("budget") else "")
            + "; " + ", ".join(f"{k} {v.get(k)}" for k in ("torch", "train-doctor")
                               if v.get(k)) + ".", ""]
    out += [table(HEADER, rows(scripts)), ""]
    tried = tried_lines(scripts)
    if tried:
        out += ["What each tool tried (candidate, its fate and its measured ratio):", "",
                *tried, ""]
    skipped = [f"{n}: {r['skipped']}" for n, r in scripts.items()
               if isinstance(r, dict) and "skipped" in r]
    if skipped:
        out += ["Skipped: " + "; ".join(skipped) + ".", ""]
    if isinstance(doc.get("elapsed_s"), (int, float)):
        out += [f"Benchmark run time: {secs(doc['elapsed_s'])}.", ""]
    return out


SECTION = Section(order=35, files=("tune_scripts",), render=section)


if __name__ == "__main__":
    main()
