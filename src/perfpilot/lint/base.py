"""What a rule reports (:class:`Hit`) and what it declares about itself (:class:`Rule`).

A rule is a plain function ``check(ctx) -> Iterator[Hit]`` plus a :class:`Rule` record of
its id, the fix in one line, and how to turn measured time into an estimated gain:
``measure`` says whether the fix acts on the flagged line's time or on its enclosing
loop's, and ``factor`` is the conservative speed-up assumed for that part (used with
:func:`perfpilot.record.amdahl`); ``assumption`` states it in words for the evidence.
"""

from __future__ import annotations

import io
import tokenize
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from perfpilot.lint.context import FileContext, Loop
from perfpilot.record import Confidence

Measure = Literal["line", "loop"]


@dataclass(frozen=True)
class Span:
    """An enclosing loop as lines ``[line, end_line]`` (inclusive)."""

    line: int
    end_line: int

    @classmethod
    def of(cls, loop: Loop | None) -> Span | None:
        return None if loop is None else cls(loop.line, loop.end_line)


@dataclass(frozen=True)
class Hit:
    """One place where a rule applies, before any measurement is joined to it."""

    rule: str
    file: Path
    line: int
    title: str
    evidence: str
    fix: str
    loop: Span | None = None        # the loop whose time the fix acts on, if any
    depth: int = 0                  # loops around the line (nested first without profile)
    column: int = 0
    diff: tuple[str, ...] = ()      # short "- old" / "+ new" lines
    confidence: Confidence = "high"
    source: Literal["perfpilot", "ruff"] = "perfpilot"
    also: tuple[str, ...] = ()      # other tools' ids that flagged the same line
    gain: tuple[Measure, float, str] | None = None  # overrides the rule's gain model


@dataclass(frozen=True)
class Rule:
    """A rule family member: its id, one-line fix and the gain model of its fix."""

    id: str
    summary: str
    measure: Measure
    factor: float
    assumption: str
    weight: int                     # static severity: 3 quadratic, 2 n log n, 1 constant
    check: Callable[[FileContext], Iterator[Hit]]


def hit(ctx: FileContext, rule: str, node: object, *, title: str, evidence: str, fix: str,
        loops: tuple[Loop, ...] = (), loop: Loop | None = None, diff: tuple[str, ...] = (),
        confidence: Confidence = "high",
        gain: tuple[Measure, float, str] | None = None) -> Hit:
    """A :class:`Hit` at ``node``; ``loop`` defaults to the innermost of ``loops``."""
    chosen = loop if loop is not None else (loops[-1] if loops else None)
    return Hit(rule=rule, file=ctx.path, line=node.lineno, title=title,  # type: ignore[attr-defined]
               evidence=evidence, fix=fix, loop=Span.of(chosen), depth=len(loops),
               column=node.col_offset, diff=diff, confidence=confidence,  # type: ignore[attr-defined]
               gain=gain)


def where(loop: Loop) -> str:
    """``the loop at line 12`` / ``the comprehension at line 12``."""
    noun = "comprehension" if loop.kind == "comprehension" else f"{loop.kind} loop"
    return f"the {noun} at line {loop.line}"


def rewrite_line(ctx: FileContext, node: object, new_text: str) -> tuple[str, str] | None:
    """``("- old line", "+ new line")`` with ``node``'s text replaced, if on one line."""
    line, end = node.lineno, node.end_lineno  # type: ignore[attr-defined]
    if line != end or not 0 < line <= len(ctx.lines):
        return None
    text = strip_comment(ctx.lines[line - 1])
    # col offsets are UTF-8 byte offsets; slice bytes so non-ASCII lines stay right.
    raw = text.encode()
    start, stop = node.col_offset, node.end_col_offset  # type: ignore[attr-defined]
    new = (raw[:start] + new_text.encode() + raw[stop:]).decode(errors="replace")
    return f"- {text.strip()}", f"+ {new.strip()}"


def line_diff(ctx: FileContext, node: object, new_text: str) -> tuple[str, ...]:
    pair = rewrite_line(ctx, node, new_text)
    return pair if pair is not None else ()


def source_lines(ctx: FileContext, sign: str, lines: list[int]) -> list[str]:
    """``sign``-prefixed source lines, indented relative to the first one."""
    raw = [ctx.lines[n - 1] if 0 < n <= len(ctx.lines) else "" for n in lines]
    if not raw:
        return []
    base = len(raw[0]) - len(raw[0].lstrip())
    out = []
    for text in raw:
        indent = len(text) - len(text.lstrip())
        out.append(f"{sign} {' ' * max(indent - base, 0)}{strip_comment(text).strip()}")
    return out


def strip_comment(text: str) -> str:
    """``text`` without a trailing ``# comment`` (diffs show code, not the old comments)."""
    if "#" not in text:
        return text
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text.strip() + "\n").readline):
            if tok.type == tokenize.COMMENT:
                cut = len(text) - len(text.lstrip()) + tok.start[1]
                return text[:cut].rstrip()
    except (tokenize.TokenError, SyntaxError):  # part of a multi-line statement
        pass
    return text
