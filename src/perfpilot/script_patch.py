"""The patch that writes a script plan's changes into the user's files (docs/patch.md).

:func:`make_patch` turns a script plan's ``changes`` (:mod:`perfpilot.script_plan`) into a
unified diff relative to ``root``: ``cd root && git apply train.patch`` (or
``patch -p1 < train.patch``) makes the unmodified script do what the plan does. Clean
edits: the loader knobs as keywords of each ``DataLoader(...)`` call (a value replaced in
place, a missing keyword added in the call's own layout), ``torch.set_num_threads`` /
``set_num_interop_threads`` and ``torch.backends.cudnn.benchmark`` (an existing setting
replaced, else inserted after the leading imports). Everything else, and a loader knob whose
call cannot be edited safely, is returned in :attr:`ScriptPatch.launcher` with the reason:
``perfpilot run-script --plan plan.json`` applies it at run time. Source text only
(:mod:`ast` finds, :mod:`difflib` writes): no torch, nothing run. No comments are added;
encoding, BOM and line endings are kept; an edit that would not parse is dropped (its knobs
go to the launcher); a patch of already patched files is empty.
"""

from __future__ import annotations

import ast
import bisect
import difflib
import io
import itertools
import re
import subprocess
import tokenize
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perfpilot.errors import UserError
from perfpilot.jsonio import write_text_atomic
from perfpilot.script_plan import LOADER_KNOBS, validate_changes

# Why a knob is never a clean edit (``env`` gets its own text, naming the variables).
LAUNCHER_REASONS: dict[str, str] = {
    "lr_scale": "the optimizer's lr may come from anywhere (a literal, args, a config)",
    "precision": "autocast around the model's forward is not a one-line edit",
    "compile": "torch.compile around the model's forward is not a one-line edit",
    "channels_last": "converting the model and its 4-D inputs is not a one-line edit",
    "seed": "never written: the seed only makes tuning trials comparable",
}
# Values that change nothing: such a knob needs neither an edit nor the launcher.
_NOOP: dict[str, Any] = {"precision": "fp32", "compile": "off", "lr_scale": 1,
                         "channels_last": False}
_LOADER_NAMES = frozenset({"DataLoader", "data.DataLoader", "torch.utils.data.DataLoader"})
_LOADER_PATHS = frozenset({"torch.utils.data.DataLoader",
                           "torch.utils.data.dataloader.DataLoader"})
# Positional slots in DataLoader(dataset, batch_size, shuffle, sampler, batch_sampler,
# num_workers, collate_fn, pin_memory, ...); prefetch_factor and persistent_workers are
# keyword-only.
_SLOTS = {"batch_size": 1, "num_workers": 5, "pin_memory": 7}
_DEFAULTS = dict(num_workers=0, prefetch_factor=None, persistent_workers=False,
                 pin_memory=False, batch_size=1)
_THREAD_CALLS = {"cpu_threads": "set_num_threads", "interop_threads": "set_num_interop_threads"}
_CUDNN = "torch.backends.cudnn.benchmark"
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")
_MISSING = object()


@dataclass(frozen=True)
class ScriptPatch:
    """``diff`` applies from ``root`` ('' when nothing is to edit); ``edits``: one line per
    knob and call edited; ``launcher``: knob -> why run-script applies it instead."""

    diff: str = ""
    edits: tuple[str, ...] = ()
    launcher: dict[str, str] = field(default_factory=dict)
    files: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"diff": self.diff, "edits": list(self.edits), "launcher": dict(self.launcher),
                "files": list(self.files)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScriptPatch:
        return cls(diff=data.get("diff", ""), edits=tuple(data.get("edits", ())),
                   launcher=dict(data.get("launcher", {})), files=tuple(data.get("files", ())))

    def save(self, path: str | Path) -> None:
        """Write the diff to ``path`` atomically (UserError on OSError)."""
        write_text_atomic(path, self.diff)


