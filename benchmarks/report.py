"""Write ``docs/benchmarks.md`` from ``benchmarks/results/*.json``.

    .venv/bin/python benchmarks/report.py                       # the repository's results
    .venv/bin/python benchmarks/report.py --results DIR --out FILE

Every figure on the page is read from a results file (nothing is typed in here). Each
benchmark owns its section: its script (``OWNERS``) defines ``SECTION``
(:class:`_context.Section`: where it goes, the results files it reads, the function that
writes its markdown, with the machine and load its file ran under and the command that
reruns it; "not run yet" and that command when the file is missing). This collector
loads the results and the sections, writes the intro, the sections in order, "Other
results" for files no section claims, and the GPU section (``_page.py``).
``benchmarks/run_all`` calls this at the end of every run.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.machinery
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DOC = ROOT / "docs" / "benchmarks.md"

sys.path.insert(0, str(HERE))  # the benchmarks are sibling scripts, not a package
from _context import Context, Section  # noqa: E402
from _page import intro, section_gpu, section_others  # noqa: E402

# The benchmark scripts that own a section of the page (each defines ``SECTION``).
OWNERS = ("profilers", "profile_overhead", "real_scripts", "batch_size", "tuned",
          "tune_scripts", "pmap", "hardware", "final_check", "demo", "tune_budget",
          "measure_calibration", "workloads", "long_runs")


# ---------------------------------------------------------------- loading


def file_hashes(results_dir: Path) -> dict[str, str]:
    return {p.stem: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(results_dir.glob("*.json"))}


def load_results(results_dir: Path) -> dict[str, Any]:
    """``{stem: parsed JSON}`` of every ``*.json`` in the folder (unreadable files map to
    ``{"_error": why}``)."""
    out: dict[str, Any] = {}
    for p in sorted(results_dir.glob("*.json")):
        try:
            out[p.stem] = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            out[p.stem] = {"_error": f"{type(e).__name__}: {e}"}
    return out


def load_run_all() -> Any:
    """The ``benchmarks/run_all`` module (no ``.py`` suffix), for its plan; None if it
    cannot be loaded."""
    path = HERE / "run_all"
    try:
        loader = importlib.machinery.SourceFileLoader("perfpilot_bench_run_all", str(path))
        spec = importlib.util.spec_from_loader(loader.name, loader)
        assert spec is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[loader.name] = mod  # dataclasses look their module up
        loader.exec_module(mod)
        return mod
    except (OSError, ImportError, SyntaxError, AssertionError):
        return None


def sections() -> list[Section]:
    """Every owner's ``SECTION``, in page order."""
    return sorted((importlib.import_module(name).SECTION for name in OWNERS),
                  key=lambda s: s.order)


def render(results: dict[str, Any], run_all: Any = None,
           hashes: dict[str, str] | None = None) -> str:
    ctx = Context(results, run_all, hashes)
    owned = sections()
    known = {"run_all", *(f for s in owned for f in s.files)}
    parts = [intro(ctx), *(s.render(ctx) for s in owned), section_others(ctx, known),
             section_gpu(ctx)]
    text = "\n".join(line for part in parts for line in part)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of results JSONs")
    ap.add_argument("--out", type=Path, default=DOC, help="markdown file to write")
    args = ap.parse_args(argv)
    text = render(load_results(args.results), load_run_all(), file_hashes(args.results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
