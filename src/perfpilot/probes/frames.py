"""Which source files are the user's, and where in the user's code a call came from.

A *user file* is Python source that is neither the standard library, nor an installed
package (``site-packages``/``dist-packages``), nor perfpilot's own machinery. perfpilot's
built-in workloads (``perfpilot/workloads/``) count as user code: they are what a user
would have written. Findings point at user lines only; everything else is context.
"""

from __future__ import annotations

import functools
import os
import sys
import sysconfig
from types import FrameType

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_USER_PKG_DIRS = (os.path.join(_PKG_DIR, "workloads") + os.sep,)


def _library_roots() -> tuple[str, ...]:
    roots = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            roots.add(os.path.realpath(path) + os.sep)
            roots.add(os.path.abspath(path) + os.sep)
    for prefix in {sys.base_prefix, sys.base_exec_prefix}:
        ver = f"python{sys.version_info[0]}.{sys.version_info[1]}"
        roots.add(os.path.join(prefix, "lib", ver) + os.sep)
    return tuple(sorted(roots))


_LIB_ROOTS = _library_roots()


@functools.lru_cache(maxsize=4096)
def is_user_file(path: str) -> bool:
    """True for the user's own source files (see the module docstring)."""
    if not path or path.startswith("<"):
        return False
    if path.startswith(_USER_PKG_DIRS):
        return True
    if path.startswith(_PKG_DIR + os.sep):
        return False
    parts = path.replace("\\", "/").split("/")
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    return not path.startswith(_LIB_ROOTS)


def user_site(frame: FrameType | None, max_depth: int = 64) -> tuple[str, int, str] | None:
    """``(file, line, function)`` of the innermost user frame at or above ``frame``."""
    depth = 0
    while frame is not None and depth < max_depth:
        code = frame.f_code
        if is_user_file(code.co_filename):
            return code.co_filename, frame.f_lineno or 0, code.co_name
        frame = frame.f_back
        depth += 1
    return None


def caller_site(skip: int = 1) -> tuple[str, int, str] | None:
    """The innermost user frame calling the function that calls this one."""
    try:
        frame = sys._getframe(skip + 1)
    except ValueError:
        return None
    return user_site(frame)


def site_dict(site: tuple[str, int, str] | None) -> dict[str, object] | None:
    """A ``location`` value for a :class:`~perfpilot.record.Finding`."""
    if site is None:
        return None
    return {"file": site[0], "line": site[1], "function": site[2]}


def source_line(path: str, line: int) -> str:
    """The stripped text of ``path:line`` ("" when unreadable)."""
    import linecache

    return linecache.getline(path, line).strip()