class _Source:
    """One file's text, its tree and the edits planned on it (char offsets into text)."""

    def __init__(self, path: Path, rel: str) -> None:
        self.path, self.rel = path, rel
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise UserError(f"{path}: cannot read: {e.strerror or e}") from None
        try:
            encoding = tokenize.detect_encoding(io.BytesIO(raw).readline)[0]
            self.bom = encoding == "utf-8-sig"
            text = raw.decode("utf-8" if self.bom else encoding)
        except (SyntaxError, UnicodeDecodeError, LookupError) as e:
            raise UserError(f"{path}: cannot decode: {e}") from None
        self.text = text[1:] if self.bom else text  # edits see no BOM; the diff adds it back
        try:
            self.tree = ast.parse(self.text, filename=str(path))
        except SyntaxError as e:
            raise UserError(f"{path}:{e.lineno}: cannot parse: {e.msg}") from None
        except ValueError as e:  # null bytes
            raise UserError(f"{path}: cannot parse: {e}") from None
        self.lines = _LINE.findall(self.text)
        self.starts = [0, *itertools.accumulate(len(line) for line in self.lines)]
        first = re.search(r"\r\n|\r|\n", self.text)
        self.nl = first.group() if first else "\n"
        self.aliases = _aliases(self.tree)
        self.edits: list[tuple[int, int, str]] = []

    def off(self, lineno: int, col: int) -> int:
        """Char offset of ``lineno`` (1-based) and ``col`` (UTF-8 bytes, as ast gives it)."""
        line = self.lines[lineno - 1] if lineno <= len(self.lines) else ""
        if not line.isascii():
            col = len(line.encode("utf-8")[:col].decode("utf-8", "replace"))
        return self.starts[lineno - 1] + col

    def span(self, node: ast.AST) -> tuple[int, int]:
        return (self.off(node.lineno, node.col_offset),  # type: ignore[attr-defined]
                self.off(node.end_lineno, node.end_col_offset))  # type: ignore[attr-defined]

    def seg(self, node: ast.AST) -> str:
        return self.text.__getitem__(slice(*self.span(node)))

    def resolve(self, node: ast.AST) -> str | None:
        """``torch.utils.data.DataLoader`` for ``DL`` after ``from ... import DataLoader as DL``."""
        name = _dotted(node)
        head, dot, rest = (name or "").partition(".")
        return self.aliases.get(head, head) + dot + rest if name else None

    def patched(self) -> str:
        text = self.text
        # from the end, so offsets stay valid; at one offset, the edit planned first
        # ends up first
        order = sorted(range(len(self.edits)), key=lambda i: (*self.edits[i][:2], i))
        for i in reversed(order):
            s, e, new = self.edits[i]
            text = text[:s] + new + text[e:]
        return text


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> the dotted path it was imported as (every import in the file)."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    names[a.asname] = a.name
                else:
                    head = a.name.partition(".")[0]
                    names[head] = head
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _MISSING


def _same(node: ast.AST, value: Any) -> bool:
    old = _literal(node)
    return type(old) is type(value) and old == value


def _is_loader(src: _Source, call: ast.Call) -> bool:
    return _dotted(call.func) in _LOADER_NAMES or src.resolve(call.func) in _LOADER_PATHS


def _main_nodes(tree: ast.Module) -> Iterator[ast.AST]:
    """Nodes that run at module level (``if __name__ == "__main__":`` too) or in ``main``."""
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "main":
                stack.extend(node.body)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _tail(text: str, start: int, close: int) -> tuple[int, bool]:
    """After the last argument: where its code ends (past grouping parens and a trailing
    comma) and whether that trailing comma is there. ``close`` is the call's ``)``."""
    anchor, comma, i = start, False, start
    while i < close:
        c = text[i]
        if c == "#":
            while i < close and text[i] not in "\r\n":
                i += 1
            continue
        if c not in " \t\f\r\n\\":
            anchor, comma = i + 1, comma or c == ","
        i += 1
    return anchor, comma


