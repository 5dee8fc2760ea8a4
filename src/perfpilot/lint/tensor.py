"""python-loop-over-tensor: element-wise Python loops over a tensor or ndarray.

Two shapes are flagged:

1. a loop over the elements of an array (``for i in range(len(t))`` / ``t.shape[0]`` /
   ``t.size(0)`` / ``t.numel()`` indexing ``t[i]``, or ``for x in t``) whose body only does
   arithmetic, comparisons, ``math``/``torch``/``numpy`` calls, ``.item()``/``.tolist()``
   and appends: it can be one vectorized expression (one report per loop nest);
2. otherwise, ``.item()``/``.tolist()``/``float()`` on ``t[i]`` (``i`` the loop variable)
   in any loop: one conversion (and on a GPU one device sync) per element, where a single
   ``.tolist()`` before the loop would do.

``loss.item()`` once per training step is not per element and is not flagged here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from perfpilot.lint.base import Hit, Rule, hit, line_diff, source_lines, where
from perfpilot.lint.context import FileContext, Loop, names_in
from perfpilot.lint.kinds import ARRAY_KINDS, kind_of

_OK_BUILTINS = frozenset({"abs", "min", "max", "float", "int", "round", "bool", "len", "range",
                          "pow"})
_OK_METHODS = frozenset({"item", "tolist", "append"})
_OK_STATEMENTS = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.If, ast.For,
                  ast.Continue, ast.Break, ast.Pass)
_COMPS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)


def check(ctx: FileContext) -> Iterator[Hit]:
    reported: list[ast.AST] = []
    for node in ctx.walk(ast.For, *_COMPS):
        if not any(_within(ctx, node, r) for r in reported):
            found = _elementwise_loop(ctx, node)
            if found is not None:
                reported.append(node)
                yield found
    for call in ctx.walk(ast.Call):
        if not any(_within(ctx, call, r) for r in reported):
            found = _per_element_conversion(ctx, call)
            if found is not None:
                yield found


# -- shape 1: the whole loop is element-wise -------------------------------------------

def _elementwise_loop(ctx: FileContext, node: ast.AST) -> Hit | None:
    if isinstance(node, ast.For):
        target, it, body = node.target, node.iter, list(node.body)
        loop = ctx.loop_of_node(node)
    elif len(node.generators) == 1 and not node.generators[0].is_async:  # type: ignore[attr-defined]
        gen = node.generators[0]  # type: ignore[attr-defined]
        target, it = gen.target, gen.iter
        body = [getattr(node, f) for f in ("elt", "key", "value") if hasattr(node, f)] + gen.ifs
        loop = Loop(node, node.lineno, node.end_lineno or node.lineno, "comprehension",  # type: ignore[attr-defined]
                    frozenset(names_in(target)), it, gen)
    else:
        return None
    src = _element_source(ctx, target, it)
    if src is None or loop is None:
        return None
    array, index, element, kind = src
    if not _touches_elements(ctx, body, array, index, element) or not _vectorizable(ctx, body):
        return None
    if _loop_carried(body):
        return None  # a recurrence (y[i] from y[i-1], acc = acc * a + x) is a scan, not a map
    if _slices_by_loop_var(body, {index, element} - {None}):
        return None  # t[:, j] per column: whole-vector work per iteration, not element-wise
    loops = (*ctx.loops_of(node), loop)
    subject = f"`{array}` ({kind})" if kind != "unknown" else f"`{array}`"
    conv = " and converts each element with .item()/.tolist()" if _has_item(body) else ""
    return hit(
        ctx, RULE.id, node, loops=loops,
        title=f"Python loop over the elements of `{array}`",
        evidence=(f"{where(loop).capitalize()} runs interpreted code once per element of "
                  f"{subject}{conv}; its body is arithmetic that works on whole arrays."),
        fix=(f"Replace the loop with one vectorized expression on `{array}` (arithmetic on "
             f"the whole array, .sum(), masks or torch.where/np.where, one .tolist())."),
        diff=_vector_diff(ctx, node, body, array, index, element, kind),
    )


def _element_source(ctx: FileContext, target: ast.AST,
                    it: ast.expr) -> tuple[str, str | None, str | None, str] | None:
    """``(array, index var, element var, kind)`` when the loop walks an array's elements."""
    if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range":
        args = it.args
        bound = args[0] if len(args) == 1 else (args[1] if len(args) == 2
                                                and _is_zero(args[0]) else None)
        array = _array_of_extent(ctx, bound)
        if array is None or not isinstance(target, ast.Name):
            return None
        return ctx.segment(array), target.id, None, kind_of(ctx, array)
    kind = kind_of(ctx, it)
    if kind in ARRAY_KINDS and isinstance(target, ast.Name):
        return ctx.segment(it), None, target.id, kind
    if (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "enumerate"
            and it.args and isinstance(target, ast.Tuple) and len(target.elts) == 2
            and all(isinstance(e, ast.Name) for e in target.elts)):
        kind = kind_of(ctx, it.args[0])
        if kind in ARRAY_KINDS:
            i, x = target.elts
            return ctx.segment(it.args[0]), i.id, x.id, kind  # type: ignore[attr-defined]
    return None


