"""The one place perfpilot reads and writes its JSON files.

Writes are atomic (a unique temp file in the same folder, then a rename), so a crash, a
Ctrl-C or a reader running at the same moment never sees half a file, and two writers never
share a temp file. Reads turn every way a file can be wrong into one :class:`UserError`
line that names the file (missing, unreadable, not text, not JSON). Values are serialised
strictly: dataclasses, numpy/torch scalars and arrays, sets, tuples and paths are converted;
anything else is a TypeError (a bug, not a user mistake).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from perfpilot.errors import UserError


def dumps(data: Any, *, allow_nan: bool = True) -> str:
    """``data`` as indented JSON text with a final newline (see :func:`to_jsonable`)."""
    return json.dumps(data, indent=2, default=_default, allow_nan=allow_nan) + "\n"


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically; an OSError becomes a UserError naming it."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, data: Any, *, allow_nan: bool = True) -> None:
    """Write ``data`` as JSON to ``path`` atomically (see :func:`write_text_atomic`)."""
    write_text_atomic(path, dumps(data, allow_nan=allow_nan))


def load_json(path: str | Path, what: str = "file") -> Any:
    """The JSON value in ``path``; every failure is a UserError naming ``path``.

    ``what`` says what was expected, for the message: ``load_json(p, "plan file")`` gives
    ``plan file not found: p``.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{what} not found: {p}") from None
    except IsADirectoryError:
        raise UserError(f"{p} is a folder, not a {what}") from None
    except OSError as e:
        raise UserError(f"cannot read {what} {p}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise UserError(f"{p}: not a text file (perfpilot's files are UTF-8 JSON)") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from None


def _default(o: Any) -> Any:
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        to_dict = getattr(o, "to_dict", None)
        return to_dict() if callable(to_dict) else dataclasses.asdict(o)
    if hasattr(o, "tolist"):  # numpy / torch scalars and arrays
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot serialize {type(o).__name__}")
