"""Loading a workload spec: every contract violation is one clear line, never a traceback.

Each mistake is checked twice: through :func:`load_workload` + :func:`check_workload`
(a :class:`WorkloadError` whose message names the problem) and through ``perfpilot run``
(exit code 2, one line on stderr, no "Traceback").
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from perfpilot.errors import UserError, WorkloadError
from perfpilot.workload import Workload, check_workload, load_workload

FIXTURES = Path(__file__).parent / "fixtures" / "workloads"
BAD = FIXTURES / "bad.py"

# spec -> words the one-line message must contain
CASES: dict[str, tuple[str, list[str]]] = {
    "missing-file": (str(FIXTURES / "missing.py") + ":workload",
                     ["workload file not found", "missing.py"]),
    "missing-attribute": (f"{BAD}:nope", ["has no attribute 'nope'"]),
    "not-callable": (f"{BAD}:NOT_A_FACTORY",
                     ["'NOT_A_FACTORY' is neither a Workload nor callable"]),
    "import-error": (f"{FIXTURES / 'import_error.py'}:workload",
                     ["import_error.py failed to import", "torch_vision_typo"]),
    "missing-module": ("perfpilot.no_such_module:workload",
                       ["no module named 'perfpilot.no_such_module'"]),
    "unknown-builtin": ("digitz", ["'digitz'", "digits, charlm, augmented"]),
    "factory-raises": (f"{BAD}:raises",
                       ["raises() raised FileNotFoundError", "no such directory: /data/cats"]),
    "factory-returns-dict": (f"{BAD}:returns_dict",
                             ["returns_dict() returned dict", "expected a perfpilot.Workload"]),
    "model-not-module": (f"{BAD}:model_not_module",
                         ["model() returned", "expected a torch.nn.Module"]),
    "optimizer-not-optimizer": (f"{BAD}:optimizer_not_optimizer",
                                ["optimizer() returned", "expected a torch.optim.Optimizer"]),
    "iterable-dataset": (f"{BAD}:iterable_data",
                         ["train_data()", "map-style Dataset"]),
    "empty-dataset": (f"{BAD}:empty_data", ["train_data() returned an empty dataset"]),
    "loss-per-sample": (f"{BAD}:loss_not_scalar",
                        ["loss(model, batch) must return a scalar tensor", "(2,)"]),
    "loss-float": (f"{BAD}:loss_float",
                   ["loss(model, batch) must return a scalar tensor", "float"]),
    "target-without-metric": (f"{BAD}:target_without_metric",
                              ["a target (0.9) needs a metric and val_data"]),
}


def _load_and_check(spec: str) -> Workload:
    w = load_workload(spec)
    check_workload(w)
    return w


@pytest.mark.parametrize("case", list(CASES))
def test_each_mistake_is_a_workload_error_naming_it(case: str) -> None:
    spec, words = CASES[case]
    with pytest.raises(WorkloadError) as info:
        _load_and_check(spec)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_the_valid_fixture_passes() -> None:
    w = _load_and_check(f"{BAD}:valid")
    assert isinstance(w, Workload) and w.name == "bad"


def test_a_workload_attribute_is_used_as_is(tmp_path: Path) -> None:
    path = tmp_path / "attr_wl.py"
    path.write_text(f"import runpy\nWL = runpy.run_path({str(BAD)!r})['valid']()\n")
    assert load_workload(f"{path}:WL").name == "bad"


def test_a_factory_error_keeps_its_cause() -> None:
    with pytest.raises(WorkloadError) as info:
        load_workload(f"{BAD}:raises")
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_workload_errors_are_user_errors() -> None:
    assert issubclass(WorkloadError, UserError)


# ---------------------------------------------------------------- through the CLI


def _run_registered() -> bool:
    from perfpilot.cli import app

    return any(
        (c.name or getattr(c.callback, "__name__", "")) in ("run", "run_command")
        for c in app.registered_commands
    )


needs_run = pytest.mark.skipif(not _run_registered(), reason="`perfpilot run` not built yet")


@needs_run
@pytest.mark.parametrize("case", list(CASES))
def test_cli_run_exits_2_with_one_line(case: str, capsys: pytest.CaptureFixture[str]) -> None:
    from perfpilot.cli import main

    spec, words = CASES[case]
    assert main(["run", spec, "--steps", "1"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error:")
    for word in words:
        assert word in lines[0]
    assert "Traceback" not in captured.err + captured.out


@needs_run
@pytest.mark.parametrize("case", ["factory-raises", "loss-per-sample"])
def test_the_real_command_prints_no_traceback(case: str) -> None:
    spec, words = CASES[case]
    proc = subprocess.run(
        [sys.executable, "-m", "perfpilot.cli", "run", spec, "--steps", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words[-1] in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


# ---------------------------------------------------------------- the documented example


def test_the_example_in_the_docs_loads_checks_and_trains(tmp_path: Path) -> None:
    """docs/workloads.md promises a complete example a user can copy: keep it working."""
    from perfpilot.engine import Trainer

    doc = (Path(__file__).parents[1] / "docs" / "workloads.md").read_text()
    code = doc.split("```python\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "my_workload.py"
    path.write_text(code)
    w = _load_and_check(f"{path}:workload")
    with Trainer(w, w.baseline) as trainer:
        before = trainer.evaluate()
        trainer.train_steps(20)
        after = trainer.evaluate()
    assert before is not None and after is not None and after > before


# ---------------------------------------------------------------- checking a spec early

EARLY = ("missing-file", "unknown-builtin")  # the CASES check_spec catches without importing


@pytest.mark.parametrize("case", EARLY)
def test_check_spec_says_what_load_workload_says(case: str) -> None:
    from perfpilot.workload import check_spec

    spec, words = CASES[case]
    with pytest.raises(WorkloadError) as early:
        check_spec(spec)
    with pytest.raises(WorkloadError) as late:
        load_workload(spec)
    assert str(early.value) == str(late.value)
    assert all(word in str(early.value) for word in words)


@pytest.mark.parametrize("spec, message", [
    ("nosuch", "expected 'file.py:factory'"), (":factory", "expected"), ("file.py:", "expected"),
    ("no_such_top_level_package.mod:workload",
     "no module named 'no_such_top_level_package.mod'"),
])
def test_check_spec_refuses_malformed_specs(spec: str, message: str) -> None:
    from perfpilot.workload import check_spec

    with pytest.raises(WorkloadError, match=message):
        check_spec(spec)


def test_check_spec_returns_where_and_attribute_importing_nothing() -> None:
    from perfpilot.workload import check_spec

    code = ("import sys; from perfpilot.workload import check_spec; "
            "print(check_spec('digits'), check_spec('tests/fixtures/workloads/bad.py:valid'), "
            "'torch' in sys.modules, 'perfpilot.workloads.digits' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).parents[1])
    assert proc.stdout.split() == ["('perfpilot.workloads.digits',", "'workload')",
                                   "('tests/fixtures/workloads/bad.py',", "'valid')",
                                   "False", "False"], proc.stderr
    assert check_spec(f"{BAD}:valid") == (str(BAD), "valid")