def _add_keywords(src: _Source, call: ast.Call, items: list[str]) -> None:
    """Add ``items`` (``"num_workers=1"``) after the call's last argument, in its layout."""
    close = src.span(call)[1] - 1
    args: list[ast.AST] = [*call.args, *call.keywords]
    if not args:
        src.edits.append((close, close, ", ".join(items)))
        return
    last = max(args, key=lambda n: (n.end_lineno, n.end_col_offset))  # type: ignore[attr-defined]
    anchor, comma = _tail(src.text, src.span(last)[1], close)
    if last.lineno <= call.func.end_lineno:  # type: ignore[attr-defined,operator]
        # every argument is on the line of "(": add on that line
        new = f" {', '.join(items)}," if comma else f", {', '.join(items)}"
        src.edits.append((anchor, anchor, new))
        return
    # one argument (or a few) per line: each new keyword on its own line, same indent
    row = src.lines[last.lineno - 1]  # type: ignore[attr-defined]
    indent = row[:len(row) - len(row.lstrip(" \t"))]
    lines = [f"{indent}{item}," for item in items]
    if not comma:
        lines[-1] = lines[-1][:-1]
    index = bisect.bisect_right(src.starts, anchor) - 1
    rest = src.lines[index][anchor - src.starts[index]:].strip()
    if not rest or rest.startswith("#"):  # the rest of the line is ours to follow
        if not comma:
            src.edits.append((anchor, anchor, ","))
        at = src.starts[index + 1]
        src.edits.append((at, at, "".join(line + src.nl for line in lines)))
    else:  # ")" follows on the same line
        new = "".join(src.nl + line for line in lines)
        src.edits.append((anchor, anchor, new if comma else "," + new))


def _edit_loader(src: _Source, call: ast.Call, knobs: dict[str, Any],
                 launcher: dict[str, list[str]], edits: list[tuple[str, str, str]]) -> None:
    """Set each loader knob in one DataLoader call (or say why not in ``launcher``)."""
    where = f"{src.rel}:{call.lineno}: {_dotted(call.func)}(...)"
    kw = {k.arg: k.value for k in call.keywords if k.arg}
    starstar = any(k.arg is None for k in call.keywords)
    star = next((i for i, a in enumerate(call.args) if isinstance(a, ast.Starred)), None)

    def current(knob: str) -> Any:  # the keyword's value, else the positional in its slot
        slot = _SLOTS.get(knob, len(call.args))
        positional = len(call.args) > slot and (star is None or star > slot)
        return kw.get(knob, call.args[slot] if positional else None)

    workers = knobs.get("num_workers", _MISSING)
    if workers is _MISSING:
        node = current("num_workers")
        workers = _literal(node) if node is not None else (
            0 if not starstar and star is None else _MISSING)
    adds: list[str] = []
    for knob, value in knobs.items():
        node = current(knob)
        why = None
        if node is None and star is not None and knob in _SLOTS and star <= _SLOTS[knob]:
            why = "passes *args (the slot of the argument is unknown)"
        elif node is None and starstar:
            why = (f"passes **kwargs, which may hold {knob} (an explicit keyword would then "
                   "be a TypeError)")
        elif knob == "batch_size" and "batch_sampler" in kw:
            why = "uses a batch_sampler (the batch size is the sampler's)"
        elif knob == "batch_size" and node is not None and _same(node, None):
            why = "has batch_size=None (no automatic batching)"
        elif workers == 0 and (knob == "prefetch_factor" or value is True) \
                and knob in ("prefetch_factor", "persistent_workers"):
            why = f"has num_workers=0 ({knob} needs worker processes)"
        if why:
            launcher.setdefault(knob, []).append(f"{where} {why}")
        elif node is None:
            adds.append(f"{knob}={value!r}")
            edits.append((src.rel, knob,
                          f"{where}: {knob} {_DEFAULTS[knob]!r} (default) -> {value!r}"))
        elif not _same(node, value):
            src.edits.append((*src.span(node), repr(value)))
            edits.append((src.rel, knob, f"{where}: {knob} {src.seg(node)} -> {value!r}"))
    if adds:
        _add_keywords(src, call, adds)


def _leading_imports(src: _Source) -> tuple[int, str | None]:
    """The line after which process-wide settings go (the last import of the file's leading
    run of imports, past a docstring), and the name torch is bound to there (or None)."""
    body = src.tree.body
    after, torch_name, i = 0 if body else len(src.lines), None, 0
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        after, i = body[0].end_lineno or 0, 1
    for stmt in body[i:]:
        if not isinstance(stmt, (ast.Import, ast.ImportFrom)):
            if after == 0:  # below a shebang or coding line, above decorators
                after = min([stmt.lineno, *(d.lineno for d in
                                            getattr(stmt, "decorator_list", []))]) - 1
            break
        after = stmt.end_lineno or stmt.lineno
        for a in stmt.names if isinstance(stmt, ast.Import) else ():
            if a.name == "torch" and a.asname:
                torch_name = a.asname
            elif not a.asname and a.name.partition(".")[0] == "torch":
                torch_name = "torch"
    return after, torch_name


