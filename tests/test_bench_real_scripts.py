"""The pure parts of ``benchmarks/real_scripts.py`` and its step clock: commands, reading
what each arm wrote, the overhead arithmetic, the verdict on ``--verify`` and the table
(synthetic records and outputs; no corpus, no peer run), and the manifest's shape."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def RS():
    spec = importlib.util.spec_from_file_location("bench_real_scripts", BENCH / "real_scripts.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def specs(RS):
    return {s["name"]: s for s in RS.load_manifest()["scripts"]}


def test_manifest_names_source_licence_and_counts(RS, specs):
    m = RS.load_manifest()
    src = m["sources"]["pytorch/examples"]
    assert src["license"] == "BSD-3-Clause" and len(src["commit"]) == 40
    assert {"regression", "word_language_model", "dcgan", "imagenet"} <= set(specs)
    for s in specs.values():
        assert s["path"] in s["files"] and s["expected_steps"]["formula"]
        assert isinstance(s["samples_per_step"], int) and s["step_kind"] in (
            "backward", "optimizer")
        assert not any(a.startswith("/") for a in s["args"])  # relative to {corpus}/{out}
        assert bool(s["window_steps"]) != s["runs_to_end"]
    assert specs["imagenet"]["window_note"]


def test_commands_end_window_scripts_alike(RS, specs):
    files = {k: k.upper() for k in ("clock", "record", "td_dir", "pyspy", "clock_pyspy")}
    im = RS.commands("PY", Path("s.py"), ["--dummy"], specs["imagenet"], files, 100)
    n = specs["imagenet"]["window_steps"]
    assert RS.stop_arg(specs["imagenet"]) == f"optimizer:{2 + n}"
    assert im["plain"][:4] == ["PY", str(RS.CLOCK), "CLOCK", f"optimizer:{2 + n}"]
    pp = im["perfpilot"]
    assert pp[pp.index("--steps") + 1] == str(n) and pp[-3:] == ["PY", "s.py", "--dummy"]
    td = im["train-doctor"]
    assert td[td.index("--steps") + 1] == str(n) and td[td.index("--warmup-steps") + 1] == "2"
    spy = im["py-spy"]
    assert spy[spy.index("--") + 1:][:4] == ["PY", str(RS.CLOCK), "CLOCK_PYSPY",
                                            f"optimizer:{2 + n}"]
    wlm = RS.commands("PY", Path("s.py"), [], specs["word_language_model"], files, 100)
    assert RS.stop_arg(specs["word_language_model"]) == "0"
    assert "--steps" not in wlm["perfpilot"] and "--steps" not in wlm["train-doctor"]


def test_args_fill_corpus_and_out(RS, specs):
    args = RS.script_args(specs["word_language_model"], Path("/c"), Path("/o"))
    assert args[args.index("--data") + 1] == "/c/wikitext-mini"
    assert args[args.index("--save") + 1] == "/o/model.pt"


def test_clock_steps_groups_marks_into_training_steps(RS, specs):
    # dcgan: two optimizer steps (D, G) per training step; steps end every 2nd mark
    marks = [0.5, 1.0, 1.5, 2.0, 3.0, 3.5, 4.0, 5.0, 5.5, 6.0]  # 5 steps ending 1,2,3.5,5,6
    steps, mean = RS.clock_steps({"optimizer": marks, "backward": []}, specs["dcgan"])
    assert steps == 5 and mean == pytest.approx((6.0 - 2.0) / 3)
    steps, mean = RS.clock_steps({"backward": [1.0, 2.0], "optimizer": []},
                                 specs["word_language_model"])
    assert steps == 2 and mean is None  # nothing after warm-up


def test_record_and_train_doctor_readings(RS, specs):
    phases = {"step_s_series": [9.0], "per_step_s_core": {"forward": 0.1, "backward": 0.2}}
    rec = {"profile": {"steps": 7}, "step_phases": phases,
           "findings": [{"id": "thread-oversubscription", "estimated_speedup": 1.4,
                         "plan_change": {"cpu_threads": 1}, "title": "x"}]}
    steps, step_s, top = RS.record_steps(rec)
    assert (steps, step_s) == (7, pytest.approx(0.3))
    assert top == {"id": "thread-oversubscription", "estimated_speedup": 1.4,
                   "plan_change": {"cpu_threads": 1}}
    ev = {"steps": {"total": 20, "boundary": "optimizer.step"}, "step_time_ms": {"mean": 250.0}}
    out = {"findings": [{"id": "dataloader-workers", "title": "More workers"}]}
    steps, step_s, top, boundary = RS.td_steps(out, ev, specs["dcgan"])
    assert steps == 20 and step_s == pytest.approx(0.5) and top["id"] == "dataloader-workers"
    ev2 = {"steps": {"total": 4, "boundary": "stdout loss line"}, "step_time_ms": {"mean": 9}}
    assert RS.td_steps({}, ev2, specs["word_language_model"])[1] is None


def test_pyspy_samples_counts_collapsed_stacks(RS, tmp_path):
    raw = tmp_path / "raw.txt"
    raw.write_text("main (a.py:1);f (a.py:2) 12\nmain (a.py:1) 3\n\n")
    assert RS.pyspy_samples(str(raw)) == 15


def test_overhead_and_fixed_seconds(RS):
    few = RS.overhead([1.0, 2.0, 1.0], [1.5, 2.2, 1.3])
    assert few["overhead"] == pytest.approx(0.3) and few["ci_low"] is None
    five = RS.overhead([1.0] * 5, [1.2, 1.21, 1.19, 1.2, 1.22])
    assert five["ci_low"] is not None and five["ci_low"] <= five["overhead"] <= five["ci_high"]
    assert RS.overhead([1.0], [0.0])["overhead"] is None  # no step time: no figure
    plain = [{"wall_s": 10.0, "step_s": 0.1, "steps": 20}]
    tool = [{"wall_s": 13.0, "step_s": 0.15, "steps": 20}]
    assert RS.fixed_s(plain, tool) == pytest.approx(3.0 - 20 * 0.05)
    assert RS.fixed_s(plain, [{"wall_s": 13.0, "step_s": None, "steps": 0}]) is None


def test_verdict_says_what_verify_found(RS):
    assert RS.verdict({"findings": []})["result"] == "no finding"
    code = {"findings": [{"id": "python-hotspot", "estimated_speedup": 1.3, "plan_change": None}]}
    assert RS.verdict(code)["result"] == "no setting-type fix"
    base = {"id": "thread-oversubscription", "estimated_speedup": 2.0,
            "plan_change": {"cpu_threads": 1}}
    assert RS.verdict({"findings": [base]})["result"].startswith("not verified")
    v = {**base, "verified": {"ratio": 1.3, "ci_low": 1.1, "ci_high": 1.5, "n": 5}}
    got = RS.verdict({"findings": [v]})
    assert got["result"] == "faster" and got["ratio"] == 1.3
    v["verified"] = {"ratio": 0.9, "ci_low": 0.8, "ci_high": 0.95, "n": 5}
    assert RS.verdict({"findings": [v]})["result"] == "slower"
    v["verified"] = {"error": "the script failed"}
    assert "could not verify" in RS.verdict({"findings": [v]})["result"]


RESULT = {
    "word_language_model": {
        "window_steps": None, "loadavg_before": [1.5, 1, 1],
        "plain": {"wall_s": 8.0, "step_s": 0.2, "steps": [22]},
        "tools": {
            "perfpilot": {"wall": {"overhead": 0.25, "ci_low": 0.1, "ci_high": 0.4},
                          "steady": {"overhead": 0.05, "ci_low": None, "ci_high": None},
                          "fixed_s": 1.2, "steps": [22, 22], "top": {}},
            "train-doctor": {"skipped": "exited 1: boom"},
            "py-spy": {"wall": {"overhead": 0.02}, "steady": {"overhead": 0.01},
                       "fixed_s": 0.1, "steps": [22]}},
        "verify": {"top": None, "result": "no finding"}},
    "imagenet": {"skipped": "python cannot import torchvision"},
}


def test_table_rows_and_section(RS):
    md = RS.markdown(RESULT)
    assert md.splitlines()[0].startswith("| script |")
    assert "+25.0% [+10.0%, +40.0%]" in md and "+5.0%" in md and "1.20 s" in md
    assert "failed: exited 1: boom" in md and "no finding" in md and "(stacks only)" in md
    assert "imagenet" not in md  # skipped scripts are listed apart
    sys.path.insert(0, str(BENCH))
    from _context import Context

    doc = {"benchmark": "real_scripts", "rounds": 3, "scripts": RESULT,
           "corpus_commit": {"pytorch/examples": "77f55b912142"},
           "machine": {"loadavg_start": [1.5, 1, 1], "loadavg_end": [2.0, 1, 1]},
           "elapsed_s": 100.0}
    lines = RS.section(Context({"real_scripts": doc}, None))
    text = "\n".join(lines)
    assert "77f55b912" in text and "word_language_model 1.50" in text
    assert "Skipped: imagenet: python cannot import torchvision." in text
    assert "load average (1 min) 1.5 → 2.0" in text


def test_without_a_corpus_it_writes_nothing(tmp_path):
    out = tmp_path / "r.json"
    res = subprocess.run([sys.executable, str(BENCH / "real_scripts.py"), "--corpus",
                          str(tmp_path / "missing"), "--out", str(out)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "skipped, no corpus" in res.stdout
    assert not out.exists()


def test_stepclock_marks_steps_and_stops(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        "import sys, torch\n"
        "m = torch.nn.Linear(2, 1); opt = torch.optim.SGD(m.parameters(), lr=0.1)\n"
        "for i in range(6):\n"
        "    opt.zero_grad(); m(torch.ones(3, 2)).sum().backward(); opt.step()\n"
        "    print('step', i, flush=True)\n"
        "sys.exit(3)\n")
    clock = tmp_path / "clock.json"
    res = subprocess.run([sys.executable, str(BENCH / "_stepclock.py"), str(clock), "0",
                          str(script)], capture_output=True, text=True, timeout=120)
    got = json.loads(clock.read_text())
    assert res.returncode == 3 and got["exit_code"] == 3 and not got["stopped"]
    assert len(got["backward"]) == len(got["optimizer"]) == 6
    res = subprocess.run([sys.executable, str(BENCH / "_stepclock.py"), str(clock),
                          "optimizer:4", str(script)], capture_output=True, text=True,
                         timeout=120)
    got = json.loads(clock.read_text())
    assert res.returncode == 0 and got["stopped"] and len(got["optimizer"]) == 4
    assert res.stdout.count("step ") == 3  # ended at the 4th step(), before its print
