"""One parsed source file and the facts every rule asks about it.

A :class:`FileContext` answers three questions cheaply, without executing anything:

- which loops repeat a node (:meth:`FileContext.loops_of`): ``for``/``while`` bodies,
  ``while`` tests, comprehension elements and filters, but not a ``for`` loop's iterable
  or ``else`` (evaluated once) and not across a ``def``/``lambda``/``class`` boundary;
- which nodes bind a name in a scope (:meth:`FileContext.bindings`), resolving locals,
  closures and module globals the way Python does (class bodies are skipped);
- what a dotted name refers to through the file's imports (:meth:`FileContext.qualname`).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ScopeNode = ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef
LoopKind = Literal["for", "while", "comprehension"]
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")
_SCOPES = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_COMPS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
# Used when a file does not import them itself (snippets, notebooks turned into scripts).
_CONVENTIONAL = {"np": "numpy", "numpy": "numpy", "torch": "torch", "pd": "pandas",
                 "pandas": "pandas"}


@dataclass(frozen=True)
class Loop:
    """A loop level. For a comprehension, one level per ``for`` clause (``gen``)."""

    node: ast.AST
    line: int
    end_line: int
    kind: LoopKind
    targets: frozenset[str]
    iter: ast.expr | None  # None for ``while``
    gen: ast.comprehension | None = None


@dataclass(frozen=True)
class Binding:
    """A node that (re)binds a name: ``value`` is the bound expression when known."""

    node: ast.AST
    kind: Literal["assign", "augassign", "for", "param", "import", "other"]
    value: ast.expr | None = None
    annotation: ast.expr | None = None


class FileContext:
    """A parsed file. Build with :meth:`parse`; rules only read it."""

    def __init__(self, path: Path, source: str, tree: ast.Module) -> None:
        self.path = path
        self.source = source
        # Split like the parser does (\n, \r\n, \r only): str.splitlines would also split
        # on form feeds and other separators and shift every line number after them.
        self._raw_lines = _LINE.findall(source)
        self.lines = [ln.rstrip("\r\n") for ln in self._raw_lines]
        self.tree = tree
        self.parents: dict[ast.AST, ast.AST] = {}
        self._by_type: dict[type, list[ast.AST]] = {}
        for parent in ast.walk(tree):  # one pass: parents and nodes by type
            self._by_type.setdefault(type(parent), []).append(parent)
            for child in ast.iter_child_nodes(parent):
                self.parents[child] = parent
        self.imports = _imports(self._by_type.get(ast.Import, [])
                                + self._by_type.get(ast.ImportFrom, []))
        self._bindings: dict[ast.AST, dict[str, list[Binding]]] = {}
        self._loops: dict[ast.AST, tuple[Loop, ...]] = {}
        self._walks: dict[tuple[type, ...], list[ast.AST]] = {}

    @classmethod
    def parse(cls, path: Path, source: str) -> FileContext:
        """Raises ``SyntaxError`` (or ``ValueError`` for NUL bytes) like :func:`ast.parse`."""
        return cls(path, source, ast.parse(source, filename=str(path)))

    # -- walking ---------------------------------------------------------------------

    def walk(self, *types: type) -> Iterator[ast.AST]:
        """Every node of the given types (exact or subclasses), in source order."""
        if types not in self._walks:
            found = [n for t, nodes in self._by_type.items() if issubclass(t, types)
                     for n in nodes]
            self._walks[types] = sorted(found, key=lambda n: (getattr(n, "lineno", 0),
                                                              getattr(n, "col_offset", 0)))
        return iter(self._walks[types])

    def segment(self, node: ast.AST) -> str:
        """The node's source text (``ast.unparse`` when positions are missing)."""
        try:
            line, end = node.lineno - 1, node.end_lineno - 1  # type: ignore[attr-defined]
            col, end_col = node.col_offset, node.end_col_offset  # type: ignore[attr-defined]
        except AttributeError:
            return ast.unparse(node)
        if end is None or end_col is None or end >= len(self._raw_lines):
            return ast.unparse(node)
        if line == end:  # offsets are in UTF-8 bytes
            return self._raw_lines[line].encode()[col:end_col].decode(errors="replace")
        first = self._raw_lines[line].encode()[col:].decode(errors="replace")
        last = self._raw_lines[end].encode()[:end_col].decode(errors="replace")
        return "".join([first, *self._raw_lines[line + 1:end], last])

    def line_text(self, line: int) -> str:
        return self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""

    def scope_of(self, node: ast.AST) -> ScopeNode:
        """The innermost function, lambda, class or module around ``node``."""
        p = self.parents.get(node)
        while p is not None and not isinstance(p, _SCOPES):
            p = self.parents.get(p)
        return p if p is not None else self.tree

    # -- loops -----------------------------------------------------------------------

    def loops_of(self, node: ast.AST) -> tuple[Loop, ...]:
        """Loops that repeat ``node``, outermost first, within its own scope."""
        if node not in self._loops:
            self._loops[node] = tuple(reversed(list(self._enclosing_loops(node))))
        return self._loops[node]

    def _enclosing_loops(self, node: ast.AST) -> Iterator[Loop]:
        grand: ast.AST | None = None
        child, p = node, self.parents.get(node)
        while p is not None and not isinstance(p, _SCOPES):
            if isinstance(p, (ast.For, ast.AsyncFor)):
                if child is p.target or child in p.body:
                    yield _for_loop(p)
            elif isinstance(p, ast.While):
                if child is p.test or child in p.body:
                    yield _while_loop(p)
            elif isinstance(p, _COMPS):
                yield from reversed(_comp_levels(p, child, grand))
            grand, child, p = child, p, self.parents.get(p)

    def loop_of_node(self, node: ast.AST) -> Loop | None:
        """The :class:`Loop` for a ``for``/``while`` statement node itself."""
        if isinstance(node, (ast.For, ast.AsyncFor)):
            return _for_loop(node)
        if isinstance(node, ast.While):
            return _while_loop(node)
        return None

    def is_inside(self, node: ast.AST, loop: Loop) -> bool:
        """Whether ``loop`` repeats ``node``."""
        return any(lp.node is loop.node and lp.gen is loop.gen for lp in self.loops_of(node))

    # -- names -----------------------------------------------------------------------

    def bindings(self, name: str, at: ast.AST) -> list[Binding]:
        """Nodes binding ``name`` as seen from ``at`` (local, enclosing function, global)."""
        scope: ast.AST | None = self.scope_of(at)
        first = True
        while scope is not None:
            table = self._table(scope)
            if name in table and not (isinstance(scope, ast.ClassDef) and not first):
                return table[name]
            if isinstance(scope, ast.Module):
                return []
            first = False
            scope = self.scope_of(scope)
        return []

    def is_builtin(self, name: str, at: ast.AST) -> bool:
        """``name`` is not rebound anywhere visible from ``at`` (so it is the builtin)."""
        return not self.bindings(name, at)

    def _table(self, scope: ast.AST) -> dict[str, list[Binding]]:
        if scope not in self._bindings:
            self._bindings[scope] = _scope_bindings(scope)
        return self._bindings[scope]

    def qualname(self, expr: ast.AST) -> str | None:
        """``np.random.rand`` -> ``numpy.random.rand`` through the file's imports."""
        parts: list[str] = []
        while isinstance(expr, ast.Attribute):
            parts.append(expr.attr)
            expr = expr.value
        if not isinstance(expr, ast.Name):
            return None
        base = self.imports.get(expr.id)
        if base is None and expr.id in _CONVENTIONAL and not self.bindings(expr.id, expr):
            base = _CONVENTIONAL[expr.id]
        if base is None:
            return None
        return ".".join([base, *reversed(parts)])


