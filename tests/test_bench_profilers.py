"""The pure helpers of ``benchmarks/profilers.py`` (``profiler_reads.py``): reading each
profiler's output and judging whether its top item is the planted bottleneck (canned
outputs, no peer runs)."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from perfpilot.record import Finding

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "profilers.py"
READS = BENCH.with_name("profiler_reads.py")


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def P():
    return _load("bench_profilers", BENCH)


@pytest.fixture(scope="module")
def R():
    return _load("bench_profiler_reads", READS)


@pytest.fixture(scope="module")
def hotspot(P, R):
    return R.planted_region(P.EXAMPLES / "python_hotspot.py", R.PLANTED["python_hotspot"])


PYSPY_RAW = """\
<module> (python_hotspot.py:45);main (python_hotspot.py:35);running_stats (python_hotspot.py:22) 12
<module> (python_hotspot.py:45);main (python_hotspot.py:35);running_stats (python_hotspot.py:21) 9
<module> (python_hotspot.py:11);_load (<frozen importlib>:1);<module> (torch/__init__.py:1) 30
<module> (python_hotspot.py:45);main (python_hotspot.py:39);Tensor.backward (torch/_tensor.py:623) 5
"""


def test_every_planted_example_resolves_to_lines(P, R):
    for name, planted in R.PLANTED.items():
        region = R.planted_region(P.EXAMPLES / f"{name}.py", planted)
        assert region.lines, name


def test_planted_region_covers_marker_and_function_body(hotspot):
    src = (Path(BENCH).parents[1] / "examples/bottlenecks/python_hotspot.py").read_text()
    lines = src.splitlines()
    call = next(n for n, t in enumerate(lines, 1) if "running_stats(feature_log)" in t)
    body = next(n for n, t in enumerate(lines, 1) if "m2 += d * (v - mean)" in t)
    assert {call, body} <= hotspot.lines
    assert next(n for n, t in enumerate(lines, 1) if "loss.backward()" in t) not in hotspot.lines


def test_pyspy_raw_top_and_own(P, R, hotspot):
    samples = R.parse_pyspy_raw(PYSPY_RAW)
    assert len(samples) == 4
    assert samples[0][0][-1] == ("running_stats", "python_hotspot.py", 22)
    top, own = R.top_items(samples, "python_hotspot.py")
    assert (top["function"], top["file"]) == ("<module>", "torch/__init__.py")
    assert top["share"] == pytest.approx(30 / 56)
    assert R.in_region(top, hotspot) is False
    # import-time samples are left out of the own-code ranking; a sample counts for its
    # deepest frame in the script (running_stats:22, not the call on line 35)
    assert (own["line"], own["function"]) == (22, "running_stats")
    assert R.in_region(own, hotspot) is True


def test_pyinstrument_self_time_and_self_pseudo_frames(P, R, hotspot):
    path = str(P.EXAMPLES / "python_hotspot.py")
    doc = {"root_frame": {
        "function": "<module>", "file_path": path, "line_no": 1, "time": 3.0, "children": [
            {"function": "main", "file_path": path, "line_no": 26, "time": 2.0, "children": [
                {"function": "running_stats", "file_path": path, "line_no": 15, "time": 1.5,
                 "children": []},
                {"function": "[self]", "file_path": "", "line_no": 0, "time": 0.25,
                 "children": []}]},
            {"function": "<module>", "file_path": "/x/site-packages/torch/__init__.py",
             "line_no": 1, "time": 1.0, "children": []}]}}
    samples = R.parse_pyinstrument(doc)
    assert sum(w for _, w in samples) == pytest.approx(3.0)
    top, own = R.top_items(samples, "python_hotspot.py")
    assert top["function"] == "running_stats" and top["share"] == pytest.approx(0.5)
    assert own["function"] == "running_stats"
    assert R.in_region(top, hotspot) is True
    main_frame = {"kind": "frame", "function": "main", "file": path, "line": 26}
    assert R.in_region(main_frame, hotspot) is False


def test_scalene_lines_ranked_by_cpu(P, R, hotspot):
    def line(n, text, py, c, sys_=0.0):
        return {"lineno": n, "line": text, "n_cpu_percent_python": py,
                "n_cpu_percent_c": c, "n_sys_percent": sys_}

    doc = {"files": {"/a/python_hotspot.py": {"lines": [
        line(11, "import torch\n", 0.0, 30.0), line(22, "  m2 += d * (v - mean)\n", 18.0, 5.0),
        line(39, "        loss.backward()\n", 0.5, 0.2), line(5, "\n", 0.0, 0.0)]},
        "/a/other.py": {"lines": [line(1, "x", 90.0, 0.0)]}}}
    rows = R.parse_scalene(doc, "python_hotspot.py")
    assert [r["line"] for r in rows] == [11, 22, 39]
    assert rows[0]["share"] == pytest.approx(0.30)
    assert R.in_region(rows[1], hotspot) is True


TORCH_TABLE = """\
-------------------------------------  ------------  ------------  ------------
                                 Name    Self CPU %      Self CPU    # of Calls
