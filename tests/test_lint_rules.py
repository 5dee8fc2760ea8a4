"""perfpilot.lint AST rules: a positive and a negative test for every case they claim."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from perfpilot.lint import RULES_BY_ID, run_lint
from perfpilot.lint.base import Hit
from perfpilot.lint.context import FileContext

HEADER = "import numpy as np\nimport pandas as pd\nimport torch\n"


def hits(code: str, rule: str) -> list[Hit]:
    src = HEADER + textwrap.dedent(code)
    ctx = FileContext.parse(Path("/virtual/snippet.py"), src)
    return list(RULES_BY_ID[rule].check(ctx))


def lines(code: str, rule: str) -> list[int]:
    """Finding lines, relative to the snippet (its first line is 1)."""
    return [h.line - HEADER.count("\n") for h in hits(code, rule)]


# -- inefficient-membership ----------------------------------------------------------

M = "inefficient-membership"


def test_membership_dedupe_with_append_is_flagged_and_keeps_order_in_fix():
    found = hits("""
        def dedupe(items):
            seen = []
            for x in items:
                if x not in seen:
                    seen.append(x)
            return seen
    """, M)
    assert len(found) == 1
    h = found[0]
    assert "`seen`" in h.title and "grown inside the loop" in h.evidence
    assert "+ if x not in seen_set:" in h.diff and "seen_set = set(seen)" in h.diff[0]
    assert h.depth == 1 and h.loop is not None


def test_membership_set_only_use_suggests_a_set():
    h = hits("""
        def count_new(items):
            seen = []
            n = 0
            for x in items:
                if x not in seen:
                    seen.append(x)
                    n += 1
            return n
    """, M)[0]
    assert h.diff == ("- seen = []", "+ seen = set()", "- seen.append(x)", "+ seen.add(x)")


@pytest.mark.parametrize("code", [
    # comprehension filter against a list built before it
    """
    def keep(words, banned_src):
        banned = list(banned_src)
        return [w for w in words if w in banned]
    """,
    # while loop, module-level constant list of many items
    """
    STOP = ["a", "an", "the", "of", "to", "in", "on", "at", "by", "for"]
    def strip(words):
        i = 0
        while i < len(words):
            if words[i] in STOP:
                words[i] = ""
            i += 1
    """,
    # annotated parameter
    """
    def hits_(xs, ys: list[int]):
        return sum(1 for x in xs if x in ys)
    """,
    # a long named tuple of constants
    """
    def f(xs):
        T = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
        return [x for x in xs if x in T]
    """,
])
def test_membership_positive_forms(code):
    assert len(hits(code, M)) == 1


def test_membership_long_inline_literal_suggests_set_literal():
    h = hits("""
        def f(xs):
            return [x for x in xs if x in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)]
    """, M)[0]
    assert h.diff[-1].endswith("in {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}]")


def test_membership_index_on_list_in_loop():
    h = hits("""
        def encode(tokens, words):
            vocab = sorted(set(words))
            return [vocab.index(t) for t in tokens]
    """, M)[0]
    assert h.title.startswith("`vocab.index(...)`")
    assert h.diff[-1] == "+ return [vocab_pos[t] for t in tokens]"


@pytest.mark.parametrize("code", [
    # sets, dicts, dict views, ranges, strings
    "def f(xs):\n    s = set(xs)\n    return [x for x in xs if x in s]\n",
    "def f(xs):\n    d = {}\n    for x in xs:\n        if x not in d:\n            d[x] = 1\n",
    "def f(xs, d: dict):\n    return [x for x in xs if x in d.keys()]\n",
    "def f(xs):\n    r = range(10)\n    return [x for x in xs if x in r]\n",
    "def f(xs):\n    text = 'abc'\n    return [x for x in xs if x in text]\n",
    # short literal tuple/list of constants, named or inline
    "def f(xs):\n    ok = ('a', 'b', 'c')\n    return [x for x in xs if x in ok]\n",
    "def f(xs):\n    return [x for x in xs if x in ['a', 'b']]\n",
    # short display of names never grown
    "def f(xs, a, b):\n    pair = [a, b]\n    return [x for x in xs if x in pair]\n",
    # not in a loop
    "def f(x, xs):\n    ys = list(xs)\n    return x in ys\n",
    # rebuilt on every iteration: a set would cost the same
    "def f(rows, x):\n    for r in rows:\n        cells = list(r)\n        if x in cells:\n"
    "            return r\n",
    # unknown kind: parameter without annotation, attribute
    "def f(xs, ys):\n    return [x for x in xs if x in ys]\n",
    "def f(self, xs):\n    return [x for x in xs if x in self.items]\n",
    # loop-invariant test: hoisting, not a set, is the fix
    "def f(xs, opts: list[str]):\n    return [x for x in xs if 'all' in opts]\n",
])
def test_membership_negatives(code):
    assert hits(code, M) == []


@pytest.mark.parametrize("mutation", [
    "seen.insert(0, x)", "seen.pop()", "seen.remove(x)", "seen.sort()", "seen[0] = x",
    "del seen[0]",
])
def test_membership_on_list_mutated_like_a_list_is_not_flagged(mutation):
    code = f"""
        def f(items):
            seen = [0]
            for x in items:
                if x not in seen:
                    {mutation}
    """
    assert hits(code, M) == []


def test_index_on_list_appended_in_loop_is_not_flagged():
    assert hits("""
        def f(items):
            order = []
            for x in items:
                order.append(x)
                i = order.index(x)
    """, M) == []


# -- repeated-concat -----------------------------------------------------------------

C = "repeated-concat"


@pytest.mark.parametrize("stmt,what,after", [
    ("acc = torch.cat([acc, x])", "torch.cat()", "acc = torch.cat([acc, *acc_parts])"),
    ("acc = torch.cat((acc, x), dim=0)", "torch.cat()",
     "acc = torch.cat([acc, *acc_parts], dim=0)"),
    ("acc = torch.cat([x, acc])", "torch.cat()", "acc = torch.cat([*reversed(acc_parts), acc])"),
    ("acc = np.concatenate([acc, x])", "np.concatenate()",
     "acc = np.concatenate([acc, *acc_parts])"),
    ("acc = np.vstack([acc, x])", "np.vstack()", "acc = np.vstack([acc, *acc_parts])"),
    ("acc = np.append(acc, x)", "np.append", "acc = np.append(acc, acc_parts)"),
    ("acc = pd.concat([acc, x])", "pd.concat()", "acc = pd.concat([acc, *acc_parts])"),
    ("acc = acc.append(x)", "DataFrame.append", "acc = pd.concat([acc, *acc_parts])"),
])
def test_concat_positive(stmt, what, after):
    found = hits(f"""
        def f(xs, acc):
            for x in xs:
                {stmt}
            return acc
    """, C)
    assert len(found) == 1 and what in found[0].title
    assert found[0].diff == (f"- {stmt}", "+ acc_parts.append(x)",
                             f"+ {after}  # once, after the loop")


@pytest.mark.parametrize("stmt,diff", [
    ("acc = acc + [x]", ("- acc = acc + [x]", "+ acc.append(x)")),
    ("acc = acc + [x, 2 * x]", ("- acc = acc + [x, 2 * x]", "+ acc.extend([x, 2 * x])")),
    ("acc = acc + (x,)", ("- acc = acc + (x,)", "+ acc_parts.extend((x,))",
                          "+ acc = acc + tuple(acc_parts)  # once, after the loop")),
    ("acc = [x] + acc", ()),
])
def test_concat_list_and_tuple_plus(stmt, diff):
    found = hits(f"""
        def f(xs, acc):
            for x in xs:
                {stmt}
    """, C)
    assert len(found) == 1 and found[0].diff == diff


def test_concat_str_plus_equals_and_fix():
    h = hits("""
        def render(rows):
            out = ""
            for r in rows:
                out += f"{r}\\n"
            return out
    """, C)[0]
    assert h.title.startswith("str `out`")
    assert h.diff == ('- out += f"{r}\\n"', '+ out_parts.append(f"{r}\\n")',
                      '+ out += "".join(out_parts)  # once, after the loop')


def test_concat_str_plus_assignment():
    assert lines("""
        def f(rows):
            s = ""
            for r in rows:
                s = s + str(r)
            return s
    """, C) == [5]


def test_concat_from_import_alias():
    assert hits("""
        from numpy import concatenate as cc
        def f(xs, acc):
            for x in xs:
                acc = cc([acc, x])
    """, C) != []


@pytest.mark.parametrize("code", [
    # numbers, in-place list extension, concatenation of unrelated tensors
    "def f(xs):\n    total = 0\n    for x in xs:\n        total += x\n",
    "def f(xs):\n    out = []\n    for x in xs:\n        out += [x]\n",
    "def f(xs, a):\n    for x in xs:\n        y = torch.cat([a, x])\n",
    # one concatenation after the loop
    "def f(xs):\n    parts = []\n    for x in xs:\n        parts.append(x)\n"
    "    return torch.cat(parts)\n",
    # a bounded buffer: reset inside the same loop
    "def f(xs, flush):\n    buf = torch.empty(0)\n    for x in xs:\n"
    "        buf = torch.cat([buf, x])\n        if len(buf) > 64:\n            flush(buf)\n"
    "            buf = torch.empty(0)\n",
    # the loop reads every partial result (prefixes are the point)
    "def f(xs, cache):\n    acc = ()\n    for x in xs:\n        acc = acc + (x,)\n"
    "        cache[x] = acc\n",
    # str += outside any loop; += on a list with a str
    "def f(a):\n    s = ''\n    s += a\n    return s\n",
    "def f(xs):\n    out = []\n    for x in xs:\n        out += 'ab'\n",
])
def test_concat_negatives(code):
    assert hits(code, C) == []


# -- queue-pop-front -----------------------------------------------------------------

Q = "queue-pop-front"


def test_queue_pop0_bfs_with_deque_diff():
    h = hits("""
        def bfs(graph, start):
            todo = [start]
            while todo:
                node = todo.pop(0)
                todo.extend(graph[node])
    """, Q)[0]
    assert h.diff == ("- todo = [start]", "+ todo = deque([start])",
                      "- node = todo.pop(0)", "+ node = todo.popleft()")
    assert h.confidence == "high"


@pytest.mark.parametrize("stmt,new", [
    ("q.insert(0, x)", "+ q.appendleft(x)"),
    ("del q[0]", "+ q.popleft()"),
    ("q = q[1:]", "+ q.popleft()"),
])
def test_queue_other_front_operations(stmt, new):
    found = hits(f"""
        def f(xs):
            q = list(xs)
            for x in xs:
                {stmt}
    """, Q)
    assert len(found) == 1 and found[0].diff[-1] == new


def test_queue_unknown_kind_counts_when_appended_to():
    found = hits("""
        class W:
            def run(self):
                while self.jobs:
                    job = self.jobs.pop(0)
                    self.jobs.append(job)
    """, Q)
    assert len(found) == 1 and found[0].confidence == "medium"


@pytest.mark.parametrize("code", [
    "def f(xs):\n    d = {}\n    for x in xs:\n        d.pop(0)\n",
    "from collections import deque\ndef f(xs):\n    q = deque(xs)\n    while q:\n"
    "        q.popleft()\n",
    "def f(xs):\n    q = list(xs)\n    while q:\n        q.pop()\n",
    "def f(xs):\n    q = list(xs)\n    return q.pop(0)\n",
    "def f(obj):\n    while obj.pending():\n        obj.pop(0)\n",
    "def f(s: str):\n    while s:\n        s = s[1:]\n",
    # rebuilt in every iteration, shifted once: not a queue
    "def f(funcs):\n    for fn in funcs:\n        args = list(fn.params)\n"
    "        args = args[1:]\n        args.pop(0)\n",
])
def test_queue_negatives(code):
    assert hits(code, Q) == []


# -- nested-loop-join ----------------------------------------------------------------

J = "nested-loop-join"


def test_join_for_for_if_with_dict_index_diff():
    h = hits("""
        def join(orders, customers):
            out = []
            for o in orders:
                for c in customers:
                    if o.cid == c.id:
                        out.append((o, c))
            return out
    """, J)[0]
    assert h.title == "nested loops join `orders` and `customers` by `o.cid == c.id`"
    assert h.diff[-3:] == ("- for c in customers:", "-     if o.cid == c.id:",
                           "+ for c in customers_by_key.get(o.cid, ()):")
    assert h.loop is not None and h.depth == 2


@pytest.mark.parametrize("code", [
    "def f(A, B):\n    return [(a, b) for a in A for b in B if a['k'] == b['k']]\n",
    "def f(A, B):\n    return [a for a in A if any(b.k == a.k for b in B)]\n",
    "def f(A, B):\n    for a in A:\n        for b in B:\n            if b.k == a.k and b.ok:\n"
    "                yield a, b\n",
])
def test_join_positive_forms(code):
    assert len(hits(code, J)) == 1


@pytest.mark.parametrize("code", [
    # the inner collection depends on the outer item
    "def f(A):\n    for a in A:\n        for c in a.children:\n            if c.k == a.k:\n"
    "                yield c\n",
    "def f(A, B):\n    for a in A:\n        near = B[a.k]\n        for b in near:\n"
    "            if b.k == a.k:\n                yield b\n",
    # not equality, or equality between items of the same loop
    "def f(A, B):\n    for a in A:\n        for b in B:\n            if a.k < b.k:\n"
    "                yield a\n",
    "def f(A, B):\n    for a in A:\n        for b in B:\n            if b.x == b.y:\n"
    "                yield a\n",
    # every pair is processed (if/else, conditional expression): not a filter
    "def f(A, B):\n    for a in A:\n        for b in B:\n            if a.k == b.k:\n"
    "                g(a)\n            else:\n                h(b)\n",
    "def f(A, B):\n    return sum([1.0 if a == b else 0.5 for a in A for b in B])\n",
    # one side is a few literal items
    "def f(B):\n    for k in ('x', 'y'):\n        for b in B:\n            if b.k == k:\n"
    "                yield b\n",
    # bounds check against a range index, an `or`, a single loop
    "def f(A, m):\n    for a in A:\n        for j in range(m):\n            if a.k == j:\n"
    "                yield a\n",
    "def f(A, B):\n    for a in A:\n        for b in B:\n            if a.k == b.k or b.all:\n"
    "                yield a\n",
    "def f(A, k):\n    for a in A:\n        if a.k == k:\n            yield a\n",
])
def test_join_negatives(code):
    assert hits(code, J) == []


# -- python-loop-over-tensor ---------------------------------------------------------

T = "python-loop-over-tensor"


def test_tensor_sum_loop_with_item_gets_vectorized_diff():
    h = hits("""
        def f(n):
            t = torch.randn(n)
            total = 0.0
            for i in range(len(t)):
                total += t[i].item() * 2
            return total
    """, T)[0]
    assert h.diff == ("- for i in range(len(t)):", "-     total += t[i].item() * 2",
                      "+ total += (t * 2).sum().item()")


@pytest.mark.parametrize("code,last", [
    ("def f(a, b: torch.Tensor):\n    n = 0\n    for i in range(a.shape[0]):\n"
     "        if a[i] == b[i]:\n            n += 1\n", "+ n += (a == b).sum().item()"),
    ("def f(x: np.ndarray, out):\n    for i in range(x.shape[0]):\n"
     "        out[i] = x[i] * 2 + 1\n", "+ out[:] = x * 2 + 1"),
    ("def f(t: torch.Tensor):\n    return [v.item() for v in t]\n", "+ return t.tolist()"),
    ("def f(a: np.ndarray):\n    return tuple(float(v) for v in a)\n",
     "+ return tuple(a.tolist())"),
    ("import math\ndef f(t: torch.Tensor, out: list):\n    for x in t:\n"
     "        out.append(math.exp(x.item()))\n", "+ out.extend(torch.exp(t).tolist())"),
    ("def f(a: np.ndarray, b):\n    return [x < b for x in a]\n", "+ return (a < b).tolist()"),
])
def test_tensor_elementwise_loop_positive(code, last):
    found = hits(code, T)
    assert len(found) == 1 and found[0].diff[-1] == last


def test_tensor_nested_loops_reported_once():
    assert len(hits("""
        def f(img: torch.Tensor):
            s = 0.0
            for i in range(img.size(0)):
                for j in range(img.size(1)):
                    s += img[i, j].item()
    """, T)) == 1


def test_tensor_item_per_element_inside_other_work():
    found = hits("""
        def f(model, t: torch.Tensor, out):
            for i in range(len(t)):
                y = model(t[i])
                out.append(t[i].item())
    """, T)
    assert len(found) == 1 and found[0].title == ".item() on one element per iteration"
    assert found[0].gain is not None and found[0].gain[0] == "line"
    assert found[0].diff[0] == "+ t_list = t.tolist()  # once, before the loop"


@pytest.mark.parametrize("code", [
    # one .item() per training step is not per element
    "def f(model, loader, opt):\n    total = 0.0\n    for x, y in loader:\n"
    "        loss = model(x, y)\n        total += loss.item()\n",
    # Python lists, not arrays
    "def f(xs: list[float]):\n    s = 0.0\n    for i in range(len(xs)):\n        s += xs[i]\n",
    "def f(xs: list[float]):\n    return [float(xs[i]) for i in range(len(xs))]\n",
    # a recurrence is a scan, not a map
    "def f(x: np.ndarray, y: np.ndarray, a: float):\n    for i in range(len(x)):\n"
    "        y[i] = y[i - 1] * a + x[i]\n",
    "def f(x: np.ndarray, a: float):\n    acc = 0.0\n    for i in range(len(x)):\n"
    "        acc = acc * a + x[i]\n",
    # per-sample model call: not element-wise arithmetic (and no conversion)
    "def f(model, t: torch.Tensor, out):\n    for i in range(len(t)):\n"
    "        out.append(model(t[i]))\n",
    # one column per iteration: vector work each time
    "def f(x: np.ndarray, edges):\n    for j in range(x.shape[1]):\n"
    "        x[:, j] = np.searchsorted(edges[j], x[:, j])\n",
    # whole rows handed to numpy per iteration, or rows passed through untouched
    "def f(d: np.ndarray, out):\n    for x in d:\n        out.append(np.median(x))\n",
    "def f(d: np.ndarray):\n    return np.hstack([x for x in d])\n",
    # elements used as keys or copied, not computed with; an iterator object
    "def f(a: np.ndarray, groups):\n    for i, g in enumerate(a):\n"
    "        groups[g].append(i)\n",
    "def f(a: np.ndarray, out):\n    for x in a:\n        out.append(x)\n",
    "def f(a):\n    for v in np.nditer(a):\n        v[...] *= 2\n",
    # .tolist()/.item() on items of a list of unknown things
    "def f(classes, n):\n    for k in range(n):\n        print(classes[k].tolist())\n",
])
def test_tensor_negatives(code):
    assert hits(code, T) == []


# -- sort-for-min-max ----------------------------------------------------------------

S = "sort-for-min-max"


@pytest.mark.parametrize("expr,new", [
    ("sorted(xs)[0]", "min(xs)"),
    ("sorted(xs)[-1]", "max(xs)"),
    ("sorted(xs, key=len)[0]", "min(xs, key=len)"),
    ("sorted(xs, reverse=True)[0]", "max(xs)"),
    ("sorted(xs, key=abs, reverse=True)[-1]", "min(xs, key=abs)"),
])
def test_sort_min_max_positive(expr, new):
    h = hits(f"def f(xs):\n    return {expr}\n", S)[0]
    assert h.diff == (f"- return {expr}", f"+ return {new}") and h.depth == 0


def test_sort_min_max_notes_ties_with_key_and_last():
    assert "ties" in hits("def f(xs):\n    return sorted(xs, key=len)[-1]\n", S)[0].evidence


@pytest.mark.parametrize("code", [
    "def f(xs):\n    return sorted(xs)[1]\n",
    "def f(xs):\n    return sorted(xs)[:3]\n",
    "def f(xs):\n    return sorted(xs)\n",
    "def f(xs, flag):\n    return sorted(xs, reverse=flag)[0]\n",
    "def f(xs, sorted):\n    return sorted(xs)[0]\n",
])
def test_sort_min_max_negatives(code):
    assert hits(code, S) == []


# -- engine: suppression, parse errors, discovery --------------------------------------

def test_suppression_comment_and_parse_errors(tmp_path):
    (tmp_path / "a.py").write_text(
        "def f(xs, ys: list):\n"
        "    a = [x for x in xs if x in ys]  # perfpilot: ignore[inefficient-membership]\n"
        "    b = [x for x in xs if x in ys]  # perfpilot: ignore\n"
        "    c = [x for x in xs if x in ys]  # perfpilot: ignore[repeated-concat]\n"
        "    return a, b, c\n")
    (tmp_path / "broken.py").write_text("def f(:\n")
    venv = tmp_path / ".venv"
    venv.mkdir()
    (venv / "dep.py").write_text("def f(xs, ys: list):\n    return [x for x in xs if x in ys]\n")
    report = run_lint([tmp_path], use_ruff=False)
    assert [(Path(f.location["file"]).name, f.location["line"]) for f in report.findings] \
        == [("a.py", 4)]
    assert len(report.files) == 2
    assert any("broken.py:1: skipped, not valid Python" in n for n in report.notes)


def test_every_rule_has_an_id_message_fix_and_gain_model():
    for rule in RULES_BY_ID.values():
        assert rule.summary and rule.assumption and rule.factor > 1
        assert rule.measure in ("line", "loop") and rule.weight in (1, 2, 3)