def _edit_process(src: _Source, knobs: dict[str, Any],
                  edits: list[tuple[str, str, str]]) -> None:
    """Thread counts and cudnn.benchmark: replace an existing setting, else insert one."""
    pending: list[tuple[str, str]] = []  # (knob, statement after "torch.")
    for knob, value in knobs.items():
        found = False
        for node in _main_nodes(src.tree):
            if knob in _THREAD_CALLS and isinstance(node, ast.Call) \
                    and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == _THREAD_CALLS[knob] \
                    and src.resolve(node.func.value) == "torch" \
                    and len(node.args) == 1 and not node.keywords \
                    and not isinstance(node.args[0], ast.Starred):
                target, label = node.args[0], f"{_dotted(node.func)}(...)"
            elif knob == "cudnn_benchmark" and isinstance(node, ast.Assign) \
                    and len(node.targets) == 1 and src.resolve(node.targets[0]) == _CUDNN:
                target, label = node.value, _dotted(node.targets[0]) or _CUDNN
            else:
                continue
            found = True
            if not _same(target, value):
                src.edits.append((*src.span(target), repr(value)))
                edits.append((src.rel, knob, f"{src.rel}:{node.lineno}: {label}: {knob} "
                                             f"{src.seg(target)} -> {value!r}"))
        if not found:
            stmt = (f"backends.cudnn.benchmark = {value!r}" if knob == "cudnn_benchmark"
                    else f"{_THREAD_CALLS[knob]}({value!r})")
            pending.append((knob, stmt))
    if not pending:
        return
    after, torch_name = _leading_imports(src)
    lines = [] if torch_name else ["import torch"]
    name = torch_name or "torch"
    lines += [f"{name}.{stmt}" for _, stmt in pending]
    at = src.starts[min(after, len(src.lines))]  # start of the next line, or the end
    dangling = at == len(src.text) and src.text and not src.text.endswith(("\n", "\r"))
    prefix = src.nl if dangling else ""
    src.edits.append((at, at, prefix + "".join(line + src.nl for line in lines)))
    for knob, stmt in pending:
        edits.append((src.rel, knob, f"{src.rel}:{after + 1}: inserted {name}.{stmt} ({knob})"))


def _git_top(folder: Path) -> Path | None:
    try:
        out = subprocess.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out.stdout.strip()).resolve() if out.stdout.strip() else None


def _site_path(file: str, root: Path, script: Path) -> Path:
    p = Path(file)  # relative: to root, to the script's folder or to here, whichever exists
    bases = () if p.is_absolute() else (root, script.parent, Path.cwd())
    return next(((b / p).resolve() for b in bases if (b / p).exists()), (root / p).resolve())


def _outside(path: Path, root: Path) -> str | None:
    """Why ``path`` is not the user's to edit (None when it is)."""
    if not path.is_relative_to(root):
        return f"is outside {root} (a library's DataLoader)"
    if {"site-packages", "dist-packages"} & set(path.relative_to(root).parts):
        return "is in an installed package"
    if not path.is_file():
        return "is not a file here"
    return None


def _diff(src: _Source, new: str) -> str:
    """A unified diff ``a/rel`` -> ``b/rel``, with "No newline at end of file" markers."""
    bom = "\ufeff" if src.bom else ""
    old_lines = _LINE.findall(bom + src.text)
    new_lines = _LINE.findall(bom + new)
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in difflib.unified_diff(old_lines, new_lines,
                                                    f"a/{src.rel}", f"b/{src.rel}"))


