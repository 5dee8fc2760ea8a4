"""`perfpilot profile` on unmodified third-party training scripts (tests/real/corpus.json).

The scripts are not in this repository (see tests/real/README.md): these tests run only
when ``PERFPILOT_CORPUS`` names a materialized corpus root, and a script whose modules
(torchvision) this interpreter cannot import is skipped with that reason. Each script runs
twice from a scratch copy -- plain and under ``perfpilot profile --quiet --json`` -- and
the record must agree with what the script itself did: its exit code, the files it writes
(whole-module saves still load), its step count (the manifest's formula, or the count it
prints), evaluation kept apart, the batch as samples per step, the roles of its modules.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

MANIFEST = Path(__file__).with_name("corpus.json")
SPEC: dict[str, Any] = json.loads(MANIFEST.read_text())
SCRIPTS = {s["name"]: s for s in SPEC["scripts"]}
CORPUS = os.environ.get("PERFPILOT_CORPUS", "")
TIMEOUT_S = 300

pytestmark = pytest.mark.skipif(
    not CORPUS or not Path(CORPUS).is_dir(),
    reason="PERFPILOT_CORPUS is not set to a corpus root: the third-party scripts are not "
           "committed (tests/real/README.md says how to materialize them)")


@dataclass
class Run:
    """One script, run plain and profiled from scratch copies."""

    spec: dict[str, Any]
    plain: subprocess.CompletedProcess | None  # None: the script cannot end by itself
    profiled: subprocess.CompletedProcess
    record: dict[str, Any]
    out: Path  # the profiled run's working directory and {out}
    src: Path  # the profiled run's copy of the script's files


def _missing_modules(spec: dict[str, Any]) -> list[str]:
    return [m for m in spec["needs_modules"] if importlib.util.find_spec(m) is None]


def _copy(spec: dict[str, Any], dest: Path) -> Path:
    """Copy the script's files (only those: outputs of earlier runs stay behind)."""
    root = Path(CORPUS) / SPEC["sources"][spec["source"]]["root"]
    for rel in spec["files"]:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    return dest / spec["path"]


def _args(spec: dict[str, Any], out: Path) -> list[str]:
    return [a.replace("{corpus}", CORPUS).replace("{out}", str(out)) for a in spec["args"]]