def _array_of_extent(ctx: FileContext, bound: ast.expr | None) -> ast.expr | None:
    """``t`` from ``len(t)`` (t an array), ``t.shape[k]``, ``t.size(k)``, ``t.numel()``."""
    if isinstance(bound, ast.Call) and isinstance(bound.func, ast.Name) \
            and bound.func.id == "len" and len(bound.args) == 1:
        return bound.args[0] if kind_of(ctx, bound.args[0]) in ARRAY_KINDS else None
    if isinstance(bound, ast.Subscript) and isinstance(bound.value, ast.Attribute) \
            and bound.value.attr == "shape":
        return bound.value.value
    if isinstance(bound, ast.Call) and isinstance(bound.func, ast.Attribute):
        f = bound.func
        if (f.attr == "size" and len(bound.args) == 1) or (f.attr == "numel" and not bound.args):
            return f.value
    return None


def _touches_elements(ctx: FileContext, body: list[ast.AST], array: str, index: str | None,
                      element: str | None) -> bool:
    """Arithmetic, a comparison or a scalar conversion reads an element of ``array``.

    Appending elements or using them as dict keys (grouping) is not element-wise math.
    """
    for op in (n for b in body for n in ast.walk(b)):
        if not (isinstance(op, (ast.BinOp, ast.Compare, ast.UnaryOp, ast.AugAssign,
                                ast.BoolOp)) or _scalar_call(ctx, op)):
            continue
        for node in ast.walk(op):
            if element is not None and isinstance(node, ast.Name) and node.id == element:
                return True
            if (index is not None and isinstance(node, ast.Subscript)
                    and index in names_in(node.slice) and ctx.segment(node.value) == array):
                return True
    return False


def _scalar_call(ctx: FileContext, node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    if isinstance(f, ast.Attribute):
        return f.attr in ("item", "tolist") or (ctx.qualname(f) or "").startswith("math.")
    return isinstance(f, ast.Name) and f.id in _OK_BUILTINS - {"len", "range"}


def _slices_by_loop_var(body: list[ast.AST], loop_vars: set[str | None]) -> bool:
    for n in (n for b in body for n in ast.walk(b)):
        if (isinstance(n, ast.Subscript) and names_in(n) & loop_vars
                and any(isinstance(x, ast.Slice) for x in ast.walk(n.slice))):
            return True
    return False


def _vectorizable(ctx: FileContext, body: list[ast.AST]) -> bool:
    for stmt in body:
        for node in ast.walk(stmt):
            if isinstance(node, ast.stmt) and not isinstance(node, _OK_STATEMENTS):
                return False
            if isinstance(node, (ast.Lambda, ast.Yield, ast.YieldFrom, ast.Await)):
                return False
            if isinstance(node, ast.Call) and not _ok_call(ctx, node):
                return False
    return True


def _loop_carried(body: list[ast.AST]) -> bool:
    """An iteration reads what an earlier one wrote, other than a running ``+`` total."""
    nodes = [n for b in body for n in ast.walk(b)]
    for node in nodes:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            t, v = node.targets[0], node.value
            if isinstance(t, ast.Name) and t.id in names_in(v) and not (
                    isinstance(v, ast.BinOp) and isinstance(v.op, ast.Add)
                    and isinstance(v.left, ast.Name) and v.left.id == t.id
                    and t.id not in names_in(v.right)):
                return True
    stores = [n for n in nodes if isinstance(n, ast.Subscript) and isinstance(n.ctx, ast.Store)]
    for st in stores:
        base, where_ = ast.dump(st.value), ast.dump(st.slice)
        for n in nodes:
            if (isinstance(n, ast.Subscript) and isinstance(n.ctx, ast.Load)
                    and ast.dump(n.value) == base and ast.dump(n.slice) != where_):
                return True
    return False


def _ok_call(ctx: FileContext, call: ast.Call) -> bool:
    """Scalar work only: ``math.*``, a few builtins, ``.item()``/``.tolist()``/``.append``.

    A ``numpy``/``torch`` function or an array method in the body usually means each
    iteration handles a whole row (``np.median(row)``): vector work, not element-wise.
    """
    f = call.func
    if isinstance(f, ast.Name):
        return f.id in _OK_BUILTINS and ctx.is_builtin(f.id, call)
    q = ctx.qualname(f)
    if q is not None:
        return q.startswith("math.")
    return isinstance(f, ast.Attribute) and f.attr in _OK_METHODS


def _has_item(body: list[ast.AST]) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr in ("item", "tolist")
               for b in body for n in ast.walk(b))


