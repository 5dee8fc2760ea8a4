"""``perfpilot lint``: terminal and JSON output, exit codes, ruff bridge, the examples."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sampling import record_of, sample_call

from perfpilot.cli import main
from perfpilot.lint import lint_paths, ruff_bridge, run_lint
from perfpilot.record import LoopSpan

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "lint"
HAS_RUFF = ruff_bridge.find_ruff() is not None


def planted_lines() -> set[tuple[str, int]]:
    """``(file, line)`` of every line the examples mark with a ``# planted`` comment."""
    out = set()
    for path in EXAMPLES.glob("*.py"):
        for n, text in enumerate(path.read_text().splitlines(), 1):
            if "# planted" in text:
                out.add((path.name, n))
    return out


def test_examples_show_exactly_the_planted_findings():
    found = lint_paths([EXAMPLES])
    where = {(Path(f.location["file"]).name, f.location["line"]) for f in found}
    assert where == planted_lines()
    assert len(found) == len(planted_lines())  # one finding per planted line
    assert not any(Path(f.location["file"]).name == "clean.py" for f in found)


@pytest.mark.skipif(not HAS_RUFF, reason="ruff is not installed")
def test_ruff_findings_join_the_list_and_overlaps_merge(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f(xs):\n    out = []\n    for x in xs:\n        out.append(x * 2)\n"
                   "    return out, sorted(xs)[0]\n")
    report = run_lint([src])
    ids = [f.id for f in report.findings]
    assert "ruff:PERF401" in ids and "ruff:FURB192" not in ids
    sort = next(f for f in report.findings if f.id == "sort-for-min-max")
    assert sort.lint.also == ("ruff:FURB192",)
    perf = next(f for f in report.findings if f.id == "ruff:PERF401")
    assert perf.lint.source == "ruff" and perf.lint.loop == LoopSpan(3, 4)
    assert report.ruff and not report.notes


def test_missing_ruff_is_said_once_and_own_rules_still_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ruff_bridge, "find_ruff", lambda: None)
    src = tmp_path / "m.py"
    src.write_text("def f(xs):\n    return sorted(xs)[0]\n")
    assert main(["lint", str(src), str(src)]) == 0
    out = capsys.readouterr().out
    assert out.count("ruff not found") == 1 and "sort-for-min-max" in out


def test_terminal_output_static(capsys):
    assert main(["lint", str(EXAMPLES), "--no-ruff"]) == 0
    out = capsys.readouterr().out
    assert "static order" in out
    assert re.search(r"1\. .*graph\.py:\d+  nested-loop-join", out)  # nested loops first
    assert "+ if tok not in vocab_set:" in out


def test_terminal_and_json_with_profile(tmp_path, capsys):
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("_cli_lint_tokens", EXAMPLES / "tokens.py")
    tokens = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = tokens
    spec.loader.exec_module(tokens)
    rec_path = tmp_path / "record.json"
    record_of(sample_call(lambda: tokens.main(n_tokens=15_000, vocab_size=1_500)),
              "tokens").save(rec_path)
    out_json = tmp_path / "lint.json"
    code = main(["lint", str(EXAMPLES), "--profile", str(rec_path), "--json", str(out_json),
                 "--no-ruff"])
    assert code == 0
    out = capsys.readouterr().out
    assert re.search(r"1\. .*tokens\.py:\d+  inefficient-membership  time \d+\.\d%  "
                     r"loop \d+\.\d%  est\. \d+\.\d\dx", out)
    assert "under 1% of the run (demoted)" in out
    doc = json.loads(out_json.read_text())
    assert doc["schema"] == "perfpilot.lint/3" and doc["profile"] == str(rec_path)
    first = doc["findings"][0]
    assert set(first) >= {"id", "title", "evidence", "fix", "estimated_speedup", "location",
                          "confidence", "time_share", "demoted", "lint"}
    assert first["id"] == "inefficient-membership" and first["time_share"] > 0.5
    assert first["demoted"] is False and first["lint"]["loop_share"] > 0.5
    assert "extra" not in first and first["factor"] == 10.0
    assert first["lint"]["loop"]["line"] < first["location"]["line"]
    assert first["lint"]["attributed_share"] >= first["lint"]["line_share"]


def test_json_to_stdout_and_fail_on(capsys):
    assert main(["lint", str(EXAMPLES / "graph.py"), "--json", "-", "--no-ruff"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {f["id"] for f in doc["findings"]} == {"queue-pop-front", "nested-loop-join"}
    assert main(["lint", str(EXAMPLES / "graph.py"), "--no-ruff", "--fail-on", "any"]) == 1
    assert main(["lint", str(EXAMPLES / "graph.py"), "--no-ruff",
                 "--fail-on", "sort-for-min-max"]) == 0
    assert main(["lint", str(EXAMPLES / "graph.py"), "--no-ruff", "--select", "queue",
                 "--fail-on", "queue-pop-front"]) == 1
    assert main(["lint", str(EXAMPLES / "clean.py"), "--fail-on", "any"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("args,message", [
    (["lint", "no/such/dir"], "no/such/dir: no such file or directory"),
    (["lint", "examples", "--select", "bogus"], "--select: unknown rule 'bogus'"),
    (["lint", "examples", "--profile", "missing.json"], "record file not found"),
])
def test_user_errors_are_one_line_exit_2(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