def _site_calls(sites: Sequence[tuple[str, int]], source: Any, root: Path, script: Path,
                loader: dict[str, Any], launcher: dict[str, list[str]]
                ) -> list[tuple[_Source, ast.Call]]:
    """The DataLoader call at each recorded site (or why there is none, in ``launcher``)."""
    calls: list[tuple[_Source, ast.Call]] = []
    for file, line in sites:
        path = _site_path(str(file), root, script)
        why, hits, src = _outside(path, root), [], None
        try:
            src = None if why else source(path)
        except UserError as e:
            why = f"cannot be edited ({e})"
        if src is not None:  # innermost DataLoader call whose lines hold the site
            hits = [n for n in ast.walk(src.tree) if isinstance(n, ast.Call) and
                    n.lineno <= line <= (n.end_lineno or n.lineno) and _is_loader(src, n)]
            why = None if hits else "has no DataLoader(...) call on that line to edit"
        if why or src is None:
            for knob in loader:
                launcher.setdefault(knob, []).append(f"{file}:{line} {why}")
            continue
        call = min(hits, key=lambda n: (n.end_lineno or 0) - n.lineno)
        if all(c is not call for _, c in calls):
            calls.append((src, call))
    return calls


def make_patch(changes: dict[str, Any], *, script: str | Path,
               loader_sites: Sequence[tuple[str, int]] = (),
               root: str | Path | None = None) -> ScriptPatch:
    """The patch that makes ``script`` do what ``changes`` say (see the module docstring).

    ``loader_sites``: (file, line) where each DataLoader was built, any line of the call
    (default: every ``DataLoader(...)`` call in ``script``). Only files under ``root`` are
    edited (default: the script folder's git top level, else that folder). A missing or
    unparsable script is a :class:`UserError` naming the file (and line).
    """
    changes = validate_changes(changes)
    script_path = Path(script)
    if not script_path.is_file():
        raise UserError(f"{script}: no such file")
    script_path = script_path.resolve()
    root_path = Path(root).resolve() if root is not None else (
        _git_top(script_path.parent) or script_path.parent)
    sources: dict[Path, _Source] = {}
    launcher: dict[str, list[str]] = {}
    edits: list[tuple[str, str, str]] = []  # (file, knob, line)

    def source(path: Path) -> _Source:
        if path not in sources:
            sources[path] = _Source(path, path.relative_to(root_path).as_posix())
        return sources[path]

    main_src = None
    if root is not None and _outside(script_path, root_path):
        _Source(script_path, script_path.name)  # still a UserError when it does not parse
    else:
        main_src = source(script_path)
    for knob, value in changes.items():
        if knob == "env":
            launcher[knob] = [f"set {', '.join(value)} in the environment or use run-script "
                              "(read at process start, before the script's first line)"]
        elif knob in LAUNCHER_REASONS and _NOOP.get(knob, _MISSING) != value:
            launcher[knob] = [LAUNCHER_REASONS[knob]]
    process = {k: v for k, v in changes.items() if k in _THREAD_CALLS or k == "cudnn_benchmark"}
    loader = {k: v for k, v in changes.items() if k in LOADER_KNOBS}
    if main_src is None:
        for knob in {**process, **(loader if not loader_sites else {})}:
            launcher[knob] = [f"the script is outside {root_path}"]
    elif process:
        _edit_process(main_src, process, edits)
    calls: list[tuple[_Source, ast.Call]] = []
    if loader and loader_sites:
        calls = _site_calls(loader_sites, source, root_path, script_path, loader, launcher)
    elif loader and main_src is not None:
        calls = [(main_src, n) for n in ast.walk(main_src.tree)
                 if isinstance(n, ast.Call) and _is_loader(main_src, n)]
        if not calls:
            for knob in loader:
                launcher[knob] = [f"no DataLoader(...) call found in {main_src.rel}"]
    for src, call in sorted(calls, key=lambda sc: (sc[0].rel, sc[1].lineno)):
        _edit_loader(src, call, loader, launcher, edits)

    diffs, files = [], []
    for src in sorted(sources.values(), key=lambda s: s.rel):
        new = src.patched()
        if not src.edits:
            continue
        try:
            ast.parse(new)
        except (SyntaxError, ValueError):  # a layout the edit rules got wrong: run-script
            for knob in dict.fromkeys(k for f, k, _ in edits if f == src.rel):
                launcher.setdefault(knob, []).append(
                    f"the edit of {src.rel} would not parse (please report it)")
            edits = [e for e in edits if e[0] != src.rel]
            continue
        diffs.append(_diff(src, new))
        files.append(src.rel)
    return ScriptPatch(diff="".join(diffs), edits=tuple(line for _, _, line in edits),
                       launcher={k: "; ".join(v) for k, v in launcher.items()},
                       files=tuple(files))
