"""benchmarks/report.py renders docs from results JSONs; benchmarks/run_all plans its steps.

Nothing here runs a benchmark: the report reads small synthetic files in a temporary
folder, and run_all's plan is built without starting a process.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str, path: Path) -> ModuleType:
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def report() -> ModuleType:
    return _load("bench_report_under_test", BENCH / "report.py")


@pytest.fixture(scope="module")
def run_all() -> ModuleType:
    return _load("bench_run_all_under_test", BENCH / "run_all")


# ---------------------------------------------------------------- synthetic results

LOAD0, LOAD1 = [1.25, 1.0, 1.0], [2.75, 2.0, 2.0]

DEMO = {"benchmark": "demo", "wall_s": 91.5, "target_s": 180.0, "under_target": True,
        "exit_code": 0, "usable_cores": 2, "loadavg_before": LOAD0, "loadavg_after": LOAD1,
        "measured_at": "2030-01-02T03:04:05", "budget_s": 100.0, "tuning_elapsed_s": 80.5,
        "trials": 17, "verdict": "faster", "claim": "the tuned plan is faster",
        "time_to_target": {"verdict": None, "ratio": None, "ci_low": None, "ci_high": None,
                           "n": None},
        "throughput": {"verdict": "faster", "ratio": 7.25, "ci_low": 5.5, "ci_high": 9.75,
                       "n": 10},
        "changes": {"batch_size": [32, 64], "cpu_threads": [None, 1]},
        "stages": {"hardware": {"budget_s": 27.0, "elapsed_s": 21.0}}}

TUNED = {"benchmark": "tuned", "results": [
    {"workload": "digits", "budget": "3m", "budget_s": 180.0, "command":
     "perfpilot tune digits --budget 3m --out DIR", "wall_s": 190.5, "exit_code": 0,
     "load_avg_start": 1.5, "load_avg_end": 2.5, "measured_at": "2030-01-02T05:00:00",
     "status": "complete", "tuning_elapsed_s": 170.0, "trials": 33, "verdict": "faster",
     "claim": "faster to target", "baseline_ttt_s": {"median": 12.5, "ci_low": 11.5,
                                                     "ci_high": 13.5},
     "tuned_ttt_s": {"median": 4.25, "ci_low": 4.0, "ci_high": 4.75},
     "time_to_target": {"verdict": "faster", "ratio": 2.94, "ci_low": 2.61, "ci_high": 3.37,
                        "n": 5},
     "throughput": {"verdict": "faster", "ratio": 3.61, "ci_low": 3.05, "ci_high": 4.44,
                    "n": 10},
     "changes": {"batch_size": [32, 128], "precision": ["fp32", "bf16"]},
     "baseline_samples_per_s": 410.0, "tuned_samples_per_s": 1480.0},
    {"workload": "charlm", "budget": "12m", "exit_code": 1, "wall_s": 3.0,
     "stderr_tail": "Traceback: boom"},
]}

PROFILERS = {
    "benchmark": "profilers", "rounds": 5, "rate_hz": 100,
    "skipped_tools": {"scalene": "cannot run here: no"},
    "summary": {"perfpilot": {"examples": 1, "median_overhead": 0.0411,
                              "median_cpu_overhead": 0.0377, "top_points_at_planted": 1,
                              "own_points_at_planted": 1, "of": 1, "names_fix": 1},
                "py-spy": {"examples": 1, "median_overhead": 0.0299,
                           "median_cpu_overhead": 0.0801, "top_points_at_planted": 0,
                           "own_points_at_planted": 1, "of": 1, "names_fix": 0},
                "scalene": {"examples": 0}},
    "examples": {"python_hotspot": {
        "planted": {"finding": "python-hotspot", "lines": [10, 11]},
        "plain_median_s": 4.44,
        "tools": {
            "perfpilot": {"overhead": 0.0411, "ci_low": 0.0123, "ci_high": 0.0766,
                          "cpu_overhead": 0.0377, "cpu_ci_low": 0.0081, "cpu_ci_high": 0.05,
                          "top": {"kind": "finding", "id": "python-hotspot",
                                  "estimated_speedup": 1.8, "fix": "vectorize"},
                          "own": {"kind": "frame", "function": "running_stats",
                                  "file": "/x/python_hotspot.py", "line": 10},
                          "top_hit": True, "top_hits": "5/5", "own_hit": True,
                          "own_hits": "5/5", "names_fix": True},
            "py-spy": {"overhead": 0.0299, "ci_low": -0.0123, "ci_high": 0.0655,
                       "cpu_overhead": 0.0801, "cpu_ci_low": 0.04, "cpu_ci_high": 0.1,
                       "top": {"kind": "frame", "function": "_conv_forward",
                               "file": "/torch/conv.py", "line": 456},
                       "top_hit": False, "top_hits": "0/5", "own_hit": True,
                       "own_hits": "4/5", "names_fix": False},
            "scalene": {"skipped": "cannot run here: no"}}}},
    "machine": {"cpu_count": 2, "loadavg_start": LOAD0, "loadavg_end": LOAD1},
    "elapsed_s": 321.0, "finished_at": 1.9e9}

PROFILE_OVERHEAD = {
    "benchmark": "profile_overhead", "rate_hz": 100, "rounds": 5, "pyspy": "used",
    "summary": {"median_overhead": 0.0456, "median_cpu_overhead": 0.0474,
                "median_overhead_after_startup": 0.3169, "median_analysis_s": 0.4972,
                "median_pyspy_overhead": 0.0341, "median_pyspy_cpu_overhead": 0.0862,
                "long_run": {"example": "clean:10", "plain_s": 7.85, "overhead": 0.079,
                             "ci": [0.0531, 0.1103], "cpu_overhead": 0.0637,
                             "cpu_ci": [0.0519, 0.0871]}},
    "examples": {"clean": {"plain_median_s": 4.33,
                           "perfpilot": {"overhead": 0.0264, "ci_low": -0.0519,
                                         "ci_high": 0.1050, "cpu_overhead": 0.0384,
                                         "cpu_ci_low": -0.0008, "cpu_ci_high": 0.0765},
                           "py-spy": {"overhead": 0.0243, "ci_low": -0.2370,
                                      "ci_high": 0.0936, "cpu_overhead": 0.0751,
                                      "cpu_ci_low": -0.0011, "cpu_ci_high": 0.1181}}},
    "machine": {"cpu_count": 2, "loadavg_start": LOAD0, "loadavg_end": LOAD1}}

TIMES = {"serial": [2.0, 2.2, 2.1, 2.3, 2.4], "pmap_auto": [1.1, 1.2, 1.05, 1.3, 1.25]}
PMAP = {"machine": {"cores": 2, "load_avg_start": LOAD0, "load_avg_end": LOAD1,
                    "cpu_pressure_end": "some avg10=1.00"},
        "worker_start": {"median_s": 0.284, "times_s": [0.28, 0.25, 0.284]},
        "cpu_bound": {"n": 200, "per_call": "~10 ms pure Python",
                      **{k: {"median_s": sorted(v)[2], "min_s": min(v), "times_s": v,
                             "speedup_vs_serial": 1.0, "overhead_per_task_us": 0.0}
                         for k, v in TIMES.items()}},
        "ray": {"skipped": "ray is not installed"}}

HARDWARE_ROW = {"workload": "augmented", "stages_run": "loader",
                "changes": {"num_workers": [0, 1]}, "tuning_s": 237.3,
                "verification": {"verdict": "faster", "speedup": 1.923, "ci_low": 1.461,
                                 "ci_high": 4.183, "pairs": 10,
                                 "samples_per_s": {"baseline": 31.9, "chosen": 70.6},
                                 "baseline_data_share": 0.812, "chosen_data_share": 0.021},
                "stages": [{"stage": "loader", "summary": "chose num_workers=1",
                            "budget_s": 300.0, "elapsed_s": 237.0}]}
HARDWARE = {"benchmark": "hardware", "budget_s_per_workload": 300.0,
            "loadavg_start": LOAD0, "loadavg_end": LOAD1,
            "machine": {"cpu": {"model": "Test CPU 9000", "usable_cores": 2}, "gpus": []},
            "rows": [HARDWARE_ROW]}

CALIBRATION = {"sigma": 0.1, "n_boot": 500, "trials": 1000,
               "false_positive_fixed": {"5": 0.071, "10": 0.057},
               "false_positive_adaptive_5_to_40": [0.028, 0.014],
               "coverage_median_ci": {"6": 0.955},
               "power_fixed_n10": {"1.1": 0.434},
               "power_adaptive_5_to_40": {"1.1": [0.856, 0.0, 26.144]},
               "drift_detects_5pct": {"paired": 0.996, "unpaired": 0.0}, "seconds": 26.4}

BATCH_ARM = {"batch_size": 32, "lr": 0.001, "warmup_steps": 0, "runs": 3, "reached": 3,
             "ttt_s": 6.5, "ci_low": 6.1, "ci_high": 7.3, "samples": 5123.0,
             "wall_ttt_s": 8.75}
BATCH = {"results": [{
    "workload": "digits", "budget_s": 60.0, "seeds": [100, 101, 102], "cpu_threads": 1,
    "load_avg_start": 1.25, "load_avg_end": 2.75, "runtime_s": 250.0,
    "arms": {"baseline": BATCH_ARM,
             "perfpilot": {**BATCH_ARM, "batch_size": 64, "ttt_s": 3.25, "ci_low": 3.0,
                           "ci_high": 3.5}},
    "verdicts": {"baseline": {"ratio_of_medians": 2.0, "verdict": None}},
    "peers": {"lightning": {"skipped": "lightning is not importable"}},
    "perfpilot": {"batch_size": 64, "lr": 0.002, "warmup_steps": 4, "tuning_s": 59.0,
                  "summary": "chose 64"}}]}

RUN_ALL = {"benchmark": "run_all",
           "steps": {"demo": {"benchmark": "demo", "mode": "quick", "status": "ok",
                              "exit_code": 0, "wall_s": 72.5,
                              "command": ".venv/bin/python benchmarks/demo.py --budget 60s",
                              "finished_at": "2030-01-02T03:05:00",
                              "machine": {"cpu_model": "Test CPU 9000", "usable_cores": 2}}},
           "complete_runs": {"quick": {"total_s": 754.0, "finished_at": "2030-01-02T03:20:00",
                                       "failed": [], "deadline_s": 900.0,
                                       "cpu_model": "Test CPU 9000", "usable_cores": 2,
                                       "loadavg_before": LOAD0, "loadavg_after": LOAD1}},
           "last_run": {"mode": "quick", "complete": True},
           "machine": {"cpu_model": "Test CPU 9000", "gpu": {"torch": {
               "cuda_available": False, "devices": []}, "nvidia_smi": None}},
           "versions": {"python": "3.11.7", "torch": "2.13.0+cpu", "perfpilot": "0.1.0"}}

TUNE_BUDGET = {"benchmark": "tune_budget", "target_ratio": 1.1, "worst_ratio": 0.99,
               "loadavg_before": 2.3, "loadavg_after": 3.8, "cpus": 2, "runs": [
                   {"workload": "digits", "budget_s": 60.0, "hog_processes": 2,
                    "wall_s": 49.1, "ratio": 0.82, "record_elapsed_s": 46.7,
                    "stages": [{"stage": "hardware", "budget_s": 8.8, "elapsed_s": 6.1}],
                    "final_verdict": "same", "status": "complete", "refused": None,
                    "load_avg_1m": [2.82, 3.5]}]}

REAL_SCRIPTS = {"benchmark": "real_scripts", "rounds": 3,
                "corpus_commit": {"pytorch/examples": "77f55b912142e11fcfdf5b530231fb9c52f181e8"},
                "machine": {"loadavg_start": [1.2, 1, 1], "loadavg_end": [1.4, 1, 1]},
                "scripts": {"regression": {
                    "window_steps": None, "loadavg_before": [1.2, 1, 1],
                    "plain": {"wall_s": 2.9, "step_s": 0.0003, "steps": [400]},
                    "tools": {"perfpilot": {"wall": {"overhead": 0.5}, "steady": {},
                                            "fixed_s": 1.5, "steps": [400], "top": {}}},
                    "verify": {"top": None, "result": "no finding"}}}}

TUNE_SCRIPTS = {"benchmark": "tune_scripts", "rounds": 5, "budget": "5m",
                "command": "python benchmarks/tune_scripts.py --only-tool train-doctor",
                "machine": {"loadavg_start": [1.5, 1, 1], "loadavg_end": [2.5, 1, 1]},
                "scripts": {"loader_bound": {"tools": {"train-doctor": {
                    "loadavg_before": [1.5, 1, 1], "loadavg_after": [4.1, 1, 1],
                    "wall_s": 313.0, "accepted": False, "changes": {},
                    "patch": {"applies": None, "why": "no patch written"},
                    "ab": {"skipped": "nothing to apply"},
                    "candidates": [{"name": "dataloader_workers",
                                    "changes": {"num_workers": 2}, "fate": "inconclusive",
                                    "ratio": 0.979, "ci_low": 0.775, "ci_high": 2.34}]}}}}}

_ALONE = [{"samples_per_s": v, "load": 5.0} for v in (40.0, 50.0, 60.0, 45.0)]
FINAL_CHECK = {"benchmark": "final_check", "workload": "charlm", "loadavg_start": LOAD0,
               "tuned_plan": {"cpu_threads": 1}, "standalone_median": {"baseline": 47.5,
                                                                        "tuned": 190.0},
               "standalone": {"baseline": _ALONE, "tuned": _ALONE}, "standalone_ratio": 4.0,
               "checks": [{"method": "old", "baseline_samples_per_s": 1227.0,
                           "tuned_samples_per_s": 1500.0, "baseline_vs_standalone": 25.8,
                           "within_target": False, "chunk_steps": 1, "settle_steps": 1,
                           "ratio": 1.22, "ci_low": 1.1, "ci_high": 1.35, "load": 5.0}]}
LONG_RUNS = {"benchmark": "long_runs", "results": [{
    "workload": "digits", "target": 0.99, "metric": "val_accuracy", "budget_s": 50.0,
    "precheck": {"ttt_s": 90.0}, "tune": {"plan": {"batch_size": 32}}, "arms": {},
    "oracle": {}}]}
ALL = {"demo": DEMO, "tuned": TUNED, "profilers": PROFILERS, "tune_budget": TUNE_BUDGET,
       "profile_overhead": PROFILE_OVERHEAD, "pmap": PMAP, "hardware": HARDWARE,
       "hardware_loader_only": HARDWARE, "measure_calibration": CALIBRATION,
       "batch_size": BATCH, "real_scripts": REAL_SCRIPTS, "tune_scripts": TUNE_SCRIPTS,
       "final_check": FINAL_CHECK, "final_check_busy": FINAL_CHECK,
       "final_check_gru": FINAL_CHECK, "run_all": RUN_ALL,
       "long_runs": LONG_RUNS}


def _write(folder: Path, docs: dict[str, object]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, doc in docs.items():
        (folder / f"{name}.json").write_text(json.dumps(doc))
    return folder


def _render(report: ModuleType, tmp_path: Path, docs: dict[str, object]) -> str:
    results = _write(tmp_path / "results", docs)
    out = tmp_path / "docs" / "benchmarks.md"
    assert report.main(["--results", str(results), "--out", str(out)]) == 0
    return out.read_text()


# ---------------------------------------------------------------- report


def test_report_renders_every_section_from_its_json(report: ModuleType,
                                                    tmp_path: Path) -> None:
    md = _render(report, tmp_path, ALL)
    assert "Not run yet" not in md
    # tune_scripts: train-doctor's row and candidate; perfpilot's row says it is pending
    assert "| loader_bound | train-doctor | 1.5 → 4.1 | 313 s |" in md
    assert "dataloader_workers (num_workers=2): inconclusive, 0.979x [0.775, 2.34]" in md
    assert "| loader_bound | perfpilot | – | perfpilot figures: pending |" in md
    # demo: wall time, the throughput interval, changes, run_all's provenance
    assert "91.5 s" in md and "7.25x [5.50, 9.75]" in md
    assert "batch_size 32→64" in md and "cpu_threads None→1" in md
    assert "quick run by run_all in 72.5 s" in md
    # tuned: medians with intervals, speedups, a failed workload kept visible
    assert "12.5 s [11.5, 13.5]" in md and "4.25 s [4.00, 4.75]" in md
    assert "2.94x [2.61, 3.37]" in md and "3.61x [3.05, 4.44]" in md
    assert "precision fp32→bf16" in md and "exit code 1" in md and "boom" in md
    # profilers: summary, per-example intervals and what each tool points at
    assert "+4.1% [+1.2%, +7.7%]" in md and "python-hotspot (est. 1.80x)" in md
    assert "conv.py:456 _conv_forward" in md and "skipped: cannot run here" in md
    assert "1/1" in md and "yes (5/5)" in md and "Benchmark run time: 321 s" in md
    # profile_overhead: perfpilot vs py-spy with intervals
    assert "+2.6% [-5.2%, +10.5%]" in md and "+7.9% [+5.3%, +11.0%]" in md
    # pmap: paired interval over 5 rounds, range when too few rounds, skipped Ray
    assert "pmap_auto" in md and "range 0.250–0.284, 3 rounds" in md
    assert "ray is not installed" in md
    # hardware, both files; the machine table names the CPU model
    assert "1.92x [1.46, 4.18]" in md and "81.2% → 2.1%" in md
    assert md.count("num_workers 0→1") == 2 and "Test CPU 9000" in md
    # calibration: rates with Wilson intervals and the nominal level
    assert "7.1% [5.7%, 8.9%]" in md and "95.5%" in md and "99.6%" in md
    # batch size: the arms table and the peer that was skipped
    assert "lightning: skipped (lightning is not importable)" in md
    assert "250 s" in md and "| perfpilot | 64 |" in md
    # intro: one command, --quick with its recorded run time, peers only in the bench env
    assert "benchmarks/run_all --quick" in md and "12.6 min" in md
    assert "requirements.txt" in md
    # final check: the check's baseline against the standalone median (and the adjacent runs)
    assert "| old | 1 + 1 | 1,227 | 1,500 | 25.80 ✗ | 27.27 | 1.22 (1.10–1.35) |" in md
    assert "off by more than 2x here" in md
    # GPU: none recorded
    assert "No GPU result is recorded yet" in md


def test_report_says_not_run_yet_with_the_command(report: ModuleType, tmp_path: Path) -> None:
    md = _render(report, tmp_path, {"demo": DEMO})
    for name in ("tuned", "profilers", "batch_size", "pmap", "hardware",
                 "hardware_loader_only", "measure_calibration", "profile_overhead"):
        assert f"Not run yet (`benchmarks/results/{name}.json` is missing)" in md, name
    assert "`.venv/bin/python benchmarks/tuned.py`" in md
    assert "benchmarks/run_all --only tuned" in md
    assert "No complete `--quick` run is recorded yet" in md
    assert "91.5 s" in md


def test_report_is_tolerant_of_other_shapes(report: ModuleType, tmp_path: Path) -> None:
    tuned = {"benchmark": "tuned", "budget_note": "short",
             "workloads": {"digits": {"baseline": 10.0, "baseline_ci": [9.0, 11.0],
                                      "tuned": {"ttt_s": 5.0, "ci": [4.5, 5.5]},
                                      "speedup": 2.0, "speedup_ci_low": 1.5,
                                      "speedup_ci_high": 2.5, "novel_key": "kept"}}}
    md = _render(report, tmp_path, {"tuned": tuned, "profilers": {"oops": 1},
                                    "pmap": {"machine": {}}, "broken": {}})
    assert "10.0 s [9.00, 11.0]" in md and "5.00 s [4.50, 5.50]" in md
    assert "2.00x [1.50, 2.50]" in md and "kept" in md and "budget note: short" in md
    assert "## Other results: `broken.json`" in md  # a file no section knows: still shown
    (tmp_path / "results" / "demo.json").write_text("{not json")
    md = _render(report, tmp_path, {})
    assert "could not be read" in md


def test_report_gpu_section_names_cuda_results(report: ModuleType, tmp_path: Path) -> None:
    hw = {**HARDWARE, "machine": {"cpu": {"model": "X"}, "gpus": [
        {"index": 0, "name": "NVIDIA H100", "capability": [9, 0]}]}}
    md = _render(report, tmp_path, {"hardware": hw})
    assert "No GPU result is recorded yet" not in md
    assert "show a CUDA device: `hardware.json`" in md


def test_report_figures_come_from_the_files(report: ModuleType, tmp_path: Path) -> None:
    """Change a figure in the JSON and the page changes with it."""
    md = _render(report, tmp_path, {"demo": {**DEMO, "wall_s": 123.25}})
    assert "123 s" in md and "91.5 s" not in md


# ---------------------------------------------------------------- run_all plan


def test_plan_full_runs_every_benchmark_in_order(run_all: ModuleType, tmp_path: Path) -> None:
    steps = run_all.plan(quick=False, bench_dir=BENCH)
    assert [p.step.name for p in steps] == [
        "profilers", "batch_size", "tuned", "workloads", "pmap", "hardware", "hardware_loader_only",
        "demo", "tune_budget", "profile_overhead", "measure_calibration", "real_scripts",
        "tune_scripts", "long_runs"]
    by = {p.step.name: p for p in steps}
    assert by["hardware_loader_only"].args[-2:] == [
        "--out", "benchmarks/results/hardware_loader_only.json"]
    assert all(p.mode == "full" for p in steps)
    assert by["pmap"].argv("PY")[:2] == ["PY", str(BENCH / "pmap.py")]


def test_plan_quick_passes_quick_options(run_all: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "profilers.py").write_text('ap.add_argument("--quick")\n')
    (tmp_path / "tuned.py").write_text("# no quick flag here\n")
    for name in ("pmap.py", "measure_calibration.py"):
        (tmp_path / name).write_text("p.add_argument('--quick', action='store_true')\n")
    steps = run_all.plan(quick=True, bench_dir=tmp_path)
    by = {p.step.name: p for p in steps}
    assert by["pmap"].args == ["--quick"] and by["measure_calibration"].args == ["--quick"]
    assert by["profilers"].args[0] == "--quick"
    assert by["tuned"].args == ["--workloads", "digits", "--budget-digits", "150s"]
    bs = by["batch_size"].args
    assert bs[bs.index("--workloads") + 1] == "digits" and bs[bs.index("--seeds") + 1] == "3"
    assert "--no-grid" in bs and "--budget-digits" in bs
    assert by["hardware"].args[:2] == ["--budget", "15"]
    assert by["profile_overhead"].args[-2:] == ["--long", ""]
    assert not by["demo"].present and by["pmap"].present  # only what exists in bench_dir
    assert "real_scripts" not in by and "tune_scripts" not in by  # full plan only
    est = [p.step.quick_estimate_s for p in steps]
    assert est == sorted(est)  # shortest first under --quick
    assert sum(est) <= run_all.QUICK_DEADLINE_MIN * 60


def test_quick_options_exist_in_the_scripts(run_all: ModuleType) -> None:
    """Every option the quick and full plans pass is one the script declares: its
    ``--help`` lists it (scripts without argparse: their source names it)."""
    helps: dict[Path, str] = {}
    for quick in (False, True):
        for p in run_all.plan(quick=quick, bench_dir=BENCH):
            if not p.present:
                continue
            src = p.script_path.read_text()
            if p.script_path not in helps:
                helps[p.script_path] = src
                if "argparse" in src:
                    r = subprocess.run([sys.executable, str(p.script_path), "--help"],
                                       capture_output=True, text=True, timeout=60)
                    assert r.returncode == 0, (p.step.name, r.stderr[-500:])
                    helps[p.script_path] = r.stdout
            for a in p.args:
                if a.startswith("--"):
                    assert re.search(rf"{re.escape(a)}\b(?!-)", helps[p.script_path]), (
                        p.step.name, a)


def test_only_skip_and_unknown_names(run_all: ModuleType) -> None:
    names = [p.step.name for p in run_all.plan(only=["hardware", "demo"], bench_dir=BENCH)]
    assert names == ["hardware", "hardware_loader_only", "demo"]
    names = [p.step.name for p in run_all.plan(only=["hardware"],
                                               skip=["hardware_loader_only"],
                                               bench_dir=BENCH)]
    assert names == ["hardware"]
    names = [p.step.name for p in run_all.plan(skip=["batch_size", "tuned"], bench_dir=BENCH)]
    assert "batch_size" not in names and "tuned" not in names and "pmap" in names
    with pytest.raises(ValueError, match="unknown benchmark 'nope'"):
        run_all.plan(only=["nope"])
    args = run_all.parse_args(["--quick", "--only", "pmap, demo", "--no-install"])
    assert args.deadline == run_all.QUICK_DEADLINE_MIN and args.no_install
    assert [p.step.name for p in args.plan] == ["pmap", "demo"] or \
        [p.step.name for p in args.plan] == ["demo", "pmap"]
    assert run_all.parse_args([]).deadline == 0
    with pytest.raises(SystemExit):
        run_all.parse_args(["--only", "nope"])


def test_record_merges_runs(run_all: ModuleType) -> None:
    old = {"steps": {"demo": {"status": "ok", "mode": "full"}},
           "complete_runs": {"full": {"total_s": 9000.0}}}
    run = {"mode": "quick", "complete": True, "total_s": 600.0, "finished_at": "t",
           "failed": [], "deadline_s": 900.0, "loadavg_before": LOAD0,
           "loadavg_after": LOAD1}
    rec = run_all.merge_record(old, run, {"pmap": {"status": "ok", "mode": "quick"}},
                               {"cpu_model": "C", "usable_cores": 2}, {"python": "3"})
    assert set(rec["steps"]) == {"demo", "pmap"}
    assert rec["complete_runs"]["full"]["total_s"] == 9000.0
    assert rec["complete_runs"]["quick"]["total_s"] == 600.0
    partial = run_all.merge_record(rec, {**run, "complete": False, "total_s": 5.0}, {},
                                   {}, {})
    assert partial["complete_runs"]["quick"]["total_s"] == 600.0


def test_requirement_names_and_versions(run_all: ModuleType, tmp_path: Path) -> None:
    req = tmp_path / "r.txt"
    req.write_text("# peers\npy-spy>=0.3\n\njoblib>=1.3  # comment\n-r other.txt\n")
    assert run_all.requirement_names(req) == ["py-spy", "joblib"]
    v = run_all.versions()
    assert v["python"] and "torch" in v and "perfpilot" in v


# ---------------------------------------------------------------- run_all running steps


def _fake_steps(run_all: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                scripts: dict[str, str | None]) -> Path:
    """Replace the plan's steps by tiny scripts (None: a script that does not exist) and
    point run_all's outputs at ``tmp_path``."""
    steps = []
    for name, code in scripts.items():
        path = tmp_path / f"{name}.py"
        if code is not None:
            path.write_text(code)
        steps.append(run_all.Step(name, name, str(path), results=(f"{name}.json",),
                                  quick_estimate_s=1))
    monkeypatch.setattr(run_all, "STEPS", tuple(steps))
    monkeypatch.setattr(run_all, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(run_all, "RUN_RECORD", tmp_path / "results" / "run_all.json")
    monkeypatch.setattr(run_all, "machine_info", lambda: {
        "cpu_model": "C", "usable_cores": 2, "ram_bytes": 1, "gpu": {}})
    return tmp_path / "results" / "run_all.json"


def test_failures_are_reported_and_the_others_run(run_all: ModuleType, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "results").mkdir()
    record = _fake_steps(run_all, tmp_path, monkeypatch, {
        "bad": "import sys\nprint('about to fail', file=sys.stderr)\nsys.exit(3)\n",
        "good": "from pathlib import Path\nprint('fine')\n"
                f"Path({str(tmp_path / 'results' / 'good.json')!r}).write_text('{{}}')\n",
        "absent": None})
    rc = run_all.main(["--no-install", "--no-report", "--quiet", "--logs",
                       str(tmp_path / "logs")])
    assert rc == 1
    rec = json.loads(record.read_text())
    bad, good = rec["steps"]["bad"], rec["steps"]["good"]
    assert bad["status"] == "failed" and bad["exit_code"] == 3
    assert "about to fail" in bad["stderr_tail"]
    assert good["status"] == "ok" and good["exit_code"] == 0 and good["wall_s"] >= 0
    assert set(good["results_sha256"]) == {"good.json"}
    assert rec["steps"]["absent"]["status"] == "skipped: not present"
    assert rec["last_run"]["failed"] == ["bad"] and rec["last_run"]["mode"] == "full"
    assert rec["complete_runs"]["full"]["failed"] == ["bad"]
    assert "fine" in (tmp_path / "logs" / "good.log").read_text()
    out = capsys.readouterr().out
    assert "FAILED (exit code 3)" in out and "about to fail" in out


def test_deadline_stops_a_step_and_skips_the_rest(run_all: ModuleType, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    record = _fake_steps(run_all, tmp_path, monkeypatch, {
        "slow": "import time\ntime.sleep(60)\n", "after": "print('never')\n"})
    rc = run_all.main(["--quick", "--deadline", "0.01", "--no-install", "--no-report",
                       "--quiet", "--logs", str(tmp_path / "logs")])
    assert rc == 1
    steps = json.loads(record.read_text())["steps"]
    assert steps["slow"]["status"].startswith("timed out") and steps["slow"]["wall_s"] < 30
    assert steps["after"]["status"] == "skipped: deadline"


# ---------------------------------------------------------------- section owners, records


def test_every_owner_defines_its_section(report: ModuleType) -> None:
    """Each benchmark script in ``OWNERS`` has a SECTION; together they claim every
    results file the page renders by name, in page order."""
    owned = report.sections()
    assert [s.order for s in owned] == sorted(s.order for s in owned)
    files = [f for s in owned for f in s.files]
    assert len(files) == len(set(files))
    assert set(files) >= set(ALL) - {"run_all"}
    assert "workloads" in files


def test_no_benchmark_file_over_500_lines() -> None:
    for path in [*BENCH.glob("*.py"), BENCH / "run_all"]:
        assert len(path.read_text().splitlines()) <= 500, path.name


def test_load_tune_record_reads_the_figures(tmp_path: Path) -> None:
    from perfpilot.errors import UserError
    from perfpilot.tune_record import TuneRecord

    records = _load("bench_records_under_test", BENCH / "_records.py")
    rec = {**TuneRecord().to_dict(), "status": "complete", "elapsed_s": 80.5, "budget_s": 100.0,
           "trials": [{"number": i, "stage": "hardware", "plan": {}, "state": "complete"}
                      for i in range(3)],
           "baseline_plan": {"batch_size": 32, "lr": 0.1},
           "plan": {"batch_size": 64, "lr": 0.1},
           "stages": [{"name": "hardware", "budget_s": 27.0, "elapsed_s": 21.0}],
           "final": {"verdict": "faster", "claim": "c",
                     "time_to_target": {"verdict": "faster", "ratio": 2.0, "n": 5,
                                        "baseline": {"mean": 12.4, "median": 12.5, "ci_low": 11.0,
                                                     "ci_high": 13.0, "x": 1}},
                     "throughput": {"ratio": 1.5, "baseline_samples_per_s": 410.0}}}
    (tmp_path / "record.json").write_text(json.dumps(rec))
    got = records.load_tune_record(tmp_path / "record.json")
    assert got.summary["trials"] == 3 and got.summary["changes"] == {"batch_size": [32, 64]}
    assert got.summary["stages"] == {"hardware": {"budget_s": 27.0, "elapsed_s": 21.0}}
    assert got.summary["time_to_target"]["ratio"] == 2.0
    assert got.summary["throughput"]["verdict"] is None
    assert got.final_check == {"baseline_ttt_s": {"median": 12.5, "ci_low": 11.0,
                                                  "ci_high": 13.0},
                               "baseline_samples_per_s": 410.0}
    (tmp_path / "record.json").write_text(json.dumps({"schema": "other"}))
    with pytest.raises(UserError, match="record.json"):
        records.load_tune_record(tmp_path / "record.json")