def names_in(node: ast.AST | None) -> set[str]:
    """Every ``Name`` read or written inside ``node``."""
    if node is None:
        return set()
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def target_names(target: ast.AST) -> frozenset[str]:
    return frozenset(n.id for n in ast.walk(target) if isinstance(n, ast.Name))


def same_expr(a: ast.AST, b: ast.AST) -> bool:
    """Same expression text (ignoring Load/Store context and formatting)."""
    return ast.unparse(a) == ast.unparse(b)


def _for_loop(node: ast.For | ast.AsyncFor) -> Loop:
    return Loop(node, node.lineno, node.end_lineno or node.lineno, "for",
                target_names(node.target), node.iter)


def _while_loop(node: ast.While) -> Loop:
    return Loop(node, node.lineno, node.end_lineno or node.lineno, "while", frozenset(), None)


def _comp_levels(comp: ast.AST, child: ast.AST, grand: ast.AST | None) -> list[Loop]:
    """Comprehension levels repeating ``child``, outermost first."""
    gens: list[ast.comprehension] = comp.generators  # type: ignore[attr-defined]
    if child in gens:
        i = gens.index(child)
        # A clause's iterable runs once per iteration of the clauses before it.
        depth = i if grand is gens[i].iter else i + 1
    else:  # element, key or value
        depth = len(gens)
    end = comp.end_lineno or comp.lineno  # type: ignore[attr-defined]
    return [Loop(comp, comp.lineno, end, "comprehension",  # type: ignore[attr-defined]
                 target_names(g.target), g.iter, g) for g in gens[:depth]]


