"""repeated-concat: an accumulator regrown by concatenation on every loop iteration.

``acc = torch.cat([acc, x])``, ``np.append(acc, x)``, ``np.concatenate``/``vstack``/
``hstack``, ``pd.concat([df, row])``, ``df = df.append(row)``, ``xs = xs + [x]`` and
``s += "..."`` on a str each copy everything accumulated so far, so n iterations copy
O(n²) items. The fix collects the pieces in a list and concatenates once after the loop.
Silent when the accumulator is also reset inside the same loop (a bounded buffer).

CPython can sometimes grow a local ``str`` in place, so ``s += t`` is not always
quadratic: the measured time of the line decides where it ranks.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from perfpilot.lint.base import Hit, Rule, hit, source_lines, where
from perfpilot.lint.context import FileContext, Loop, same_expr
from perfpilot.lint.kinds import kind_of, name_kind

CONCAT_FUNCS = frozenset({
    "torch.cat", "torch.concat", "torch.concatenate", "torch.vstack", "torch.hstack",
    "torch.row_stack", "torch.dstack", "numpy.append", "numpy.concatenate", "numpy.vstack",
    "numpy.hstack", "numpy.row_stack", "numpy.dstack", "numpy.column_stack", "pandas.concat",
})


def check(ctx: FileContext) -> Iterator[Hit]:
    for node in ctx.walk(ast.Assign, ast.AugAssign):
        loops = ctx.loops_of(node)
        if not loops:
            continue
        found = _assign(ctx, node, loops) if isinstance(node, ast.Assign) \
            else _str_augassign(ctx, node, loops)
        if found is not None:
            yield found


def _assign(ctx: FileContext, node: ast.Assign, loops: tuple[Loop, ...]) -> Hit | None:
    if len(node.targets) != 1:
        return None
    acc, value = node.targets[0], node.value
    how = _regrowth(ctx, acc, value)
    if how is None or _reset_in_loop(ctx, acc, node, loops[-1]) \
            or _read_elsewhere(ctx, acc, node, loops[-1]):
        return None
    func, plus = how
    acc_src = ctx.segment(acc)
    fix = (f"Grow `{acc_src}` in place (`.append`/`.extend`): amortized O(1) per item."
           if func == "list `+`" else
           f"Append the pieces to a list inside the loop and call {func} once after it.")
    return hit(
        ctx, RULE.id, node, loops=loops,
        title=f"`{acc_src}` is regrown with {func} on every iteration",
        evidence=(f"`{ctx.segment(node)}` runs in {where(loops[-1])}: each call copies "
                  f"everything accumulated so far, O(n²) copying over n iterations."),
        fix=fix,
        diff=(*source_lines(ctx, "-", [node.lineno]), *plus) if plus else (),
    )


def _collect(a: str, piece: str, after: str) -> tuple[str, str]:
    return f"+ {a}_parts.append({piece})", f"+ {after}  # once, after the loop"


def _regrowth(ctx: FileContext, acc: ast.expr,
              value: ast.expr) -> tuple[str, tuple[str, ...]] | None:
    """``(what regrows it, "+" lines of the rewrite)`` if ``value`` regrows ``acc``."""
    a = ctx.segment(acc)
    if isinstance(value, ast.Call):
        q = ctx.qualname(value.func)
        if q in CONCAT_FUNCS and value.args:
            return _concat_call(ctx, acc, value, q)
        f = value.func  # pandas: df = df.append(row) (list.append returns None)
        if isinstance(f, ast.Attribute) and f.attr == "append" and same_expr(f.value, acc) \
                and len(value.args) == 1:
            piece = ctx.segment(value.args[0])
            return "DataFrame.append", _collect(a, piece, f"{a} = pd.concat([{a}, *{a}_parts])")
    if isinstance(value, ast.BinOp) and isinstance(value.op, ast.Add):
        return _concat_binop(ctx, acc, value)
    return None


def _concat_call(ctx: FileContext, acc: ast.expr, call: ast.Call,
                 q: str) -> tuple[str, tuple[str, ...]] | None:
    a, short = ctx.segment(acc), q.replace("numpy.", "np.").replace("pandas.", "pd.")
    first = call.args[0]
    if q == "numpy.append":
        if not same_expr(first, acc) or len(call.args) < 2:
            return None
        rest = "".join(f", {ctx.segment(x)}" for x in call.args[2:])
        rest += "".join(f", {ctx.segment(k)}" for k in call.keywords)
        piece = ctx.segment(call.args[1])
        return "np.append", _collect(a, piece, f"{a} = np.append({a}, {a}_parts{rest})")
    if not isinstance(first, (ast.List, ast.Tuple)) or len(first.elts) < 2:
        return None
    at = [i for i, e in enumerate(first.elts) if same_expr(e, acc)]
    if at not in ([0], [len(first.elts) - 1]):
        return None
    others = [ctx.segment(e) for e in first.elts if not same_expr(e, acc)]
    tail = "".join(f", {ctx.segment(x)}" for x in call.args[1:])
    tail += "".join(f", {ctx.segment(k)}" for k in call.keywords)
    piece = others[0] if len(others) == 1 else "[" + ", ".join(others) + "]"
    parts = f"{a}_parts" if at == [0] else f"reversed({a}_parts)"
    star = f"*{parts}" if len(others) == 1 else f"*(p for ps in {parts} for p in ps)"
    joined = f"[{a}, {star}]" if at == [0] else f"[{star}, {a}]"
    return f"{short}()", _collect(a, piece, f"{a} = {short}({joined}{tail})")


def _concat_binop(ctx: FileContext, acc: ast.expr,
                  value: ast.BinOp) -> tuple[str, tuple[str, ...]] | None:
    """``xs = xs + [x]`` (list/tuple display) or ``s = s + t`` on a str."""
    appends = same_expr(value.left, acc)
    if not appends and not same_expr(value.right, acc):
        return None
    other = value.right if appends else value.left
    a, o = ctx.segment(acc), ctx.segment(other)
    if isinstance(other, (ast.List, ast.ListComp)):
        single = isinstance(other, ast.List) and len(other.elts) == 1
        grow = f"+ {a}.append({ctx.segment(other.elts[0])})" if single else f"+ {a}.extend({o})"
        return "list `+`", (grow,) if appends else ()
    if isinstance(other, ast.Tuple):
        after = f"{a} = {a} + tuple({a}_parts)" if appends else None
        return "tuple `+`", (f"+ {a}_parts.extend({o})",
                             f"+ {after}  # once, after the loop") if after else ()
    if _is_str(ctx, acc) or kind_of(ctx, other) == "str":
        after = (f'{a} += "".join({a}_parts)' if appends
                 else f'{a} = "".join(reversed({a}_parts)) + {a}')
        return "str `+`", _collect(a, o, after)
    return None


def _str_augassign(ctx: FileContext, node: ast.AugAssign, loops: tuple[Loop, ...]) -> Hit | None:
    if not isinstance(node.op, ast.Add) or not isinstance(node.target, ast.Name):
        return None
    acc = node.target
    if not (_is_str(ctx, acc) or kind_of(ctx, node.value) == "str"):
        return None
    if name_kind(ctx, acc.id, acc) not in ("str", "unknown"):
        return None
    if (_reset_in_loop(ctx, acc, node, loops[-1]) or not _bound_outside(ctx, acc, loops[-1])
            or _read_elsewhere(ctx, acc, node, loops[-1])):
        return None
    a = acc.id
    return hit(
        ctx, RULE.id, node, loops=loops,
        title=f"str `{a}` is regrown with `+=` on every iteration",
        evidence=(f"`{ctx.segment(node)}` runs in {where(loops[-1])}: a str is immutable, "
                  f"so each `+=` may copy all of `{a}` (CPython grows a local in place only "
                  f"when nothing else refers to it)."),
        fix='Append the pieces to a list inside the loop and `"".join` them once after it.',
        diff=(*source_lines(ctx, "-", [node.lineno]),
              f"+ {a}_parts.append({ctx.segment(node.value)})",
              f'+ {a} += "".join({a}_parts)  # once, after the loop'),
        confidence="medium",
    )


def _is_str(ctx: FileContext, acc: ast.expr) -> bool:
    return isinstance(acc, ast.Name) and name_kind(ctx, acc.id, acc) == "str"


def _bound_outside(ctx: FileContext, acc: ast.Name, inner: Loop) -> bool:
    binds = [b for b in ctx.bindings(acc.id, acc) if b.kind != "augassign"]
    return bool(binds) and not all(ctx.is_inside(b.node, inner) for b in binds)


def _read_elsewhere(ctx: FileContext, acc: ast.expr, node: ast.AST, inner: Loop) -> bool:
    """The loop reads the partial result too: collecting pieces would change what it sees."""
    mine = {id(n) for n in ast.walk(node)}
    text = ast.unparse(acc)
    for other in ast.walk(inner.node):
        if (id(other) not in mine and isinstance(other, (ast.Name, ast.Attribute))
                and isinstance(other.ctx, ast.Load) and ast.unparse(other) == text
                and ctx.is_inside(other, inner)):
            return True
    return False


def _reset_in_loop(ctx: FileContext, acc: ast.expr, node: ast.AST, inner: Loop) -> bool:
    """Another plain assignment to ``acc`` in the same loop: a bounded buffer, not growth."""
    for other in ast.walk(inner.node):
        if other is node or not isinstance(other, (ast.Assign, ast.AnnAssign)):
            continue
        targets = other.targets if isinstance(other, ast.Assign) else [other.target]
        if any(same_expr(t, acc) for t in targets) and ctx.is_inside(other, inner) \
                and ctx.scope_of(other) is ctx.scope_of(node):
            return True
    return False


RULE = Rule(
    id="repeated-concat",
    summary="growing an accumulator by concatenation in a loop: collect, then concatenate once",
    measure="line", factor=5.0, weight=3, check=check,
    assumption="concatenating once removes the repeated copying, so the line keeps at most "
               "a fifth of its time",
)
