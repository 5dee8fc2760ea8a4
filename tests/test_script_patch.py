"""perfpilot.script_patch: the diff that writes a script plan into the user's files.

Every case makes a patch for a source shape, applies it with ``git apply`` in a fresh
repository, reads the patched file back with ``ast`` and checks the knob's value, then
checks that a second patch of the patched files is empty. A few cheap scripts are run
with the project's interpreter to see that the patched script does what the plan says.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from perfpilot.errors import PlanError, UserError
from perfpilot.script_patch import LAUNCHER_REASONS, ScriptPatch, make_patch

GIT = shutil.which("git")
needs_git = pytest.mark.skipif(GIT is None, reason="git is not installed")
PYTHON = Path("/work/main/.venv/bin/python")
if not PYTHON.exists():
    PYTHON = Path(sys.executable)


def _repo(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    if GIT:
        subprocess.run([GIT, "init", "-q", str(root)], check=True)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return root


def _apply(root: Path, patch: ScriptPatch) -> None:
    """``git apply --check`` then ``git apply`` from ``root`` (the way docs/patch.md says)."""
    assert patch.diff, "expected a non-empty diff"
    path = root.parent / "train.patch"
    patch.save(path)
    for args in (["apply", "--check", str(path)], ["apply", str(path)]):
        done = subprocess.run([GIT, *args], cwd=root, capture_output=True, text=True)
        assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}\n{patch.diff}"


def _loader_calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_bytes())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and ast.unparse(n.func).split(".")[-1] in ("DataLoader", "DL")]
    return sorted(calls, key=lambda n: n.lineno)


def _keyword(call: ast.Call, name: str) -> Any:
    values = [k.value for k in call.keywords if k.arg == name]
    assert len(values) <= 1, f"{name} given twice"
    return ast.literal_eval(values[0]) if values else None


def _patch_apply_repatch(root: Path, changes: dict[str, Any], script: str = "train.py",
                         **kw: Any) -> ScriptPatch:
    """Patch, apply, and check that patching the patched files again gives nothing."""
    patch = make_patch(changes, script=root / script, **kw)
    _apply(root, patch)
    again = make_patch(changes, script=root / script, **kw)
    assert again.diff == "" and again.edits == (), again.diff
    return patch


def _run(path: Path) -> list[str]:
    done = subprocess.run([str(PYTHON), str(path)], capture_output=True, text=True,
                          timeout=120, cwd=path.parent)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


TINY = """\
import torch
from torch.utils.data import DataLoader, TensorDataset

ds = TensorDataset(torch.zeros(8, 2))
loader = DataLoader(ds, batch_size=4)
print(loader.num_workers, torch.get_num_threads())
"""

MULTI = """\
from torch.utils.data import DataLoader

def build(ds):
    return DataLoader(
        ds,
        batch_size=4,
        shuffle=True,
    )
"""

HANGING = """\
from torch.utils.data import DataLoader

def build(ds):
    return DataLoader(ds, batch_size=4,
                      shuffle=True)  # train
"""

TWO = """\
import torch.utils.data as tud

def build(train_ds, val_ds, args):
    train = tud.DataLoader(train_ds, batch_size=32,
                           num_workers=args.workers)
    val = tud.DataLoader(
        val_ds,
        batch_size=64,
    )
    return train, val
"""

MAIN = """\
import sys

import torch
from torch.utils import data


def main():
    torch.set_num_threads(4)
    ds = data.TensorDataset(torch.zeros(8, 2))
    loader = data.DataLoader(ds, batch_size=2)
    print(loader.num_workers, torch.get_num_threads())


if __name__ == "__main__":
    main()
