"""nested-loop-join: two nested loops matching items of two collections by equality.

``for a in A: for b in B: if a.k == b.k`` (or the comprehension / ``any(...)`` form) does
len(A)·len(B) comparisons; a dict index of B by key, built once, finds the matches in
O(len(A) + len(B)). Flags only an ``==`` used as a filter whose one side depends on the
outer loop's variables only and the other on the inner loop's only, where the inner
collection does not depend on the outer loop (then it is not a join of two collections).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from perfpilot.lint.base import Hit, Rule, hit, source_lines, where
from perfpilot.lint.context import FileContext, Loop, names_in
from perfpilot.lint.kinds import is_short_display
from perfpilot.lint.membership import SHORT

_AGGREGATES = frozenset({"any", "all", "next", "sum", "list", "set"})


def check(ctx: FileContext) -> Iterator[Hit]:
    reported: set[tuple[ast.AST, ast.AST | None]] = set()
    for cmp in ctx.walk(ast.Compare):
        if len(cmp.ops) != 1 or not isinstance(cmp.ops[0], ast.Eq) or not _is_filter(ctx, cmp):
            continue
        loops = ctx.loops_of(cmp)
        match = _join(ctx, loops, cmp)
        if match is not None and (match[1].node, match[1].gen) not in reported:
            reported.add((match[1].node, match[1].gen))  # one finding per inner loop
            yield _hit(ctx, cmp, loops, *match)


def _is_filter(ctx: FileContext, cmp: ast.Compare) -> bool:
    """The comparison only keeps matching pairs (if without else, comprehension filter).

    ``a if x == y else b`` is not a filter: it computes a value for every pair.
    """
    child, p = cmp, ctx.parents.get(cmp)
    while isinstance(p, ast.BoolOp) and isinstance(p.op, ast.And):
        child, p = p, ctx.parents.get(p)
    if isinstance(p, ast.If) and p.test is child:
        return not p.orelse  # with an else branch every pair is processed: not a filter
    if isinstance(p, ast.comprehension) and child in p.ifs:
        return True
    call = ctx.parents.get(p) if p is not None else None
    return (isinstance(p, ast.GeneratorExp) and p.elt is child and isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name) and call.func.id in _AGGREGATES)


def _join(ctx: FileContext, loops: tuple[Loop, ...],
          cmp: ast.Compare) -> tuple[Loop, Loop, ast.expr, ast.expr] | None:
    """``(outer, inner, outer key, inner key)`` for the innermost matching pair of loops."""
    left, right = cmp.left, cmp.comparators[0]
    nl, nr = names_in(left), names_in(right)
    for j in range(len(loops) - 1, 0, -1):
        inner = loops[j]
        if inner.kind == "while" or not inner.targets:
            continue
        if _varies(ctx, inner.iter, loops[:j]) or is_short_display(inner.iter, SHORT):
            continue  # the inner collection depends on an outer loop, or is a few items
        for outer in reversed(loops[:j]):
            to, ti = outer.targets, inner.targets
            if not to or is_short_display(outer.iter, SHORT):
                continue
            if nl & to and not nl & ti and nr & ti and not nr & to:
                return None if _range_index(inner, right) else (outer, inner, left, right)
            if nr & to and not nr & ti and nl & ti and not nl & to:
                return None if _range_index(inner, left) else (outer, inner, right, left)
    return None


def _varies(ctx: FileContext, expr: ast.expr | None, outer: tuple[Loop, ...]) -> bool:
    """``expr`` reads an outer loop's target or a name bound inside the outer loops."""
    names = names_in(expr)
    if names & set().union(*(lp.targets for lp in outer)):
        return True
    return expr is not None and any(ctx.is_inside(b.node, outer[0]) for n in names
                                    for b in ctx.bindings(n, expr))


def _range_index(inner: Loop, key: ast.expr) -> bool:
    """``for j in range(m): if x == j`` is a bounds check, not a join of collections."""
    it = inner.iter
    return (isinstance(key, ast.Name) and isinstance(it, ast.Call)
            and isinstance(it.func, ast.Name) and it.func.id == "range")


def _hit(ctx: FileContext, cmp: ast.Compare, loops: tuple[Loop, ...], outer: Loop,
         inner: Loop, key_outer: ast.expr, key_inner: ast.expr) -> Hit:
    coll_a, coll_b = ctx.segment(outer.iter), ctx.segment(inner.iter)
    ko, ki = ctx.segment(key_outer), ctx.segment(key_inner)
    return hit(
        ctx, RULE.id, cmp, loops=loops, loop=inner,
        title=f"nested loops join `{_short(coll_a)}` and `{_short(coll_b)}` by `{ko} == {ki}`",
        evidence=(f"`{ctx.segment(cmp)}` compares every item of `{_short(coll_b)}` "
                  f"({where(inner)}) with every item of `{_short(coll_a)}` ({where(outer)}): "
                  f"len·len comparisons."),
        fix=(f"Index `{_short(coll_b)}` once in a dict from `{ki}` to its items, then look up "
             f"`{ko}` for each outer item: O(len + len) instead of O(len·len)."),
        diff=_diff(ctx, cmp, inner, ko, ki, coll_b),
        confidence="high",
    )


def _diff(ctx: FileContext, cmp: ast.Compare, inner: Loop, ko: str, ki: str,
          coll_b: str) -> tuple[str, ...]:
    node = inner.node
    if not isinstance(node, ast.For) or not isinstance(node.target, ast.Name):
        return ()
    b = node.target.id
    index = f"{coll_b}_by_key" if coll_b.isidentifier() else f"{b}_by_key"
    if_node = ctx.parents.get(cmp)
    lines = [f"+ {index} = {{}}",
             f"+ for {b} in {coll_b}: {index}.setdefault({ki}, []).append({b})"
             f"  # once, before the outer loop"]
    removed = [node.lineno]
    if isinstance(if_node, ast.If) and if_node.test is cmp and if_node in node.body:
        removed.append(if_node.lineno)
    lines += source_lines(ctx, "-", removed)
    lines.append(f"+ for {b} in {index}.get({ko}, ()):")
    return tuple(lines)


def _short(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


RULE = Rule(
    id="nested-loop-join",
    summary="nested loops matching two collections by equality: build a dict index once",
    measure="loop", factor=5.0, weight=3, check=check,
    assumption="a dict lookup replaces the inner loop's scan, so the inner loop keeps at "
               "most a fifth of its time",
)