def _vector_diff(ctx: FileContext, node: ast.AST, body: list[ast.AST], array: str,
                 index: str | None, element: str | None, kind: str) -> tuple[str, ...]:
    """A rewrite for one-statement bodies (sum, append, element assignment, comprehension)."""
    if len(body) != 1:
        return ()
    stmt = body[0]
    vec = _Vectorize(array, index, element, kind, _indexed_arrays(ctx, body, array, index))
    new: str | None = None
    if isinstance(stmt, ast.AugAssign) and isinstance(stmt.op, ast.Add):
        expr = vec.apply(stmt.value)
        tail = ".item()" if vec.had_item else ""
        new = expr and f"{ctx.segment(stmt.target)} += {_paren(expr)}.sum(){tail}"
    elif isinstance(stmt, ast.Expr) and _is_append(stmt.value):
        expr = vec.apply(stmt.value.args[0])  # type: ignore[attr-defined]
        lst = ctx.segment(stmt.value.func.value)  # type: ignore[attr-defined]
        tail = ".tolist()" if vec.had_item else ""
        new = expr and f"{lst}.extend({_paren(expr) if tail else expr}{tail})"
    elif isinstance(stmt, ast.Assign) and _assigns_index(stmt, index):
        expr = vec.apply(stmt.value)
        new = expr and f"{ctx.segment(stmt.targets[0].value)}[:] = {expr}"  # type: ignore[attr-defined]
    elif _is_counter(stmt):
        expr = vec.apply(stmt.test)  # type: ignore[attr-defined]
        counter = ctx.segment(stmt.body[0].target)  # type: ignore[attr-defined]
        new = expr and f"{counter} += {_paren(expr)}.sum().item()"
    elif isinstance(node, (ast.ListComp, ast.GeneratorExp)) and stmt is node.elt:
        return _comprehension_diff(ctx, node, vec.apply(stmt))
    if not new:
        return ()
    last = node.end_lineno if isinstance(node, ast.For) else node.lineno  # type: ignore[attr-defined]
    removed = list(range(node.lineno, min(last, node.lineno + 3) + 1))  # type: ignore[attr-defined]
    return (*source_lines(ctx, "-", removed), f"+ {new}")


def _comprehension_diff(ctx: FileContext, node: ast.AST, expr: str | None) -> tuple[str, ...]:
    """``[x.item() for x in t]`` -> ``t.tolist()``; ``tuple(float(v) for v in a)`` too."""
    if not expr:  # a list was built: .tolist() gives one, with Python scalars
        return ()
    if isinstance(node, ast.ListComp):
        return line_diff(ctx, node, f"{_paren(expr)}.tolist()")
    call = ctx.parents.get(node)
    if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
            and call.func.id in ("list", "tuple") and call.args == [node]):
        wrap = "" if call.func.id == "list" else "tuple"
        new = f"{_paren(expr)}.tolist()"
        return line_diff(ctx, call, f"{wrap}({new})" if wrap else new)
    return ()


def _indexed_arrays(ctx: FileContext, body: list[ast.AST], array: str,
                    index: str | None) -> frozenset[str]:
    """Arrays indexed by the loop variable in ``body`` (``t[i]``, ``u[i]``)."""
    found = {array}
    for n in (n for b in body for n in ast.walk(b)):
        if (isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Name)
                and n.slice.id == index and kind_of(ctx, n.value) in ARRAY_KINDS):
            found.add(ast.unparse(n.value))
    return frozenset(found)


def _is_counter(stmt: ast.AST) -> bool:
    """``if cond: n += 1`` (no else)."""
    if not isinstance(stmt, ast.If) or stmt.orelse or len(stmt.body) != 1:
        return False
    inc = stmt.body[0]
    return (isinstance(inc, ast.AugAssign) and isinstance(inc.op, ast.Add)
            and isinstance(inc.value, ast.Constant) and inc.value.value == 1)


def _paren(expr: str) -> str:
    """``expr`` ready for a method call: parenthesized unless it is a primary already."""
    node = ast.parse(expr, mode="eval").body
    return expr if isinstance(node, (ast.Name, ast.Attribute, ast.Call, ast.Subscript)) \
        else f"({expr})"


def _is_append(call: ast.AST) -> bool:
    return (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
            and call.func.attr == "append" and len(call.args) == 1)


def _assigns_index(stmt: ast.Assign, index: str | None) -> bool:
    t = stmt.targets[0] if len(stmt.targets) == 1 else None
    return (index is not None and isinstance(t, ast.Subscript)
            and isinstance(t.slice, ast.Name) and t.slice.id == index)


