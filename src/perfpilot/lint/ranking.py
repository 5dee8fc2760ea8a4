"""Join lint hits with measured time and rank them.

Measured time comes from a :class:`~perfpilot.record.RunRecord`'s ``stack_samples``
section (see :mod:`perfpilot.record_sections`); a record with only ``hot_lines`` also works.

- A line's share is the fraction of samples with any frame on that line (inclusive).
- A loop's share is the fraction of samples with any frame in its file on a line in
  ``[loop.line, loop.end_line]``. Each sample counts once, so nested calls and several
  hot lines in one loop are never double counted (summing per-line inclusive shares
  would).
- A line inside a loop also gets an *attributed* share: samples on the line, plus samples
  whose innermost frame is the loop's own code. Why: an in-process sampler (a thread
  reading ``sys._current_frames()``, or a signal handler) can only stop the interpreter
  where it checks for pending work, at loop back-edges and calls, never inside one
  C-level operation such as ``x in big_list``; that time lands on the back-edge or the
  next call in the same loop, not on its own line. Time in Python functions called from
  the loop's other lines is not attributed (their frames are deeper). It is an upper
  bound on the line's own time; with ``hot_lines`` only, the sum of the loop's lines'
  self shares stands in for the loop's own samples.

Each finding's ``time_share`` is the share its fix acts on (per rule: the line's
attributed share, or the loop's share) and ``estimated_speedup`` is
``amdahl(time_share, factor)`` with the rule's stated, conservative factor. Findings in
code under ``min_share`` of the run (line and loop) are demoted below the others.
Without a record, ``estimated_speedup`` is 1.0 and the order is static: deeper loop
nests first, then the rule's severity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from perfpilot.lint.base import Hit, Rule, Span
from perfpilot.record import Finding, LintDetail, LoopSpan, RunRecord, amdahl
from perfpilot.record_sections import StackSamples

MIN_SHARE = 0.01
_ALL = (1, 10**9)


def norm_path(path: str | os.PathLike[str]) -> str:
    """The form files are compared in: absolute, symlinks resolved, case-normalized."""
    return os.path.normcase(os.path.realpath(os.fspath(path)))


@dataclass(frozen=True)
class _Stack:
    lines: dict[str, frozenset[int]]  # file -> lines of its frames in this stack
    leaf: tuple[str, int] | None      # innermost frame
    weight: float                     # samples, or seconds when time-weighted


@dataclass(frozen=True)
class ProfileIndex:
    """Sample weights by file and line, built once from a record."""

    total: float  # samples (or seconds) in the run, each tick once
    stacks: tuple[_Stack, ...]
    hot: dict[tuple[str, int], tuple[float, float]]  # hot_lines (total, self) shares
    basis: str  # what the shares are fractions of, for the evidence text

    @classmethod
    def from_record(cls, record: RunRecord) -> ProfileIndex | None:
        """None when the record has neither ``stack_samples`` nor ``hot_lines``."""
        if record.stack_samples.stacks:
            return cls._from_stacks(record.stack_samples)
        if record.hot_lines:
            table = {(norm_path(h.file), int(h.line)): (float(h.total_share), float(h.self_share))
                     for h in record.hot_lines}
            return cls(0.0, (), table, "hot_lines")
        return None

    @classmethod
    def _from_stacks(cls, section: StackSamples) -> ProfileIndex:
        raw = section.stacks
        # Time-weighted when the sampler says how much wall time each stack covered (a
        # tick delayed by the GIL covers more time); else by sample count.
        timed = bool(section.seconds) and all(s.seconds is not None for s in raw)
        cache: dict[str, str] = {}
        stacks = []
        for s in raw:
            lines: dict[str, set[int]] = {}
            leaf = None
            for file, line, *_ in s.frames:
                key = cache.get(file) or cache.setdefault(file, norm_path(file))
                lines.setdefault(key, set()).add(int(line))
                leaf = (key, int(line))
            weight = float(s.seconds or 0.0) if timed else float(s.count)
            stacks.append(_Stack({f: frozenset(v) for f, v in lines.items()}, leaf, weight))
        # ``total``/``seconds`` count each tick once; stacks of several threads may sum
        # to more, and idle threads must not dilute the main thread's shares.
        declared = float((section.seconds if timed else section.total) or 0.0)
        total = declared if declared > 0 else sum(st.weight for st in stacks)
        ticks = int(section.total or sum(s.count for s in raw))
        basis = f"{ticks} stack samples" + (", time-weighted" if timed else "")
        return cls(total, tuple(stacks), {}, basis)

    def line_share(self, file: str, line: int) -> float:
        return self.span_share(file, line, line)

    def span_share(self, file: str, start: int, end: int) -> float:
        """Fraction of samples with a frame in ``file`` on a line in ``[start, end]``."""
        if not self.stacks:
            return max(self._hot(file, start, end, 0), default=0.0)
        return self._fraction(lambda st: _in(st.lines.get(file, ()), start, end))

    def attributed_share(self, file: str, line: int, loop: Span | None) -> float:
        """Samples on ``line`` or whose innermost frame is in ``loop`` (see module doc)."""
        if loop is None:
            return self.line_share(file, line)
        if not self.stacks:
            own = sum(self._hot(file, loop.line, loop.end_line, 1))
            return min(max(self.line_share(file, line), own), 1.0)

        def counted(st: _Stack) -> bool:
            leaf_in_loop = (st.leaf is not None and st.leaf[0] == file
                            and loop.line <= st.leaf[1] <= loop.end_line)
            return leaf_in_loop or line in st.lines.get(file, ())

        return self._fraction(counted)

    def file_share(self, file: str) -> float:
        return self.span_share(file, *_ALL)

    def files(self) -> list[str]:
        if self.stacks:
            return sorted({f for st in self.stacks for f in st.lines})
        return sorted({f for f, _ in self.hot})

    def _fraction(self, pred: Any) -> float:
        hit = sum(st.weight for st in self.stacks if pred(st))
        return min(hit / self.total, 1.0) if self.total else 0.0

    def _hot(self, file: str, start: int, end: int, which: int) -> list[float]:
        return [v[which] for (f, ln), v in self.hot.items() if f == file and start <= ln <= end]


def _in(lines: frozenset[int] | tuple, start: int, end: int) -> bool:
    return any(start <= ln <= end for ln in lines)


def to_finding(hit: Hit, rule: Rule | None, index: ProfileIndex | None,
               min_share: float = MIN_SHARE) -> Finding:
    """A :class:`Finding` for ``hit``, with measured shares and a gain when profiled."""
    measure, factor, assumption = hit.gain or (rule.measure, rule.factor, rule.assumption)  # type: ignore[union-attr]
    evidence, share, speedup = hit.evidence, None, 1.0
    line_s = own_s = loop_s = None
    demoted = False
    if index is not None:
        file = norm_path(hit.file)
        line_s = index.line_share(file, hit.line)
        loop_s = None if hit.loop is None else index.span_share(file, hit.loop.line,
                                                                hit.loop.end_line)
        own_s = index.attributed_share(file, hit.line, hit.loop)
        share = loop_s if measure == "loop" and loop_s is not None else own_s
        speedup = amdahl(share, factor)
        demoted = max(line_s, own_s, loop_s or 0.0) < min_share
        evidence += " " + _measured(index, hit, (line_s, own_s, loop_s), demoted,
                                    min_share, assumption, speedup, measure)
    detail = LintDetail(also=tuple(hit.also), diff=tuple(hit.diff), loop_share=loop_s,
                        loop_depth=hit.depth, severity=rule.weight if rule else 1,
                        source=hit.source, column=hit.column,
                        loop=None if hit.loop is None else LoopSpan(hit.loop.line,
                                                                    hit.loop.end_line),
                        measure=measure, assumption=assumption, line_share=line_s,
                        attributed_share=own_s)
    return Finding(id=hit.rule, title=hit.title, evidence=evidence, fix=hit.fix,
                   estimated_speedup=speedup, location={"file": str(hit.file), "line": hit.line},
                   confidence=hit.confidence, time_share=share, factor=factor,
                   demoted=demoted, lint=detail)


def _measured(index: ProfileIndex, hit: Hit, shares: tuple[float, float, float | None],
              demoted: bool, min_share: float, assumption: str, speedup: float,
              measure: str) -> str:
    line_s, own_s, loop_s = shares
    text = f"Measured ({index.basis}): line {line_s:.1%} of the run"
    if loop_s is not None and hit.loop is not None:
        text += (f"; with its loop's own samples {own_s:.1%}; the loop (lines "
                 f"{hit.loop.line}-{hit.loop.end_line}) {loop_s:.1%}")
    if demoted:
        return text + f". Under {min_share:.0%} of the run, so demoted."
    part = "the loop's share" if measure == "loop" and loop_s is not None else (
        "the line's attributed share" if loop_s is not None else "the line's share")
    return text + (f". Assuming {assumption} (applied to {part}), the whole run would be "
                   f"{speedup:.2f}x faster.")


def rank(findings: list[Finding], *, profiled: bool) -> list[Finding]:
    """Profiled: by estimated speedup (from measured time), demoted last; else static."""
    def static(f: Finding) -> tuple:
        loc = f.location or {}
        detail = f.lint or LintDetail()
        return (-detail.loop_depth, -detail.severity,
                loc.get("file", ""), loc.get("line", 0))

    if not profiled:
        return sorted(findings, key=static)
    return sorted(findings, key=lambda f: (f.demoted,
                                           -f.estimated_speedup, -(f.time_share or 0.0),
                                           static(f)))