def _run_once(spec: dict[str, Any], tmp: Path) -> Run:
    plain = None
    if spec["runs_to_end"]:
        pout = tmp / "plain"
        pout.mkdir()
        script = _copy(spec, tmp / "plain_src")
        plain = subprocess.run([sys.executable, str(script), *_args(spec, pout)], cwd=pout,
                               capture_output=True, text=True, timeout=TIMEOUT_S)
    out = tmp / "profiled"
    out.mkdir()
    script = _copy(spec, tmp / "src")
    window = ["--steps", str(spec["window_steps"])] if spec["window_steps"] else []
    rec_path = tmp / "record.json"
    profiled = subprocess.run(
        [sys.executable, "-m", "perfpilot.cli", "profile", "--quiet", "--json",
         str(rec_path), *window, "--", sys.executable, str(script), *_args(spec, out)],
        cwd=out, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert rec_path.exists(), f"no record; stderr: {profiled.stderr[-2000:]}"
    return Run(spec, plain, profiled, json.loads(rec_path.read_text()), out, tmp / "src")


_RUNS: dict[str, Run] = {}


@pytest.fixture
def run(request, tmp_path_factory) -> Run:
    """The script's runs, made once per session and shared by its tests."""
    spec = SCRIPTS[request.param]
    missing = _missing_modules(spec)
    if missing:
        pytest.skip(f"{spec['name']} needs {', '.join(missing)}, which {sys.executable} "
                    "cannot import")
    if spec["name"] not in _RUNS:
        _RUNS[spec["name"]] = _run_once(spec, tmp_path_factory.mktemp(spec["name"]))
    return _RUNS[spec["name"]]


def by_script(fn):
    return pytest.mark.parametrize("run", list(SCRIPTS), indirect=True)(fn)


def expected_steps(r: Run) -> int:
    """What the script itself runs, from the manifest's rule."""
    e = r.spec["expected_steps"]
    p = e.get("params", {})
    if e["rule"] == "from_stdout":
        m = re.search(e["pattern"], r.profiled.stdout)
        assert m, f"the script printed no step count: {r.profiled.stdout[-500:]}"
        return int(m.group(1))
    if e["rule"] == "wlm_batches":
        data = Path(CORPUS) / SPEC["data"]["wikitext-mini"]["path"] / p["train_file"]
        with open(data, encoding="utf8") as f:
            tokens = sum(len(line.split()) + 1 for line in f)
        rows = tokens // p["batch_size"]
        return p["epochs"] * math.ceil((rows - 1) / p["bptt"])
    if e["rule"] == "iterations":
        return p["epochs"] * math.ceil(p["dataset_size"] / p["batch_size"])
    if e["rule"] == "window":  # the lines it printed, + the step the window ended in
        return len(re.findall(e["pattern"], r.profiled.stdout, re.M)) + 1
    raise AssertionError(f"unknown rule {e['rule']}")


# --------------------------------------------------------------------------- the tests


@by_script
def test_exit_code_is_the_plain_runs(run):
    prof = run.record["profile"]
    if run.plain is None:  # ended by the --steps window: perfpilot's exit, said on stderr
        assert run.profiled.returncode == 0, run.profiled.stderr[-2000:]
        assert prof["stopped"] == "steps"
        assert f"the --steps {run.spec['window_steps']} window is over" in run.profiled.stderr
    else:
        assert run.plain.returncode == 0, run.plain.stderr[-2000:]
        assert run.profiled.returncode == run.plain.returncode, run.profiled.stderr[-2000:]
        assert prof["stopped"] == "end"
    assert prof["exit_code"] == run.profiled.returncode
    assert prof["hook_errors"] == [] and not prof["partial"]


@by_script
def test_outputs_are_written_and_load(run):
    for o in run.spec["outputs"]:
        path = run.out / o["path"]
        assert path.is_file() and path.stat().st_size > 0, o["path"]
        if o["kind"] == "file":
            continue
        assert b"perfpilot" not in path.read_bytes()  # nothing of perfpilot's was saved
        # a fresh interpreter loads it, as a user would after the run
        whole = o["kind"] == "whole_module"
        code = ("import sys, torch; sys.path.insert(0, sys.argv[2]); "
                f"x = torch.load(sys.argv[1], weights_only={not whole}); "
                "print(type(x).__name__, isinstance(x, torch.nn.Module))")
        res = subprocess.run([sys.executable, "-c", code, str(path),
                              str((run.src / run.spec["path"]).parent)],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr[-1500:]
        assert res.stdout.split()[-1] == str(whole), res.stdout


@by_script
def test_steps_are_the_scripts_own_count(run):
    prof = run.record["profile"]
    assert prof["step_kind"] == run.spec["step_kind"]
    n = expected_steps(run)
    e = run.spec["expected_steps"]
    if "value_for_the_reference_slice" in e and e["rule"] == "iterations":
        assert n == e["value_for_the_reference_slice"]
    assert prof["steps"] == run.record["steps"] == n
    counts = run.spec["script_counts"]
    assert prof["boundaries"]["backward"] == counts["backward_per_step"] * n


@pytest.mark.parametrize("run", [n for n, s in SCRIPTS.items() if s["window_steps"]],
                         indirect=True)
def test_steps_window_holds_n_steady_steps(run):
    prof = run.record["profile"]
    assert prof["steady_steps"] == run.spec["window_steps"]
    assert prof["steps"] == (run.spec["expected_steps"]["params"]["warmup"]
                             + run.spec["window_steps"] + prof["excluded_steps"])


@by_script
def test_evaluation_is_kept_apart(run):
    tl = run.record["timeline"]
    assert tl["eval_passes"] == run.spec["eval_passes"]
    assert (tl["eval_s"] > 0) == (run.spec["eval_passes"] > 0)
    assert run.record["profile"]["trained_in_eval_mode"] == 0
    assert run.record["step_phases"]["per_step_s"]["eval"] == 0


@by_script
def test_samples_per_step_is_the_batch(run):
    assert run.record["step_phases"]["samples_per_step"] == run.spec["samples_per_step"]


@by_script
def test_modules_have_their_roles(run):
    roles = {r["type"]: r["role"] for r in run.record["roots"]}
    for typ, role in run.spec["roles"].items():
        assert roles.get(typ) == role, roles
