"""sort-for-min-max: ``sorted(x)[0]`` / ``sorted(x)[-1]`` to read one end of a sequence.

Sorting is O(n log n) and copies the input; ``min``/``max`` are one O(n) pass. With
``reverse=True`` the ends swap. Ruff's FURB192 flags the same pattern: when ruff runs,
its finding is merged into this one (see :mod:`perfpilot.lint.ruff_bridge`), so the line is
reported once. Silent when ``sorted`` is rebound or ``reverse`` is not a constant.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from perfpilot.lint.base import Hit, Rule, hit, line_diff
from perfpilot.lint.context import FileContext


def check(ctx: FileContext) -> Iterator[Hit]:
    for sub in ctx.walk(ast.Subscript):
        found = _min_max(ctx, sub)
        if found is not None:
            yield found


def _min_max(ctx: FileContext, sub: ast.Subscript) -> Hit | None:
    call, end = sub.value, _end_index(sub.slice)
    if end is None or not isinstance(sub.ctx, ast.Load) or not _is_sorted_call(ctx, call):
        return None
    reverse = False
    for kw in call.keywords:  # type: ignore[attr-defined]
        if kw.arg == "reverse":
            if not isinstance(kw.value, ast.Constant):
                return None
            reverse = bool(kw.value.value)
    func = "min" if (end == 0) != reverse else "max"
    args = [ctx.segment(call.args[0])]  # type: ignore[attr-defined]
    args += [f"key={ctx.segment(kw.value)}" for kw in call.keywords if kw.arg == "key"]  # type: ignore[attr-defined]
    new = f"{func}({', '.join(args)})"
    ties = (" With a key, ties can differ: max() keeps the first of equal items, "
            "sorted(...)[-1] the last." if end == -1 and len(args) == 2 else "")
    loops = ctx.loops_of(sub)
    return hit(
        ctx, RULE.id, sub, loops=loops,
        title=f"`{ctx.segment(sub)}` sorts everything to read one end: use {func}()",
        evidence=(f"sorted() is O(n log n) and copies its input; {func}() is one O(n) pass "
                  f"with no copy.{ties}"),
        fix=f"Use `{new}` (it raises ValueError instead of IndexError on an empty input).",
        diff=line_diff(ctx, sub, new),
    )


def _is_sorted_call(ctx: FileContext, node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "sorted" and ctx.is_builtin("sorted", node)
            and len(node.args) == 1 and not isinstance(node.args[0], ast.Starred)
            and all(kw.arg in ("key", "reverse") for kw in node.keywords))


def _end_index(node: ast.AST) -> int | None:
    if isinstance(node, ast.Constant) and node.value == 0 and not isinstance(node.value, bool):
        return 0
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant) and node.operand.value == 1):
        return -1
    return None


RULE = Rule(
    id="sort-for-min-max",
    summary="sorted(x)[0] / sorted(x)[-1]: use min(x) / max(x)",
    measure="line", factor=1.5, weight=2, check=check,
    assumption="one O(n) pass replaces an O(n log n) sort and a copy; assumed only 1.5x on "
               "the line since a key function costs the same in both",
)
