"""``dataloader-bound``: the training loop waits for batches.

Measured: the ``data`` phase (time inside ``next(loader_iter)`` and ``iter(loader)``) as a
share of the steady window. Fix: load in parallel worker processes (``num_workers``),
keep them alive across epochs (``persistent_workers``) and, on CUDA, pin memory.
Gain: Amdahl with the data share sped up by the number of workers suggested (loading
in ``w`` workers is at best ``w`` times faster; the overlap with compute that workers
also bring is not counted, so the estimate is conservative). Measured numbers: the
hottest loading line's share of the run (``hot_line_share``) and of the loading time
(``hot_line_of_loading``), at that line; the loader itself is the record's ``loaders``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from perfpilot.diagnose.common import MIN_STEPS, Facts, loc, make, pct, secs, source, where
from perfpilot.record import Finding, Measure
from perfpilot.record_sections import Frame

MIN_SHARE = 0.10
_FOR_LINE = re.compile(r"\s*(async\s+)?for\b")
MAX_WORKERS = 8


def suggested_workers(current: int, cores: int) -> int | None:
    """Workers to try: from none, one per usable core (2 to 4); else twice as many, up to
    the usable cores and :data:`MAX_WORKERS`, always more than now; None when the loader
    already has a worker per usable core (more processes would only take turns on the
    same cores: the advice is then to make loading cheaper, not to add workers)."""
    if current == 0:
        return min(max(cores, 2), 4)
    if current >= max(cores, 2) or current >= MAX_WORKERS:
        return None
    return max(current + 1, min(2 * current, max(cores, 2), MAX_WORKERS))


def dataloader_bound(f: Facts) -> list[Finding]:
    data_s = f.totals.get("data", 0.0)
    share = f.share(data_s)
    if f.steps < MIN_STEPS or share < MIN_SHARE:
        return []
    ld = f.train_loader()
    site = ld.site if ld else None
    workers = ld.num_workers if ld else 0
    cores = int(f.record.threads.usable_cores or 2)
    hot = _hot_loading_line(f)
    evidence = (f"Waiting for the next batch is {pct(share)} of the run "
                f"({secs(f.per_step.get('data', 0.0))} of a {secs(f.step_s)} step)")
    if ld:
        built = f" built at {where(site)}" if site else ""
        evidence += f"; the DataLoader{built} uses num_workers={workers}"
    if hot is not None:
        evidence += (f"; {pct(hot.of_loading)} of the loading time is in "
                     f"{hot.site[2]}() at {where(hot.site)}")
    evidence += "."
    iter_share = f.share(ld.iter_s if ld else 0.0)
    if ld and workers > 0 and not ld.persistent_workers and iter_share >= 0.5 * share:
        return [make("dataloader-bound", "Training waits for DataLoader workers to start",
                     evidence + f" Starting workers each epoch costs {pct(iter_share)}.",
                     "DataLoader(..., persistent_workers=True) so workers survive epochs.",
                     iter_share, float("inf"), location=loc(site),
                     confidence="high", plan_change={"persistent_workers": True})]
    w = suggested_workers(workers, cores)
    if w is None:
        return [_every_core_loading(f, evidence, share, workers, cores, site, hot)]
    cuda = f.record.cuda.measured
    args = f"num_workers={w}, persistent_workers=True" + (", pin_memory=True" if cuda else "")
    change: dict[str, Any] = {"num_workers": w, "persistent_workers": True}
    if cuda:
        change["pin_memory"] = True
    fix = f"DataLoader(..., {args}) to load batches in parallel with training"
    if f.record.profile.mode == "workload":
        fix = ("Set " + ", ".join(f'"{k}": {str(v).lower()}' for k, v in change.items())
               + " in the plan (or let `perfpilot tune --only loader` pick them)")
    if hot is not None and workers > 0:
        fix += f", and make {hot.site[2]}() cheaper ({where(hot.site)})"
    factor = w / max(workers, 1) if workers else float(w)
    measured = [] if hot is None else [
        Measure("hot_line_share", hot.share, "fraction", hot.site),
        Measure("hot_line_of_loading", hot.of_loading, "fraction", hot.site)]
    return [make("dataloader-bound", "Training waits for data loading", evidence, fix + ".",
                 share, factor, location=loc(site) or loc(hot and hot.site),
                 confidence="high" if share >= 0.3 else "medium", plan_change=change,
                 measured=measured)]


def _every_core_loading(f: Facts, evidence: str, share: float, workers: int, cores: int,
                        site: Any, hot: _HotLoadingLine | None) -> Finding:
    """Data-bound with a worker per usable core already: no setting to change. The gain
    is the ceiling (loading made free), stated as such, at low confidence."""
    cheaper = (f"make {hot.site[2]}() cheaper ({where(hot.site)}), " if hot is not None
               else "make each sample cheaper to load, ")
    fix = (f"The loader already runs {workers} workers on {cores} usable cores, so more "
           f"workers would only share the same cores: {cheaper}or precompute and cache the "
           "transformed samples once, outside training.")
    measured = [] if hot is None else [
        Measure("hot_line_share", hot.share, "fraction", hot.site),
        Measure("hot_line_of_loading", hot.of_loading, "fraction", hot.site)]
    return make("dataloader-bound", "Training waits for data loading on every core",
                evidence + " The estimated gain is the ceiling: loading made free.", fix,
                share, float("inf"), location=loc(site) or loc(hot and hot.site),
                confidence="low", measured=measured)


@dataclass(frozen=True)
class _HotLoadingLine:
    site: Frame
    share: float  # of the run
    of_loading: float  # of the sampled loading time


def _hot_loading_line(f: Facts) -> _HotLoadingLine | None:
    """The user line (in the dataset/collate code, not the loop's own ``for`` line) with the
    most self time while fetching batches, and its fraction of the sampled loading time."""
    best, total = None, 0.0
    for h in f.record.hot_lines:
        sec = h.tags.get("data", 0.0)
        total += sec
        if _FOR_LINE.match(source([h.file, h.line])):
            continue
        if sec > 0 and (best is None or sec > best[0]):
            best = (sec, h)
    if best is None:
        return None
    h = best[1]
    return _HotLoadingLine((h.file, h.line, h.function), f.share(best[0]), best[0] / total)
