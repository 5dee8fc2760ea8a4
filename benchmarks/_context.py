"""What a benchmark's section needs besides its results file, and its common header.

A section is rendered from a :class:`Context`: every results file (``{stem: parsed
JSON}``), ``benchmarks/run_all``'s record of the run that wrote them and its plan (for the
command that reruns a benchmark). :func:`header` writes a section's title, the machine and
load its file was measured under, and that command; a missing or unreadable file gets
"not run yet" or "could not be read" and the command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from _fmt import Doc, load_str, secs

PY = ".venv/bin/python"


@dataclass(frozen=True)
class Section:
    """A benchmark's part of the page: where it goes (``order``, ascending), the results
    files it reads (stems; the page lists the files no section claims under "Other
    results"), and the function that writes its markdown lines."""

    order: int
    files: tuple[str, ...]
    render: Callable[[Context], list[str]]


def readable(doc: Any) -> bool:
    """Whether a results file was found and parsed (a dict without ``_error``)."""
    return isinstance(doc, dict) and "_error" not in doc


def find_key(doc: Any, keys: tuple[str, ...], depth: int = 3) -> Any:
    """The first value under any of ``keys``, searching objects breadth-first."""
    level = [doc]
    for _ in range(depth + 1):
        nxt = []
        for d in level:
            if isinstance(d, dict):
                for k in keys:
                    if d.get(k) is not None:
                        return d[k]
                nxt += [v for v in d.values() if isinstance(v, (dict, list))]
            elif isinstance(d, list):
                nxt += [v for v in d if isinstance(v, (dict, list))]
        level = nxt
    return None


LOAD_BEFORE = ("loadavg_before", "loadavg_start", "load_avg_start", "load_before")
LOAD_AFTER = ("loadavg_after", "loadavg_end", "load_avg_end", "load_after")
CORES = ("usable_cores", "cores", "cpu_count", "logical_cores")


def cpu_model(doc: Any) -> str | None:
    """The CPU model a results file recorded (``machine.cpu.model`` or ``cpu_model``)."""
    if not isinstance(doc, dict):
        return None
    m = doc.get("machine") if isinstance(doc.get("machine"), dict) else {}
    cpu = m.get("cpu") if isinstance(m.get("cpu"), dict) else {}
    return cpu.get("model") or m.get("cpu_model") or doc.get("cpu_model")


class Context:
    """What a section needs besides its results file: run_all's record and plan."""

    def __init__(self, results: dict[str, Any], run_all: Any,
                 hashes: dict[str, str] | None = None) -> None:
        self.results, self.run_all, self.hashes = results, run_all, hashes or {}
        rec = results.get("run_all")
        self.record: Doc = rec if isinstance(rec, dict) and "_error" not in rec else {}

    def step(self, name: str) -> Doc:
        """run_all's entry for the step that wrote ``name``.json, while that file is still
        the one the step wrote (a later direct run of the script replaces it)."""
        st = (self.record.get("steps") or {}).get(name) or {}
        made = (st.get("results_sha256") or {}).get(f"{name}.json")
        if made and self.hashes.get(name) and made != self.hashes[name]:
            return {}
        return st

    def full_command(self, name: str, script: str) -> str:
        if self.run_all is not None:
            for p in self.run_all.plan(quick=False):
                if p.step.name == name:
                    return p.command
        return f"{PY} benchmarks/{script}"

    def rerun(self, name: str, script: str) -> str:
        steps = self.run_all.STEPS if self.run_all is not None else ()
        group = next((s.benchmark for s in steps if s.name == name), None)
        tail = (f" (or `{PY} benchmarks/run_all --only {group}`, `--quick` for smaller "
                "sizes)" if group else " (not part of `benchmarks/run_all`)")
        return f"Rerun: `{self.full_command(name, script)}`{tail}."

    def provenance(self, name: str, doc: Any) -> str:
        """Machine, load and how the file was produced, in one line."""
        st = self.step(name)
        machine = cpu_model(doc) or (st.get("machine") or {}).get("cpu_model")
        cores = find_key(doc, CORES, 2) or (st.get("machine") or {}).get("usable_cores")
        before = find_key(doc, LOAD_BEFORE) or st.get("loadavg_before")
        after = find_key(doc, LOAD_AFTER) or st.get("loadavg_after")
        when = (find_key(doc, ("measured_at",), 1) or st.get("finished_at"))
        parts = []
        if machine or cores:
            parts.append(f"machine: {machine or 'CPU model not recorded'}"
                         + (f", {cores} usable cores" if cores else ""))
        parts.append(f"load average (1 min) {load_str(before, after)}")
        if st.get("mode"):
            parts.append(f"{st['mode']} run by run_all"
                         + (f" in {secs(st.get('wall_s'))}" if "wall_s" in st else "")
                         + (f": `{st['command']}`" if st.get("command") else ""))
        if when:
            parts.append(f"finished {when}")
        return "*" + "; ".join(parts) + ".*"


def header(ctx: Context, title: str, name: str, script: str, doc: Any) -> list[str]:
    out = [f"## {title}", ""]
    if doc is None:
        out += [f"Not run yet (`benchmarks/results/{name}.json` is missing). "
                + ctx.rerun(name, script), ""]
        return out
    if isinstance(doc, dict) and "_error" in doc:
        out += [f"`benchmarks/results/{name}.json` could not be read ({doc['_error']}). "
                + ctx.rerun(name, script), ""]
        return out
    out += [ctx.provenance(name, doc), "", ctx.rerun(name, script), ""]
    return out