"""


@needs_git
def test_single_line_call_gets_the_keyword_and_the_script_runs(tmp_path: Path) -> None:
    root = _repo(tmp_path, {"train.py": TINY})
    patch = _patch_apply_repatch(root, {"num_workers": 1, "cpu_threads": 2})
    (call,) = _loader_calls(root / "train.py")
    assert _keyword(call, "num_workers") == 1 and _keyword(call, "batch_size") == 4
    assert "loader = DataLoader(ds, batch_size=4, num_workers=1)\n" in (
        root / "train.py").read_text()
    assert patch.files == ("train.py",) and patch.launcher == {}
    assert "train.py:5: DataLoader(...): num_workers 0 (default) -> 1" in patch.edits
    assert patch.diff.startswith("--- a/train.py\n+++ b/train.py\n")
    assert _run(root / "train.py") == ["1", "2"]


@needs_git
def test_single_line_call_with_trailing_comma_keeps_it(tmp_path: Path) -> None:
    src = "from torch.utils.data import DataLoader\nl = DataLoader(ds, batch_size=4,)\n"
    root = _repo(tmp_path, {"train.py": src})
    _patch_apply_repatch(root, {"num_workers": 2})
    assert "l = DataLoader(ds, batch_size=4, num_workers=2,)\n" in (root / "train.py").read_text()


@needs_git
def test_multi_line_call_with_trailing_comma_gets_one_line_per_keyword(tmp_path: Path) -> None:
    root = _repo(tmp_path, {"train.py": MULTI})
    _patch_apply_repatch(root, {"num_workers": 2, "pin_memory": True})
    text = (root / "train.py").read_text()
    assert ("        shuffle=True,\n        num_workers=2,\n        pin_memory=True,\n"
            "    )\n") in text
    (call,) = _loader_calls(root / "train.py")
    assert _keyword(call, "num_workers") == 2 and _keyword(call, "pin_memory") is True


@needs_git
def test_hanging_call_keeps_its_alignment_and_its_comment(tmp_path: Path) -> None:
    root = _repo(tmp_path, {"train.py": HANGING})
    _patch_apply_repatch(root, {"num_workers": 2})
    text = (root / "train.py").read_text()
    assert ("    return DataLoader(ds, batch_size=4,\n                      shuffle=True,\n"
            "                      num_workers=2)  # train\n") in text


@needs_git
def test_positional_argument_is_replaced_in_its_slot(tmp_path: Path) -> None:
    src = "from torch.utils.data import DataLoader\nl = DataLoader(ds, 64, True, pin_memory=1)\n"
    root = _repo(tmp_path, {"train.py": src})
    patch = _patch_apply_repatch(root, {"batch_size": 32, "num_workers": 1, "pin_memory": True})
    (call,) = _loader_calls(root / "train.py")
    assert [ast.literal_eval(a) for a in call.args[1:]] == [32, True]
    assert _keyword(call, "batch_size") is None and _keyword(call, "num_workers") == 1
    assert _keyword(call, "pin_memory") is True  # 1 is not the plan's True: written as True
    assert "train.py:2: DataLoader(...): batch_size 64 -> 32" in patch.edits


def test_kwargs_call_sends_missing_knobs_to_the_launcher(tmp_path: Path) -> None:
    src = ("from torch.utils.data import DataLoader\n"
           "l = DataLoader(ds, batch_size=8, **opts)\n")
    root = _repo(tmp_path, {"train.py": src})
    patch = make_patch({"num_workers": 1}, script=root / "train.py")
    assert patch.diff == "" and patch.files == ()
    assert "passes **kwargs" in patch.launcher["num_workers"]
    assert "train.py:2" in patch.launcher["num_workers"]


@needs_git
def test_kwargs_call_still_gets_an_explicit_keyword_replaced(tmp_path: Path) -> None:
    src = ("from torch.utils.data import DataLoader\n"
           "l = DataLoader(ds, batch_size=8, **opts)\n")
    root = _repo(tmp_path, {"train.py": src})
    patch = _patch_apply_repatch(root, {"batch_size": 16, "num_workers": 1})
    (call,) = _loader_calls(root / "train.py")
    assert _keyword(call, "batch_size") == 16 and _keyword(call, "num_workers") is None
    assert set(patch.launcher) == {"num_workers"}


@needs_git
def test_alias_import_and_full_path_calls_are_found(tmp_path: Path) -> None:
    src = ("import torch\nfrom torch.utils.data import DataLoader as DL\n"
           "a = DL(ds)\nb = torch.utils.data.DataLoader(ds, shuffle=True)\n"
           "c = OtherLoader(ds)\n")
    root = _repo(tmp_path, {"train.py": src})
    _patch_apply_repatch(root, {"num_workers": 3})
    a, b = _loader_calls(root / "train.py")
    assert _keyword(a, "num_workers") == 3 and _keyword(b, "num_workers") == 3
    assert "c = OtherLoader(ds)\n" in (root / "train.py").read_text()


@needs_git
def test_loader_sites_select_one_loader_by_any_line_of_its_call(tmp_path: Path) -> None:
    root = _repo(tmp_path, {"data/build.py": TWO, "train.py": "import data.build\n"})
    # line 8 is "batch_size=64," inside the val call (3.11+ may report any line of it)
    patch = _patch_apply_repatch(root, {"num_workers": 4}, loader_sites=[("data/build.py", 8)])
    train, val = _loader_calls(root / "data/build.py")
    assert _keyword(val, "num_workers") == 4
    assert ast.unparse([k for k in train.keywords if k.arg == "num_workers"][0].value) \
        == "args.workers"
    assert patch.files == ("data/build.py",)
    assert patch.diff.startswith("--- a/data/build.py\n+++ b/data/build.py\n")


@needs_git
def test_expression_value_is_replaced_and_shown_in_the_edits(tmp_path: Path) -> None:
    root = _repo(tmp_path, {"build.py": TWO, "train.py": "import build\n"})
    site = (str(root / "build.py"), 4)  # absolute path, first line of the train call
    patch = _patch_apply_repatch(root, {"num_workers": 1}, loader_sites=[site])
    train, val = _loader_calls(root / "build.py")
    assert _keyword(train, "num_workers") == 1 and _keyword(val, "num_workers") is None
    assert patch.edits == ("build.py:4: tud.DataLoader(...): num_workers args.workers -> 1",)


@needs_git
def test_main_guard_script_existing_set_num_threads_is_replaced(tmp_path: Path) -> None:
    root = _repo(tmp_path, {"train.py": MAIN})
    patch = _patch_apply_repatch(root, {"cpu_threads": 2, "num_workers": 1})
    text = (root / "train.py").read_text()
    assert "torch.set_num_threads(2)" in text and text.count("set_num_threads") == 1
    assert "train.py:8: torch.set_num_threads(...): cpu_threads 4 -> 2" in patch.edits
    assert _run(root / "train.py") == ["1", "2"]


@needs_git
def test_inserted_settings_go_after_the_leading_imports_with_the_torch_alias(
        tmp_path: Path) -> None:
    src = ('"""Doc."""\nfrom __future__ import annotations\n\nimport os\nimport torch as T\n'
           "from torch.utils.data import DataLoader, TensorDataset\n\n"
           "x = TensorDataset(T.zeros(4, 1))\n"
           "print(DataLoader(x).num_workers, T.get_num_threads(), "
           "T.get_num_interop_threads(), T.backends.cudnn.benchmark)\n")
    root = _repo(tmp_path, {"train.py": src})
    patch = _patch_apply_repatch(root, {"cpu_threads": 2, "interop_threads": 1,
                                        "cudnn_benchmark": True})
    lines = (root / "train.py").read_text().splitlines()
    assert lines[5:9] == ["from torch.utils.data import DataLoader, TensorDataset",
                          "T.set_num_threads(2)", "T.set_num_interop_threads(1)",
                          "T.backends.cudnn.benchmark = True"]
    assert patch.edits[0] == "train.py:7: inserted T.set_num_threads(2) (cpu_threads)"
    assert _run(root / "train.py") == ["0", "2", "1", "True"]


@needs_git
def test_torch_imported_only_by_from_import_gets_import_torch(tmp_path: Path) -> None:
    src = "#!/usr/bin/env python\nfrom torch import nn\n\nmodel = nn.Linear(2, 2)\n"
    root = _repo(tmp_path, {"train.py": src})
    _patch_apply_repatch(root, {"cpu_threads": 3})
    lines = (root / "train.py").read_text().splitlines()
    assert lines[:4] == ["#!/usr/bin/env python", "from torch import nn", "import torch",
                         "torch.set_num_threads(3)"]


@needs_git
def test_existing_cudnn_benchmark_assignment_is_replaced(tmp_path: Path) -> None:
    src = "import torch\n\nif __name__ == '__main__':\n    torch.backends.cudnn.benchmark = False\n"
    root = _repo(tmp_path, {"train.py": src})
    _patch_apply_repatch(root, {"cudnn_benchmark": True})
    text = (root / "train.py").read_text()
    assert "    torch.backends.cudnn.benchmark = True\n" in text and text.count("cudnn") == 1


@needs_git
def test_crlf_file_stays_crlf(tmp_path: Path) -> None:
    src = MULTI.replace("\n", "\r\n").encode()
    root = _repo(tmp_path, {"train.py": src})
    _patch_apply_repatch(root, {"num_workers": 2, "cpu_threads": 1})
    raw = (root / "train.py").read_bytes()
    assert raw.count(b"\n") == raw.count(b"\r\n") and b"        num_workers=2,\r\n" in raw
    assert b"import torch\r\ntorch.set_num_threads(1)\r\n" in raw


@needs_git
@pytest.mark.parametrize("src", [
    "from torch.utils.data import DataLoader\nl = DataLoader(ds, batch_size=2)",
    "from torch.utils.data import DataLoader\nl = DataLoader(\n    ds,\n    batch_size=2)",
    "import torch",
], ids=["single", "multi", "imports-only"])
def test_file_without_trailing_newline(tmp_path: Path, src: str) -> None:
    root = _repo(tmp_path, {"train.py": src})
    changes = {"num_workers": 1} if "DataLoader" in src else {"cpu_threads": 2}
    patch = _patch_apply_repatch(root, changes)
    assert "\\ No newline at end of file" in patch.diff
    text = (root / "train.py").read_text()
    ast.parse(text)
    if "DataLoader" in src:
        (call,) = _loader_calls(root / "train.py")
        assert _keyword(call, "num_workers") == 1 and not text.endswith("\n")
    else:
        assert text == "import torch\ntorch.set_num_threads(2)\n"


@needs_git
def test_bom_and_non_ascii_text_before_the_call(tmp_path: Path) -> None:
    src = ("\ufeff# données\nfrom torch.utils.data import DataLoader\n"
           "l = DataLoader('é', batch_size=2)\n").encode()
    root = _repo(tmp_path, {"train.py": src})
    _patch_apply_repatch(root, {"num_workers": 1})
    raw = (root / "train.py").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf# donn")
    assert "l = DataLoader('é', batch_size=2, num_workers=1)\n" in raw.decode("utf-8-sig")


def test_launcher_only_knobs_have_reasons_and_no_edit(tmp_path: Path) -> None:
    root = _repo(tmp_path, {"train.py": TINY})
    changes = {"env": {"MALLOC_ARENA_MAX": "2"}, "lr_scale": 2.0, "precision": "bf16",
               "compile": "default", "channels_last": True, "seed": 0}
    patch = make_patch(changes, script=root / "train.py")
    assert patch.diff == "" and patch.edits == () and patch.files == ()
    assert set(patch.launcher) == set(changes)
    assert "MALLOC_ARENA_MAX" in patch.launcher["env"] and "run-script" in patch.launcher["env"]
    for knob in ("lr_scale", "precision", "compile", "channels_last", "seed"):
        assert patch.launcher[knob] == LAUNCHER_REASONS[knob]
    noop = make_patch({"precision": "fp32", "compile": "off", "lr_scale": 1,
                       "channels_last": False}, script=root / "train.py")
    assert noop.launcher == {} and noop.diff == ""


def test_site_outside_root_goes_to_the_launcher(tmp_path: Path) -> None:
    root = _repo(tmp_path, {"train.py": TINY})
    lib = tmp_path / "lib" / "site-packages" / "thing.py"
    lib.parent.mkdir(parents=True)
    lib.write_text(TINY)
    vendored = root / ".venv" / "lib" / "site-packages" / "thing.py"
    vendored.parent.mkdir(parents=True)
    vendored.write_text(TINY)
    patch = make_patch({"num_workers": 1}, script=root / "train.py",
                       loader_sites=[(str(lib), 5), (str(vendored), 5)])
    assert patch.diff == "" and lib.read_text() == TINY
    assert "is outside" in patch.launcher["num_workers"]
    assert "installed package" in patch.launcher["num_workers"]


def test_site_line_without_a_loader_and_script_without_loaders(tmp_path: Path) -> None:
    root = _repo(tmp_path, {"train.py": TINY, "other.py": "x = 1\n"})
    patch = make_patch({"num_workers": 1}, script=root / "train.py",
                       loader_sites=[("train.py", 1)])
    assert patch.diff == "" and "train.py:1 has no DataLoader" in patch.launcher["num_workers"]
    none = make_patch({"num_workers": 1}, script=root / "other.py")
    assert "no DataLoader(...) call found in other.py" in none.launcher["num_workers"]


def test_prefetch_without_workers_is_not_written(tmp_path: Path) -> None:
    src = "from torch.utils.data import DataLoader\nl = DataLoader(ds, num_workers=0)\n"
    root = _repo(tmp_path, {"train.py": src})
    patch = make_patch({"prefetch_factor": 4, "persistent_workers": True},
                       script=root / "train.py")
    assert patch.diff == ""
    assert "num_workers=0" in patch.launcher["prefetch_factor"]
    assert "num_workers=0" in patch.launcher["persistent_workers"]


@needs_git
def test_paths_are_relative_to_the_git_top_level(tmp_path: Path) -> None:
    root = _repo(tmp_path, {"jobs/train.py": TINY})
    patch = make_patch({"num_workers": 1}, script=root / "jobs" / "train.py")
    assert patch.files == ("jobs/train.py",)
    assert patch.diff.startswith("--- a/jobs/train.py\n+++ b/jobs/train.py\n")
    _apply(root, patch)
    mine = make_patch({"num_workers": 1}, script=root / "jobs" / "train.py",
                      root=root / "jobs")
    assert mine.diff == "" and mine.files == ()  # already applied
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "train.py").write_text(TINY)
    assert make_patch({"num_workers": 1}, script=plain / "train.py",
                      root=plain).files == ("train.py",)


@needs_git
def test_patch_p1_applies_too(tmp_path: Path) -> None:
    if shutil.which("patch") is None:
        pytest.skip("patch is not installed")
    root = _repo(tmp_path, {"train.py": MULTI})
    patch = make_patch({"num_workers": 2}, script=root / "train.py")
    done = subprocess.run(["patch", "-p1"], input=patch.diff, text=True, cwd=root,
                          capture_output=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _keyword(_loader_calls(root / "train.py")[0], "num_workers") == 2


def test_errors_name_the_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nope.py: no such file"):
        make_patch({"num_workers": 1}, script=tmp_path / "nope.py")
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\n\ndef f(:\n    pass\n")
    with pytest.raises(UserError, match=r"bad\.py:3: cannot parse"):
        make_patch({"num_workers": 1}, script=bad)
    with pytest.raises(PlanError, match="unknown script plan key"):
        make_patch({"workers": 1}, script=bad)


def test_round_trip_of_the_record() -> None:
    patch = ScriptPatch(diff="--- a/x\n", edits=("x:1: y",), launcher={"seed": "why"},
                        files=("x",))
    assert ScriptPatch.from_dict(patch.to_dict()) == patch
