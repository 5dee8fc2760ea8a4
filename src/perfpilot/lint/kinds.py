"""What kind of value an expression holds, inferred locally and conservatively.

Rules ask "is ``c`` a list?" before they speak, so this answers ``"unknown"`` whenever it
is not sure: a name is of a kind only when every binding it has agrees. Nothing is
imported or executed; numpy/torch/pandas are recognised through the file's imports.
"""

from __future__ import annotations

import ast
from typing import Literal

from perfpilot.lint.context import FileContext

Kind = Literal["list", "tuple", "set", "dict", "deque", "str", "range", "view", "values",
               "tensor", "ndarray", "dataframe", "rng", "number", "unknown"]
ARRAY_KINDS = frozenset({"tensor", "ndarray"})
SEQUENCE_KINDS = frozenset({"list", "tuple"})

_CALL_KINDS: dict[str, Kind] = {
    "list": "list", "sorted": "list", "tuple": "tuple", "set": "set", "frozenset": "set",
    "dict": "dict", "str": "str", "repr": "str", "format": "str", "range": "range",
    "len": "number", "int": "number", "float": "number", "sum": "number", "abs": "number",
    "collections.deque": "deque", "collections.defaultdict": "dict",
    "collections.OrderedDict": "dict", "collections.Counter": "dict",
}
_STR_METHODS = frozenset({"join", "format", "strip", "lstrip", "rstrip", "lower", "upper",
                          "replace", "capitalize", "title", "casefold", "zfill", "center",
                          "ljust", "rjust", "removeprefix", "removesuffix"})
_SPLIT_METHODS = frozenset({"split", "rsplit", "splitlines", "readlines"})
# Tensor/ndarray methods whose result is not an array.
_ARRAY_SCALAR_METHODS = frozenset({"item", "tolist", "size", "dim", "ndimension", "numel",
                                   "nelement", "element_size", "data_ptr", "stride",
                                   "get_device", "is_contiguous", "is_floating_point",
                                   "__len__", "type", "storage", "untyped_storage"})
_TORCH_NOT_TENSOR = frozenset({
    "device", "dtype", "no_grad", "enable_grad", "inference_mode", "set_grad_enabled",
    "manual_seed", "seed", "Size", "Generator", "save", "load", "compile", "finfo", "iinfo",
    "get_default_dtype", "set_default_dtype", "numel", "is_tensor", "is_grad_enabled",
    "get_num_threads", "set_num_threads", "set_printoptions", "use_deterministic_algorithms",
})
_NUMPY_NOT_ARRAY = frozenset({
    "dtype", "seterr", "errstate", "printoptions", "set_printoptions", "save", "savez",
    "savez_compressed", "savetxt", "isscalar", "ndim", "shape", "size", "iinfo", "finfo",
    "random.seed", "random.get_state", "random.set_state", "random.default_rng",
    "random.RandomState", "random.Generator", "random.PCG64", "nditer", "ndindex",
    "ndenumerate", "broadcast", "vectorize", "frompyfunc", "nested_iters",
})
_NUMPY_RNG = frozenset({"random.default_rng", "random.RandomState", "random.Generator"})
_ANNOTATIONS: dict[str, Kind] = {
    "list": "list", "List": "list", "typing.List": "list", "tuple": "tuple",
    "Tuple": "tuple", "typing.Tuple": "tuple", "set": "set", "Set": "set",
    "frozenset": "set", "FrozenSet": "set", "dict": "dict", "Dict": "dict", "str": "str",
    "torch.Tensor": "tensor", "Tensor": "tensor", "numpy.ndarray": "ndarray",
    "ndarray": "ndarray", "numpy.typing.NDArray": "ndarray", "NDArray": "ndarray",
    "collections.deque": "deque", "deque": "deque", "pandas.DataFrame": "dataframe",
}


def kind_of(ctx: FileContext, expr: ast.AST | None, _depth: int = 0) -> Kind:
    """The kind of ``expr`` as evaluated where it stands in ``ctx``."""
    if expr is None or _depth > 8:
        return "unknown"
    literal = _literal_kind(expr)
    if literal is not None:
        return literal
    if isinstance(expr, ast.Name):
        return name_kind(ctx, expr.id, expr, _depth + 1)
    if isinstance(expr, ast.Call):
        return _call_kind(ctx, expr, _depth + 1)
    if isinstance(expr, ast.BinOp):
        return _binop_kind(ctx, expr, _depth + 1)
    if isinstance(expr, ast.Subscript):
        return _subscript_kind(ctx, expr, _depth + 1)
    if isinstance(expr, ast.IfExp):
        a, b = kind_of(ctx, expr.body, _depth + 1), kind_of(ctx, expr.orelse, _depth + 1)
        return a if a == b else "unknown"
    if isinstance(expr, ast.Attribute) and expr.attr in ("T", "mT", "data", "grad", "real"):
        base = kind_of(ctx, expr.value, _depth + 1)
        return base if base in ARRAY_KINDS else "unknown"
    return "unknown"


def name_kind(ctx: FileContext, name: str, at: ast.AST, _depth: int = 0) -> Kind:
    """Kind of ``name`` seen from ``at``: every binding must agree (``+=`` keeps a kind)."""
    kinds: set[Kind] = set()
    for b in ctx.bindings(name, at):
        if b.kind == "augassign" or _regrows(b.value, name):
            continue  # s += "x" / s = s + "x" keep a str a str, xs += [...] a list a list
        if b.kind == "param" and b.annotation is not None:
            kinds.add(annotation_kind(ctx, b.annotation))
        elif b.kind == "assign" and (b.value is not None or b.annotation is not None):
            k = kind_of(ctx, b.value, _depth + 1) if b.value is not None else "unknown"
            if k == "unknown" and b.annotation is not None:
                k = annotation_kind(ctx, b.annotation)
            kinds.add(k)
        else:
            return "unknown"
    return kinds.pop() if len(kinds) == 1 else "unknown"


