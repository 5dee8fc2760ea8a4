"""The import directions of docs/architecture.md, checked on the source with ``ast``.

Every module under ``src/perfpilot`` belongs to a layer (:data:`LAYERS`, the same table as
"Layers" in docs/architecture.md). A module may import its own layer or a lower one, with
the exceptions in :data:`ALLOWED` and :data:`FORBIDDEN`. Imports inside functions count
(a lazy import is still an arrow); imports under ``if TYPE_CHECKING:`` do not (they never
run). A new top-level module or package must be added to :data:`LAYERS` here and to the
table in docs/architecture.md, so that its place is a decision, not an accident.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "perfpilot"
MAX_LINES = 500

# Longest dotted prefix wins; "perfpilot" alone is the package's own __init__.
LAYERS: dict[str, int] = {
    "perfpilot.errors": 0, "perfpilot.jsonio": 0, "perfpilot.interrupt": 0,
    "perfpilot.plan": 1, "perfpilot.record": 1, "perfpilot.record_sections": 1,
    "perfpilot.record_probe_sections": 1, "perfpilot.trial": 1, "perfpilot.tune_record": 1,
    "perfpilot.progress": 1, "perfpilot.script_plan": 1,
    "perfpilot.script_tune_record": 1,
    "perfpilot.script_patch": 2,
    "perfpilot.host": 2, "perfpilot.devices": 2, "perfpilot.measure": 2,
    "perfpilot.workload": 2, "perfpilot.workloads": 2, "perfpilot.apply_plan": 2,
    "perfpilot.engine": 3, "perfpilot.probes": 3, "perfpilot.execute": 3,
    "perfpilot.diagnose": 4, "perfpilot.lint": 4,
    "perfpilot.parallel": 5, "perfpilot.tune": 5, "perfpilot.integrations": 5,
    "perfpilot.render": 6,
    "perfpilot.commands": 7, "perfpilot.cli": 7, "perfpilot.__main__": 7, "perfpilot": 7,
}
LAYER_NAMES = {0: "foundation", 1: "contracts", 2: "platform", 3: "runtime", 4: "analysis",
               5: "services", 6: "render", 7: "top"}
# Layers a layer may import when it is not simply "itself or lower".
ALLOWED: dict[int, frozenset[int]] = {
    4: frozenset({0, 1, 2, 4}),  # analysis reads records; it never measures (no runtime)
    6: frozenset({0, 1, 4, 6}),  # renderers read records and findings; they run nothing
}
# importer prefix -> (imported prefixes, why); applies on top of the layer rule.
FORBIDDEN: dict[str, tuple[tuple[str, ...], str]] = {
    "perfpilot.execute": (("perfpilot.tune", "perfpilot.engine", "perfpilot.probes"),
                          "executors run what they are given"),
    "perfpilot.engine": (("rich",), "measuring code reports through the progress callback"),
    "perfpilot.probes": (("rich",), "measuring code reports through the progress callback"),
    "perfpilot.tune": (("rich",), "measuring code reports through the progress callback"),
    "perfpilot.diagnose": (("rich", "matplotlib", "plotly"), "analysis never formats"),
    "perfpilot.lint": (("rich", "matplotlib", "plotly"), "analysis never formats"),
}


class UnknownModule(LookupError):
    pass


def _prefix_of(module: str, table: Iterable[str]) -> str | None:
    hits = [p for p in table if module == p or module.startswith(p + ".")]
    return max(hits, key=len) if hits else None


def layer_of(module: str) -> int:
    """The layer of a ``perfpilot`` module; :class:`UnknownModule` if the table lacks it."""
    prefix = _prefix_of(module, LAYERS)
    if prefix is None or (prefix == "perfpilot" and module != "perfpilot"):
        raise UnknownModule(
            f"{module} has no layer: add its top-level name to LAYERS in "
            f"tests/test_architecture.py and to the layer table in docs/architecture.md")
    return LAYERS[prefix]


def module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node in source order, except the bodies of ``if TYPE_CHECKING:`` (their
    ``else`` runs)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(reversed(node.orelse))
        else:
            stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _is_dunder(name: str) -> bool:
    # ``from perfpilot import __version__`` reads package metadata, not the facade's code.
    return name.startswith("__") and name.endswith("__") and len(name) > 4


def imports_of(source: str, module: str, *, is_package: bool = False,
               known: frozenset[str] = frozenset()) -> list[str]:
    """Dotted names ``module`` imports. ``from a import b`` gives ``a.b`` when that is a
    module in ``known``, else ``a``; relative imports are resolved against ``module``."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[str] = []
    for node in _nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names = [a.name for a in node.names if not _is_dunder(a.name)]
            subs = [f"{base}.{n}" for n in names if f"{base}.{n}" in known]
            found.extend(subs if len(subs) == len(names) else [*subs, base])
    return found


