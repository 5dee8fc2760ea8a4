"""queue-pop-front: a list used as a queue, ``pop(0)``/``insert(0, x)`` in a loop.

Removing or inserting at the front of a list shifts every other element (O(n) per call);
``collections.deque`` does both in O(1). Also flags ``del q[0]`` and ``q = q[1:]``.
Silent when ``q`` is known to be a dict (``d.pop(0)`` removes key 0) or a deque, and, for
precision, when its kind is unknown and nothing in its scope shows it is a list.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from perfpilot.lint.base import Hit, Rule, hit, line_diff, source_lines, where
from perfpilot.lint.context import FileContext, Loop, same_expr
from perfpilot.lint.kinds import name_kind

_NOT_LISTS = frozenset({"dict", "deque", "set", "str", "tuple", "tensor", "ndarray",
                        "dataframe", "view", "values", "range", "number", "rng"})


def check(ctx: FileContext) -> Iterator[Hit]:
    for node in ctx.walk(ast.Call, ast.Delete, ast.Assign):
        loops = ctx.loops_of(node)
        if not loops:
            continue
        found = _front_op(ctx, node)
        if found is None:
            continue
        queue, op, new = found
        if _looks_like_list(ctx, queue) and _persists(ctx, queue, node, loops[-1]):
            yield _hit(ctx, node, queue, op, new, loops)


def _persists(ctx: FileContext, queue: ast.expr, node: ast.AST, inner: Loop) -> bool:
    """The list outlives an iteration (a queue), rather than being rebuilt in each one."""
    if not isinstance(queue, ast.Name):
        return True
    binds = [b for b in ctx.bindings(queue.id, queue)
             if b.kind != "augassign" and b.node is not node]
    return not binds or not any(ctx.is_inside(b.node, inner) for b in binds)


def _front_op(ctx: FileContext, node: ast.AST) -> tuple[ast.expr, str, str | None] | None:
    """``(queue, what it does, deque replacement for the node)``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        q, attr, args = node.func.value, node.func.attr, node.args
        if attr == "pop" and len(args) == 1 and _is_zero(args[0]) and not node.keywords:
            return q, "pop(0)", f"{ctx.segment(q)}.popleft()"
        if attr == "insert" and len(args) == 2 and _is_zero(args[0]):
            return q, "insert(0, ...)", f"{ctx.segment(q)}.appendleft({ctx.segment(args[1])})"
    if isinstance(node, ast.Delete) and len(node.targets) == 1:
        t = node.targets[0]
        if isinstance(t, ast.Subscript) and _is_zero(t.slice):
            return t.value, "del [0]", f"{ctx.segment(t.value)}.popleft()"
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        v = node.value
        if (isinstance(v, ast.Subscript) and same_expr(v.value, node.targets[0])
                and isinstance(v.slice, ast.Slice) and v.slice.upper is None
                and v.slice.step is None and _is_one(v.slice.lower)):
            return v.value, "[1:] copy", f"{ctx.segment(v.value)}.popleft()"
    return None


def _looks_like_list(ctx: FileContext, queue: ast.expr) -> bool:
    if not isinstance(queue, (ast.Name, ast.Attribute)):
        return False
    if isinstance(queue, ast.Name):
        kind = name_kind(ctx, queue.id, queue)
        if kind == "list":
            return True
        if kind in _NOT_LISTS:
            return False
    # Unknown kind: a list if it is appended to in the same scope (a deque would not
    # accept pop(0), a dict has no append).
    scope = ctx.scope_of(queue)
    for node in ast.walk(scope):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("append", "extend") and same_expr(node.func.value, queue)):
            return True
    return False


def _hit(ctx: FileContext, node: ast.AST, queue: ast.expr, op: str, new: str | None,
         loops: tuple[Loop, ...]) -> Hit:
    q = ctx.segment(queue)
    verb = "insert" if op.startswith("insert") else "removal"
    target = node.value if isinstance(node, ast.Assign) else node
    diff = _binding_diff(ctx, queue)
    if isinstance(node, ast.Assign):
        diff += (*source_lines(ctx, "-", [node.lineno]), f"+ {new}")
    elif new is not None:
        diff += line_diff(ctx, target, new)
    return hit(
        ctx, RULE.id, node, loops=loops,
        title=f"`{q}` is used as a queue: {op} on a list in a loop",
        evidence=(f"`{ctx.segment(node)}` runs in {where(loops[-1])}; a list shifts all "
                  f"remaining elements on every {verb} at the front: O(len({q})) per call."),
        fix=(f"Make `{q}` a `collections.deque` and use `popleft()` / `appendleft(x)`: "
             f"O(1) at both ends."),
        diff=diff,
        confidence="high" if isinstance(queue, ast.Name) else "medium",
    )


def _binding_diff(ctx: FileContext, queue: ast.expr) -> tuple[str, ...]:
    if not isinstance(queue, ast.Name):
        return ()
    binds = [b for b in ctx.bindings(queue.id, queue) if b.kind == "assign" and b.value]
    if len(binds) != 1:
        return ()
    value = binds[0].value
    return line_diff(ctx, value, f"deque({ctx.segment(value)})")


def _is_zero(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value == 0 and not isinstance(node.value, bool)


def _is_one(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value == 1 and not isinstance(node.value, bool)


RULE = Rule(
    id="queue-pop-front",
    summary="list.pop(0) / list.insert(0, x) in a loop: use collections.deque",
    measure="line", factor=5.0, weight=3, check=check,
    assumption="deque.popleft/appendleft are O(1), so the line keeps at most a fifth of "
               "its time",
)