def _imports(nodes: list[ast.AST]) -> dict[str, str]:
    out: dict[str, str] = {}
    for node in nodes:
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def _scope_bindings(scope: ast.AST) -> dict[str, list[Binding]]:
    table: dict[str, list[Binding]] = {}

    def add(name: str, b: Binding) -> None:
        table.setdefault(name, []).append(b)

    if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        a = scope.args
        for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
            if arg is not None:
                add(arg.arg, Binding(arg, "param", None, arg.annotation))
    for node in _own_nodes(scope):
        for name, b in _binds(node):
            add(name, b)
    return table


def _own_nodes(scope: ast.AST) -> Iterator[ast.AST]:
    """Nodes of ``scope`` without descending into nested scopes (their names are theirs)."""
    body = scope.body if not isinstance(scope, ast.Lambda) else [scope.body]
    stack = list(reversed(body))
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, _SCOPES):
            continue  # the def's name is bound here (see _binds); its body is not ours
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _binds(node: ast.AST) -> Iterator[tuple[str, Binding]]:
    if isinstance(node, ast.Assign):
        for t in node.targets:
            value = node.value if isinstance(t, ast.Name) else None
            for name in target_names(t) if not isinstance(t, ast.Subscript | ast.Attribute) else ():
                yield name, Binding(node, "assign", value)
    elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        yield node.target.id, Binding(node, "assign", node.value, node.annotation)
    elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
        yield node.target.id, Binding(node, "augassign", node.value)
    elif isinstance(node, ast.NamedExpr):
        yield node.target.id, Binding(node, "assign", node.value)
    elif isinstance(node, (ast.For, ast.AsyncFor)):
        for name in target_names(node.target):
            yield name, Binding(node, "for")
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
        for a in node.names:
            yield (a.asname or a.name.split(".")[0]), Binding(node, "import")
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        yield node.name, Binding(node, "other")
    elif isinstance(node, ast.withitem) and node.optional_vars is not None:
        for name in target_names(node.optional_vars):
            yield name, Binding(node, "other")
    elif isinstance(node, ast.ExceptHandler) and node.name:
        yield node.name, Binding(node, "other")
    elif isinstance(node, (ast.Global, ast.Nonlocal)):
        for name in node.names:  # resolved in the outer scope; mark "not a plain local"
            yield name, Binding(node, "other")