-------------------------------------  ------------  ------------  ------------
                            aten::cat        31.20%      12.000ms           200
                          aten::addmm        10.00%       4.000ms           200
-------------------------------------  ------------  ------------  ------------
Self CPU time total: 38.462ms
"""


def test_torch_table(P, R):
    rows = R.parse_torch_table(TORCH_TABLE)
    assert [r["name"] for r in rows] == ["aten::cat", "aten::addmm"]
    assert rows[0]["share"] == pytest.approx(0.312)
    region = R.planted_region(P.EXAMPLES / "repeated_concat.py", R.PLANTED["repeated_concat"])
    assert R.in_region(rows[0], region) is True
    assert R.in_region(rows[1], region) is False
    assert R.parse_torch_table("no table") == []


def test_real_torch_table_parses(P, R):
    torch = pytest.importorskip("torch")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        torch.cat([torch.ones(4), torch.ones(4)])
    rows = R.parse_torch_table(prof.key_averages().table(sort_by="self_cpu_time_total"))
    assert any(r["name"] == "aten::cat" for r in rows)
    assert all(r["share"] is not None for r in rows)


def test_perfpilot_finding_and_judge(P, R, hotspot):
    findings = [Finding(id="python-hotspot", title="t", evidence="e", fix="vectorize",
                        estimated_speedup=2.4, time_share=0.6,
                        location={"file": "/a/python_hotspot.py", "line": 35})]
    hot = [{"file": "/a/python_hotspot.py", "line": 45, "function": "<module>",
            "self_share": 0.0},
           {"file": "/a/python_hotspot.py", "line": 22, "function": "running_stats",
            "self_share": 0.5}]
    read = R.perfpilot_items(findings, hot)
    assert R.describe(read["top"]) == "python-hotspot 2.40x"
    assert read["own"]["line"] == 22
    wrong = R.perfpilot_items([replace(findings[0], id="small-batch")], [])
    verdict = R.judge([read, read, wrong], hotspot)
    assert verdict["top_hit"] is True and verdict["top_hits"] == "2/3"
    assert verdict["names_fix"] is True and verdict["estimated_speedup"] == 2.4
    assert R.judge([read], None)["top_hit"] is None  # an example without a plant


def test_overhead_without_interval_below_five_rounds(P):
    out = P.overhead([1.0, 2.0, 1.0], [1.1, 2.4, 1.3])
    assert out["overhead"] == pytest.approx(0.2)
    assert out["ci_low"] is None


def test_library_leaf_points_through_the_script_line_that_calls_it(P, R):
    region = R.planted_region(P.EXAMPLES / "dataloader_bound.py", R.PLANTED["dataloader_bound"])
    source = (P.EXAMPLES / "dataloader_bound.py").read_text().splitlines()
    sleep_line = next(n for n, t in enumerate(source, 1) if "time.sleep(0.001)" in t)
    raw = (f"<module> (dataloader_bound.py:45);main (dataloader_bound.py:36);"
           f"__getitem__ (dataloader_bound.py:{sleep_line});sleep (<built-in>:0) 7\n"
           "<module> (dataloader_bound.py:11);<module> (torch/__init__.py:1) 5\n")
    top, _ = R.top_items(R.parse_pyspy_raw(raw), "dataloader_bound.py")
    assert top["function"] == "sleep" and top["via"]["line"] == sleep_line
    assert R.in_region(top, region) is True
    assert "via dataloader_bound.py" in R.describe(top)
    imports = R.top_items(R.parse_pyspy_raw(raw.splitlines()[1]), "dataloader_bound.py")[0]
    assert R.in_region(imports, region) is False