def _regrows(value: ast.AST | None, name: str) -> bool:
    """``n = n + ...`` / ``n = ... + n`` / ``n = n[a:b]``: the kind of ``n`` is kept."""
    if isinstance(value, ast.Subscript) and isinstance(value.slice, ast.Slice):
        return isinstance(value.value, ast.Name) and value.value.id == name
    return isinstance(value, ast.BinOp) and any(
        isinstance(side, ast.Name) and side.id == name for side in (value.left, value.right))


def annotation_kind(ctx: FileContext, ann: ast.AST) -> Kind:
    if isinstance(ann, ast.Constant) and isinstance(ann.value, str):
        try:
            ann = ast.parse(ann.value, mode="eval").body
        except SyntaxError:
            return "unknown"
    if isinstance(ann, ast.Subscript):
        ann = ann.value
    key = ctx.qualname(ann) or (ann.id if isinstance(ann, ast.Name) else None)
    if key is None and isinstance(ann, ast.Attribute):
        key = ast.unparse(ann)
    return _ANNOTATIONS.get(key or "", "unknown")


def is_short_display(expr: ast.AST | None, limit: int) -> bool:
    """A list/tuple/set display of at most ``limit`` items (no ``*unpacking``)."""
    return (isinstance(expr, (ast.List, ast.Tuple, ast.Set)) and len(expr.elts) <= limit
            and not any(isinstance(e, ast.Starred) for e in expr.elts))


def _literal_kind(expr: ast.AST) -> Kind | None:
    if isinstance(expr, (ast.List, ast.ListComp)):
        return "list"
    if isinstance(expr, ast.Tuple):
        return "tuple"
    if isinstance(expr, (ast.Set, ast.SetComp)):
        return "set"
    if isinstance(expr, (ast.Dict, ast.DictComp)):
        return "dict"
    if isinstance(expr, ast.JoinedStr):
        return "str"
    if isinstance(expr, ast.Constant):
        if isinstance(expr.value, str):
            return "str"
        if isinstance(expr.value, (int, float)) and not isinstance(expr.value, bool):
            return "number"
        return "unknown"
    return None


def _call_kind(ctx: FileContext, call: ast.Call, depth: int) -> Kind:
    func = call.func
    if isinstance(func, ast.Name) and func.id in _CALL_KINDS and ctx.is_builtin(func.id, call):
        return _CALL_KINDS[func.id]
    q = ctx.qualname(func)
    if q is not None:
        return _module_call_kind(q)
    if isinstance(func, ast.Attribute):
        return _method_kind(ctx, func, depth)
    return "unknown"


def _module_call_kind(q: str) -> Kind:
    if q in _CALL_KINDS:
        return _CALL_KINDS[q]
    head, _, rest = q.partition(".")
    if head == "torch" and rest:
        plain = "." not in rest or rest.startswith(("nn.functional.", "linalg.", "fft.",
                                                   "special."))
        return "tensor" if plain and rest not in _TORCH_NOT_TENSOR else "unknown"
    if head == "numpy" and rest:
        if rest in _NUMPY_RNG:
            return "rng"
        plain = "." not in rest or rest.startswith(("random.", "linalg.", "fft."))
        return "ndarray" if plain and rest not in _NUMPY_NOT_ARRAY else "unknown"
    if q in ("pandas.DataFrame", "pandas.concat", "pandas.read_csv"):
        return "dataframe"
    return "unknown"


def _method_kind(ctx: FileContext, func: ast.Attribute, depth: int) -> Kind:
    attr = func.attr
    if attr == "tolist" or attr in _SPLIT_METHODS:
        return "list"
    if attr == "numpy":
        return "ndarray"
    if attr == "keys" or attr == "items":
        return "view"
    if attr == "values":
        return "values"
    base = kind_of(ctx, func.value, depth)
    if base in ARRAY_KINDS:
        return "unknown" if attr in _ARRAY_SCALAR_METHODS else base
    if base == "rng":
        return "ndarray" if attr not in ("spawn", "bit_generator") else "unknown"
    if base == "str" and attr in _STR_METHODS:
        return "str"
    if attr == "copy" and base in ("list", "dict", "set", "deque", "dataframe"):
        return base
    return "unknown"


def _binop_kind(ctx: FileContext, expr: ast.BinOp, depth: int) -> Kind:
    left, right = kind_of(ctx, expr.left, depth), kind_of(ctx, expr.right, depth)
    for k in ("tensor", "ndarray"):
        if k in (left, right):
            return k  # type: ignore[return-value]
    if isinstance(expr.op, ast.Add) and left == right and left in ("list", "tuple", "str"):
        return left
    if isinstance(expr.op, ast.Mult) and {left, right} in ({"list", "number"},
                                                          {"tuple", "number"}):
        return "list" if "list" in (left, right) else "tuple"
    if isinstance(expr.op, ast.Mod) and left == "str":
        return "str"
    if left == right == "number":
        return "number"
    return "unknown"


def _subscript_kind(ctx: FileContext, expr: ast.Subscript, depth: int) -> Kind:
    base = kind_of(ctx, expr.value, depth)
    if base in ARRAY_KINDS:
        return base
    if isinstance(expr.slice, ast.Slice) and base in ("list", "tuple", "str"):
        return base
    return "unknown"