def violation(importer: str, imported: str) -> str | None:
    """Why ``importer -> imported`` is forbidden, or None when it is allowed."""
    rule = FORBIDDEN.get(_prefix_of(importer, FORBIDDEN) or "")
    target = _prefix_of(imported, rule[0]) if rule else None
    if rule and target:
        owner = _prefix_of(importer, FORBIDDEN)
        return f"{importer} -> {imported} ({owner} may not import {target}: {rule[1]})"
    if imported != "perfpilot" and not imported.startswith("perfpilot."):
        return None
    mine, theirs = layer_of(importer), layer_of(imported)
    if theirs in ALLOWED.get(mine, frozenset(range(mine + 1))):
        return None
    return (f"{importer} -> {imported} (layer L{mine} {LAYER_NAMES[mine]} may not import "
            f"layer L{theirs} {LAYER_NAMES[theirs]})")


def source_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def check_tree(files: list[Path], root: Path = SRC) -> list[str]:
    known = frozenset(module_name(p, root) for p in files)
    problems: list[str] = []
    for path in files:
        module = module_name(path, root)
        text = path.read_text(encoding="utf-8")
        for imported in imports_of(text, module, is_package=path.name == "__init__.py",
                                   known=known):
            try:
                why = violation(module, imported)
            except UnknownModule as e:
                why = str(e)
            if why and why not in problems:
                problems.append(why)
    return problems


# -- the checks on the real tree -------------------------------------------------------------

def test_every_module_has_a_layer():
    unknown = []
    for path in source_files():
        try:
            layer_of(module_name(path))
        except UnknownModule as e:
            unknown.append(str(e))
    assert not unknown, "\n".join(unknown)


def test_no_forbidden_import():
    problems = check_tree(source_files())
    assert not problems, "forbidden imports (see docs/architecture.md):\n" + "\n".join(problems)


def test_no_source_file_over_500_lines():
    long = [f"{p.relative_to(SRC)}: {n} lines"
            for p in source_files()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert not long, f"split these modules (at most {MAX_LINES} lines):\n" + "\n".join(long)


# -- the checker itself ----------------------------------------------------------------------

SYNTHETIC = """
from __future__ import annotations
import os
from typing import TYPE_CHECKING
import perfpilot.render.console
from perfpilot.record import RunRecord
from . import timers
if TYPE_CHECKING:
    from perfpilot.cli import app
else:
    import perfpilot.commands.run

def lazy():
    from perfpilot.tune import pipeline
    import rich
"""
KNOWN = frozenset({"perfpilot.engine.timers", "perfpilot.tune.pipeline"})


def test_checker_flags_upward_lazy_and_else_imports_but_not_type_checking():
    module = "perfpilot.engine.trainer"
    imported = imports_of(SYNTHETIC, module, known=KNOWN)
    assert imported[:3] == ["__future__", "os", "typing"]
    assert "perfpilot.cli" not in imported
    assert "perfpilot.engine.timers" in imported and "perfpilot.tune.pipeline" in imported
    found = sorted(filter(None, (violation(module, m) for m in imported)))
    assert found == [
        "perfpilot.engine.trainer -> perfpilot.commands.run "
        "(layer L3 runtime may not import layer L7 top)",
        "perfpilot.engine.trainer -> perfpilot.render.console "
        "(layer L3 runtime may not import layer L6 render)",
        "perfpilot.engine.trainer -> perfpilot.tune.pipeline "
        "(layer L3 runtime may not import layer L5 services)",
        "perfpilot.engine.trainer -> rich "
        "(perfpilot.engine may not import rich: "
        "measuring code reports through the progress callback)",
    ]


def test_checker_extra_rules():
    assert "executors run what they are given" in violation("perfpilot.execute.choose",
                                                            "perfpilot.engine")
    assert "L4 analysis may not import layer L3" in violation("perfpilot.diagnose.python",
                                                              "perfpilot.probes.assemble")
    assert "L6 render may not import layer L2" in violation("perfpilot.render.console",
                                                            "perfpilot.measure")
    assert violation("perfpilot.render.console", "perfpilot.diagnose") is None
    assert violation("perfpilot.engine.trainer", "perfpilot.probes.steps") is None
    assert violation("perfpilot.tune.pipeline", "perfpilot.tune_record") is None
    assert violation("perfpilot.plan", "perfpilot") is not None  # the facade is the top


def test_unknown_module_names_the_table(tmp_path: Path):
    (tmp_path / "perfpilot").mkdir()
    new = tmp_path / "perfpilot" / "newthing.py"
    new.write_text("from perfpilot.errors import UserError\n")
    with pytest.raises(UnknownModule, match="docs/architecture.md"):
        layer_of(module_name(new, tmp_path))
    assert check_tree([new], tmp_path) == [str(UnknownModule(
        "perfpilot.newthing has no layer: add its top-level name to LAYERS in "
        "tests/test_architecture.py and to the layer table in docs/architecture.md"))]


def test_relative_imports_resolve_against_the_package():
    src = "from .base import Executor\nfrom .. import record\nfrom perfpilot import __version__\n"
    assert imports_of(src, "perfpilot.execute", is_package=True,
                      known=frozenset({"perfpilot.record"})) == [
        "perfpilot.execute.base", "perfpilot.record"]