class _Vectorize(ast.NodeTransformer):
    """``t[i]``/``x`` -> ``t``, ``e.item()``/``float(e)`` -> ``e``, ``math.f`` -> torch/np."""

    def __init__(self, array: str, index: str | None, element: str | None, kind: str,
                 arrays: frozenset[str] = frozenset()) -> None:
        self.array, self.index, self.element, self.kind = array, index, element, kind
        self.arrays = arrays | {array}
        self.had_item = False
        self.ok = True

    def apply(self, expr: ast.expr) -> str | None:
        self.ok = True
        out = self.visit(ast.parse(ast.unparse(expr), mode="eval").body)
        text = ast.unparse(out)
        left = {n.id for n in ast.walk(out) if isinstance(n, ast.Name)}
        return text if self.ok and not left & {self.index, self.element} else None

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        if (self.index is not None and isinstance(node.slice, ast.Name)
                and node.slice.id == self.index and ast.unparse(node.value) in self.arrays):
            return node.value
        return self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id == self.element:
            return ast.parse(self.array, mode="eval").body
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr in ("item", "tolist") and not node.args:
            self.had_item = True
            return self.visit(f.value)
        if isinstance(f, ast.Name) and f.id == "float" and len(node.args) == 1:
            self.had_item = True
            return self.visit(node.args[0])
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) \
                and f.value.id == "math" and self.kind in ARRAY_KINDS:
            f.value.id = "torch" if self.kind == "tensor" else "np"
        elif isinstance(f, ast.Name) and f.id != "abs":
            self.ok = False  # min/max/int/round of elements do not map one to one
        return self.generic_visit(node)


# -- shape 2: a per-element conversion inside some other loop --------------------------

def _per_element_conversion(ctx: FileContext, call: ast.Call) -> Hit | None:
    f = call.func
    if isinstance(f, ast.Attribute) and f.attr in ("item", "tolist") and not call.args:
        elem, how = f.value, f".{f.attr}()"
    elif isinstance(f, ast.Name) and f.id == "float" and len(call.args) == 1 \
            and ctx.is_builtin("float", call):
        elem, how = call.args[0], "float()"
        if kind_of(ctx, getattr(elem, "value", None)) not in ARRAY_KINDS:
            return None  # float(xs[i]) on a list is fine
    else:
        return None
    loops = ctx.loops_of(call)
    if not loops or not _indexes_element(ctx, elem, loops[-1]):
        return None
    return _conversion_hit(ctx, call, elem, how, loops)


def _indexes_element(ctx: FileContext, elem: ast.expr, inner: Loop) -> bool:
    """``t[i]`` with ``t`` a tensor/ndarray and ``i`` the loop's variable, or ``x in t``."""
    if isinstance(elem, ast.Subscript):
        return (bool(names_in(elem.slice) & inner.targets)
                and kind_of(ctx, elem.value) in ARRAY_KINDS)
    return (isinstance(elem, ast.Name) and elem.id in inner.targets
            and kind_of(ctx, inner.iter) in ARRAY_KINDS)


def _conversion_hit(ctx: FileContext, call: ast.Call, elem: ast.expr, how: str,
                    loops: tuple[Loop, ...]) -> Hit:
    diff: tuple[str, ...] = ()
    if isinstance(elem, ast.Subscript) and isinstance(elem.value, (ast.Name, ast.Attribute)):
        arr = ctx.segment(elem.value)
        name = arr.replace(".", "_") + "_list"
        diff = (f"+ {name} = {arr}.tolist()  # once, before the loop",
                *line_diff(ctx, call, f"{name}[{ctx.segment(elem.slice)}]"))
    return hit(
        ctx, RULE.id, call, loops=loops,
        title=f"{how} on one element per iteration",
        evidence=(f"`{ctx.segment(call)}` runs in {where(loops[-1])}: one conversion per "
                  f"element (and on a GPU one device synchronization each)."),
        fix="Convert the whole tensor/array once before the loop (`.tolist()`, or keep the "
            "work vectorized) and index the Python list inside the loop.",
        diff=diff, confidence="medium",
        gain=("line", 5.0, "one bulk conversion replaces the per-element ones, so the line "
                           "keeps at most a fifth of its time"),
    )


def _within(ctx: FileContext, node: ast.AST, outer: ast.AST) -> bool:
    p = ctx.parents.get(node)
    while p is not None:
        if p is outer:
            return True
        p = ctx.parents.get(p)
    return False


def _is_zero(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value == 0


RULE = Rule(
    id="python-loop-over-tensor",
    summary="element-wise Python loop over a tensor/ndarray: one vectorized expression",
    measure="loop", factor=10.0, weight=3, check=check,
    assumption="a vectorized expression runs the loop's work at least 10x faster than "
               "interpreted per-element code",
)
