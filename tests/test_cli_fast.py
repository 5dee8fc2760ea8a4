"""The CLI answers a mistake, and ``--help``, without importing torch (issue 21, item 4),
and its help shows flags without a value type and arguments without braces (item 7).

Importing torch costs seconds (tens of seconds on a loaded machine), so every input that
can be checked without it is checked first. The tests run the real CLI in a fresh
interpreter and ask it afterwards whether ``torch`` is in ``sys.modules``; wall time is
measured by ``benchmarks/cli_startup.py``, not here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import perfpilot
from perfpilot.cli import COMMAND_MODULES, app

SRC = str(Path(perfpilot.__file__).resolve().parents[1])
MARK = "torch imported: "
# Runs perfpilot's main() on each argument list of argv[1] (JSON) in this fresh process,
# then says whether torch was imported; the exit code is the last command's.
PROBE = f"""
import json, sys
from perfpilot.cli import main
codes = [main(args) for args in json.loads(sys.argv[1])]
print("{MARK}" + str("torch" in sys.modules))
sys.exit(codes[-1])
"""


def run_cli(*commands: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (SRC, os.environ.get("PYTHONPATH", "")) if p)}
    return subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(commands))],
                          capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


def torch_imported(proc: subprocess.CompletedProcess[str]) -> bool:
    marks = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    assert len(marks) == 1, proc.stdout + proc.stderr
    return marks[0] == MARK + "True"


# ---------------------------------------------------------------- --help


def test_help_of_every_command_imports_no_torch() -> None:
    proc = run_cli(["--help"], *[[name, "--help"] for name in COMMAND_MODULES])
    assert proc.returncode == 0, proc.stderr
    assert "Usage: perfpilot tune" in proc.stdout
    assert not torch_imported(proc)


# ---------------------------------------------------------------- mistakes


@pytest.fixture
def plans(tmp_path: Path) -> Path:
    (tmp_path / "misspelt.json").write_text(json.dumps({"batch_sise": 64}))
    (tmp_path / "bad-value.json").write_text(json.dumps({"batch_size": 0}))
    (tmp_path / "train.py").write_text("print('never run')\n")
    return tmp_path


# args (run in the plans folder) -> words of the one error line
MISTAKES: dict[str, tuple[list[str], list[str]]] = {
    "run-misspelt-plan-key": (["run", "digits", "--plan", "misspelt.json"],
                              ["misspelt.json", "unknown plan key 'batch_sise'"]),
    "run-bad-plan-value": (["run", "digits", "--plan", "bad-value.json"],
                           ["bad-value.json", "plan key 'batch_size'", "must be >= 1"]),
    "run-bad-builtin": (["run", "digitz"], ["workload 'digitz'", "digits, charlm"]),
    "run-steps-and-time": (["run", "digits", "--steps", "3", "--time", "1"],
                           ["--steps and --time"]),
    "tune-bad-duration": (["tune", "digits", "--budget", "5x"],
                          ["--budget: '5x' is not a duration"]),
    "tune-budget-too-small": (["tune", "digits", "--budget", "5s"],
                              ["--budget: 5 s is too small"]),
    "demo-budget-too-small": (["demo", "--budget", "5s"], ["--budget: 5 s is too small"]),
    "profile-missing-workload-file": (["profile", "nosuch.py:fn"],
                                      ["workload file not found: nosuch.py"]),
    "profile-bad-spec": (["profile", "nosuch"], ["workload 'nosuch'", "expected"]),
    "profile-bad-duration": (["profile", "digits", "--duration", "3x"],
                             ["--duration: '3x' is not a duration"]),
    "profile-misspelt-plan-key": (["profile", "digits", "--plan", "misspelt.json"],
                                  ["misspelt.json", "'batch_sise'"]),
    "tune-script-target": (["tune", "--target", "0.9", "--", "python", "train.py"],
                           ["--target applies to a WORKLOAD"]),
    "tune-script-executor": (["tune", "--executor", "ray", "--", "python", "train.py"],
                             ["--executor ray", "separate processes"]),
    "tune-script-bad-stage": (["tune", "--only", "lodaer", "--", "python", "train.py"],
                              ["--only: unknown stage 'lodaer'"]),
    "tune-script-missing": (["tune", "--", "python", "nosuch.py"],
                            ["script not found: nosuch.py"]),
    "tune-script-resume-nothing": (["tune", "--resume", "--out", "empty", "--", "python",
                                    "train.py"], ["--resume: no tuning to continue in empty"]),
    "tune-two-workloads": (["tune", "digits", "charlm"], ["give one WORKLOAD"]),
    "devices-check-misspelt-plan": (["devices", "--check", "misspelt.json"],
                                    ["misspelt.json", "'batch_sise'"]),
}


@pytest.mark.parametrize("case", list(MISTAKES))
def test_a_mistake_is_one_line_exit_2_without_torch(case: str, plans: Path) -> None:
    args, words = MISTAKES[case]
    proc = run_cli(args, cwd=plans)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    for word in words:
        assert word in lines[0]
    assert proc.stdout.strip() == MARK + "False", "printed more than the error, or imported torch"


# ---------------------------------------------------------------- how --help looks


def _help(args: list[str]) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("args", [[], *[[name] for name in COMMAND_MODULES]],
                         ids=["perfpilot", *COMMAND_MODULES])
def test_help_shows_flags_bare_and_arguments_without_braces(args: list[str]) -> None:
    text = _help(args)
    assert "<bool>" not in text
    assert not re.search(r"\{[^{}]*\}", text), text
    assert re.search(r"--help\s+Show this message", text), text


def test_usage_lines_name_arguments_plainly() -> None:
    usage = {name: _help([name]).split("Usage: ", 1)[1].splitlines()[0].rstrip()
             for name in ("run", "tune", "report", "lint", "profile")}
    assert usage["run"] == "perfpilot run [OPTIONS] WORKLOAD"
    assert usage["tune"] == ("perfpilot tune [OPTIONS] "
                             "[WORKLOAD | -- python script.py ARGS...]")
    assert usage["report"] == "perfpilot report [OPTIONS] DIR"
    assert usage["lint"] == "perfpilot lint [OPTIONS] PATH..."
    assert usage["profile"] == ("perfpilot profile [OPTIONS] "
                                "[WORKLOAD | -- python script.py ARGS...]")


def test_python_dash_m_perfpilot_is_the_cli() -> None:
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.run([sys.executable, "-m", "perfpilot", "--version"], capture_output=True,
                          text=True, timeout=60, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == perfpilot.__version__, proc.stderr
