"""inefficient-membership: ``x in c`` / ``c.index(x)`` on a list or tuple inside a loop.

Flags a test repeated by a loop against a list/tuple that is built outside that loop (or
only grown inside it with ``append``/``extend``/``+=``, which ``set.add``/``update``/``|=``
replace). Stays silent, for precision, when the container is a set/dict or of unknown
kind, is a short display that is never grown (a few comparisons cost less than a hash),
is rebuilt on every iteration, or is mutated inside the loop in ways a set cannot mirror
(``insert``, ``pop``, ``remove``, ``sort``, item assignment, ``del``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from perfpilot.lint.base import Hit, Rule, hit, line_diff, where
from perfpilot.lint.context import FileContext, Loop, names_in
from perfpilot.lint.kinds import SEQUENCE_KINDS, is_short_display, name_kind

SHORT = 8  # displays up to this size never grown are left alone
_GROWTH = frozenset({"append", "extend"})
_READ_ONLY = frozenset({"index", "count", "copy", "__contains__", "__len__"})


def check(ctx: FileContext) -> Iterator[Hit]:
    for cmp in ctx.walk(ast.Compare):
        for op, right in zip(cmp.ops, cmp.comparators, strict=True):
            if isinstance(op, (ast.In, ast.NotIn)):
                found = _membership(ctx, cmp, right)
                if found is not None:
                    yield found
    for call in ctx.walk(ast.Call):
        f = call.func
        if (isinstance(f, ast.Attribute) and f.attr == "index" and len(call.args) == 1
                and not call.keywords and not isinstance(call.args[0], ast.Starred)):
            found = _index(ctx, call, f.value)
            if found is not None:
                yield found


def _membership(ctx: FileContext, cmp: ast.Compare, container: ast.expr) -> Hit | None:
    loops = ctx.loops_of(cmp)
    if not loops or _invariant(ctx, _left_of(cmp, container), loops):
        return None  # a test that gives the same answer every iteration wants hoisting
    if isinstance(container, (ast.Tuple, ast.List)):
        return _inline_literal(ctx, cmp, container, loops)
    seq = _sequence_built_outside(ctx, container, loops[-1])
    if seq is None:
        return None
    name, kind, growth = seq
    bline = _binding_line(ctx, name, container)
    grown = " and grown inside the loop" if growth else ""
    return hit(
        ctx, RULE.id, cmp, loops=loops,
        title=f"membership test scans the {kind} `{name}` on every iteration",
        evidence=(f"`{ctx.segment(cmp)}` runs in {where(loops[-1])} and compares against "
                  f"every element of `{name}` (a {kind} built at line {bline}{grown}): "
                  f"O(len({name})) per test."),
        fix=_fix_text(ctx, name, kind, container, growth),
        diff=_membership_diff(ctx, name, container, growth),
    )


def _index(ctx: FileContext, call: ast.Call, container: ast.expr) -> Hit | None:
    loops = ctx.loops_of(call)
    if loops and _invariant(ctx, call.args[0], loops):
        return None
    seq = _sequence_built_outside(ctx, container, loops[-1]) if loops else None
    if seq is None or seq[2]:  # a position dict would need upkeep on every append
        return None
    name, kind, _ = seq
    arg = ctx.segment(call.args[0])
    diff = (f"+ {name}_pos = {{v: i for i, v in reversed(list(enumerate({name})))}}"
            f"  # once, before the loop", *line_diff(ctx, call, f"{name}_pos[{arg}]"))
    return hit(
        ctx, RULE.id, call, loops=loops,
        title=f"`{name}.index(...)` scans the {kind} on every iteration",
        evidence=(f"`{ctx.segment(call)}` runs in {where(loops[-1])} and scans `{name}` "
                  f"(a {kind} built at line {_binding_line(ctx, name, container)}) from the "
                  f"start each time: O(len({name})) per call."),
        fix=(f"Build a position dict once before the loop (`{name}_pos`, first index wins) "
             f"and look positions up in O(1); a missing item raises KeyError, not ValueError."),
        diff=diff,
    )


def _left_of(cmp: ast.Compare, right: ast.expr) -> ast.expr:
    operands = [cmp.left, *cmp.comparators]
    return operands[operands.index(right) - 1]


def _invariant(ctx: FileContext, expr: ast.expr, loops: tuple[Loop, ...]) -> bool:
    """``expr`` reads nothing the loops change (their targets or names bound inside)."""
    names = names_in(expr)
    if any(names & lp.targets for lp in loops):
        return False
    return not any(ctx.is_inside(b.node, loops[0]) for n in names
                   for b in ctx.bindings(n, expr))


def _inline_literal(ctx: FileContext, cmp: ast.Compare, lit: ast.Tuple | ast.List,
                    loops: tuple[Loop, ...]) -> Hit | None:
    if len(lit.elts) <= SHORT or not all(isinstance(e, ast.Constant) for e in lit.elts):
        return None
    as_set = "{" + ", ".join(ctx.segment(e) for e in lit.elts) + "}"
    return hit(
        ctx, RULE.id, cmp, loops=loops,
        title=f"membership test scans a {len(lit.elts)}-item literal on every iteration",
        evidence=(f"The test at line {cmp.lineno} runs in {where(loops[-1])} and compares "
                  f"against up to {len(lit.elts)} constants one by one."),
        fix="Write the constants as a set literal `{...}`: CPython folds it into a frozenset "
            "once and each test becomes a hash lookup.",
        diff=line_diff(ctx, lit, as_set) if len(as_set) < 80 else (),
    )


def _sequence_built_outside(ctx: FileContext, container: ast.expr,
                            inner: Loop) -> tuple[str, str, list[ast.AST]] | None:
    """``(name, kind, growth nodes)`` if ``container`` is a list/tuple a set could replace."""
    if not isinstance(container, ast.Name):
        return None
    name = container.id
    kind = name_kind(ctx, name, container)
    if kind not in SEQUENCE_KINDS:
        return None
    binds = [b for b in ctx.bindings(name, container) if b.kind != "augassign"]
    if not binds or any(ctx.is_inside(b.node, inner) for b in binds):
        return None  # rebuilt on every iteration: a set would cost the same to build
    growth = _uses_in_loop(ctx, name, container, inner)
    if growth is None or _short_and_fixed(ctx, name, container, binds):
        return None
    return name, kind, growth


def _uses_in_loop(ctx: FileContext, name: str, at: ast.AST,
                  inner: Loop) -> list[ast.AST] | None:
    """Growth nodes of ``name`` inside ``inner``; None if mutated in a way a set cannot."""
    scope = ctx.scope_of(at)
    growth: list[ast.AST] = []
    for node in ast.walk(inner.node):
        if not (isinstance(node, ast.Name) and node.id == name):
            continue
        if ctx.scope_of(node) is not scope or not ctx.is_inside(node, inner):
            continue
        use = _use_of(ctx, node)
        if use == "bad":
            return None
        if use == "growth":
            growth.append(ctx.parents[node])
    return growth


def _use_of(ctx: FileContext, node: ast.Name) -> str:
    parent = ctx.parents.get(node)
    if isinstance(parent, ast.AugAssign) and parent.target is node:
        return "growth" if isinstance(parent.op, ast.Add) else "bad"
    if isinstance(parent, ast.Subscript) and parent.value is node:
        return "bad" if isinstance(parent.ctx, (ast.Store, ast.Del)) else "read"
    if isinstance(parent, ast.Attribute) and parent.value is node:
        call = ctx.parents.get(parent)
        if isinstance(call, ast.Call) and call.func is parent:
            if parent.attr in _GROWTH:
                return "growth"
            return "read" if parent.attr in _READ_ONLY else "bad"
    return "read"


def _short_and_fixed(ctx: FileContext, name: str, at: ast.AST, binds: list) -> bool:
    if not all(b.kind == "assign" and is_short_display(b.value, SHORT) for b in binds):
        return False
    scope = ctx.scope_of(binds[0].node)
    for node in ast.walk(scope):
        if isinstance(node, ast.Name) and node.id == name and _use_of(ctx, node) != "read":
            return False
    return not any(b.kind == "augassign" for b in ctx.bindings(name, at))


def _set_only(ctx: FileContext, name: str, at: ast.AST) -> bool:
    """Every use of ``name`` is a membership test, an append/extend, ``len`` or a truth test."""
    binds = ctx.bindings(name, at)
    scope = ctx.scope_of(binds[0].node) if binds else ctx.tree
    for node in ast.walk(scope):
        if not (isinstance(node, ast.Name) and node.id == name
                and isinstance(node.ctx, ast.Load)):
            continue
        parent = ctx.parents.get(node)
        if isinstance(parent, ast.Compare) and node in parent.comparators:
            ops = [op for op, c in zip(parent.ops, parent.comparators, strict=True) if c is node]
            if all(isinstance(op, (ast.In, ast.NotIn)) for op in ops):
                continue
        if isinstance(parent, ast.Attribute) and parent.attr in _GROWTH:
            continue
        if isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name) \
                and parent.func.id == "len":
            continue
        if isinstance(parent, (ast.If, ast.While)) and parent.test is node:
            continue
        return False
    return len(binds) == 1 and binds[0].kind == "assign"


def _fix_text(ctx: FileContext, name: str, kind: str, at: ast.AST, growth: list) -> str:
    if _set_only(ctx, name, at):
        return (f"Make `{name}` a set (`.add` instead of `.append`): each test becomes an "
                f"O(1) hash lookup.")
    add = "; call `.add` where you append to the list" if growth else ""
    return (f"Keep a set next to the {kind} for the test, built once before the loop "
            f"(`{name}_set = set({name})`){add}; the {kind} keeps its order for other uses.")


def _membership_diff(ctx: FileContext, name: str, container: ast.Name,
                     growth: list[ast.AST]) -> tuple[str, ...]:
    if _set_only(ctx, name, container):
        bind = ctx.bindings(name, container)[0]
        value = bind.value
        new = None if value is None else _as_set(ctx, value)
        lines = list(line_diff(ctx, value, new)) if new is not None else []
        for g in growth[:1]:
            if isinstance(g, ast.Attribute) and g.attr == "append":
                lines += line_diff(ctx, g, f"{name}.add")
        return tuple(lines)
    lines = [f"+ {name}_set = set({name})  # once, before the loop",
             *line_diff(ctx, container, f"{name}_set")]
    if growth:
        lines.append(f"+ {name}_set.add(...)  # next to each append")
    return tuple(lines)


def _as_set(ctx: FileContext, value: ast.expr) -> str:
    if isinstance(value, (ast.List, ast.Tuple)) and not value.elts:
        return "set()"
    if isinstance(value, (ast.List, ast.Tuple)) and not any(
            isinstance(e, ast.Starred) for e in value.elts):
        return "{" + ", ".join(ctx.segment(e) for e in value.elts) + "}"
    return f"set({ctx.segment(value)})"


def _binding_line(ctx: FileContext, name: str, at: ast.AST) -> int:
    binds = [b for b in ctx.bindings(name, at) if b.kind != "augassign"]
    return min(getattr(b.node, "lineno", 0) for b in binds) if binds else 0


RULE = Rule(
    id="inefficient-membership",
    summary="`x in list` / `list.index(x)` in a loop: use a set or a dict built once",
    measure="line", factor=10.0, weight=3, check=check,
    assumption="a hash lookup replaces the scan, so the test's line keeps at most a tenth "
               "of its time",
)
