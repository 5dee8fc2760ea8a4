"""What the training loop does besides training: evaluation, I/O, forwards that keep grad.

``eval-dominates``
    Measured: eval segments (eval-mode or no-grad forwards and the batches they consume)
    as a share of the steady window. Gain: Amdahl with evaluation run
    :data:`EVAL_FACTOR` times less often (or on a subset that size).
``io-in-loop``
    Measured: time in ``torch.save``/``load``, ``pickle``, ``numpy`` save/load during
    steady training (eval excluded), per call site; plus user lines that write files
    (``open``/``write``/``flush``...) with sampled time. Gain: Amdahl with the I/O done
    :data:`IO_FACTOR` times less often (every N steps instead of every step). Measured
    number: ``calls`` (in steady training).
``grad-in-eval``
    Measured: forwards of modules in ``eval()`` mode with grad enabled (not followed by
    a backward), with the sampled time of their call sites; a few of them were re-run
    under ``no_grad`` and timed, giving the measured cost factor of grad mode.
    Gain: Amdahl with those calls sped up by that factor (the ratios measured are the
    record's ``grad_in_eval.grad_over_nograd``).
"""

from __future__ import annotations

import dataclasses
import re
import statistics

from perfpilot.diagnose.common import MIN_STEPS, Facts, loc, make, pct, secs, source, where
from perfpilot.record import Finding, Measure
from perfpilot.record_probe_sections import IoCall

EVAL_MIN_SHARE = 0.30
EVAL_FACTOR = 4.0
IO_MIN_SHARE = 0.02
IO_FACTOR = 10.0
_IO_TEXT = re.compile(r"\bopen\(|\.write\(|\.flush\(|os\.fsync|\.savefig\(|\.to_csv\(|"
                      r"json\.dump|\.writelines\(")


def eval_dominates(f: Facts) -> list[Finding]:
    share = f.share(f.eval_s)
    mode = f.record.profile.mode
    # In a workload run, evaluation is the engine's schedule, not the user's loop.
    if not f.trains or share < EVAL_MIN_SHARE or mode == "workload":
        return []
    passes = f.record.timeline.eval_passes
    eval_loader = next((ld for ld in f.record.loaders if ld.role == "eval"), None)
    evidence = (f"Evaluation takes {pct(share)} of the run ({secs(f.eval_s)} of "
                f"{secs(f.window_s)}"
                + (f" in {passes} passes" if passes else "")
                + f"), training {pct(f.share(f.train_s))}")
    site = eval_loader.site if eval_loader else None
    if eval_loader:
        evidence += f"; each pass reads {eval_loader.dataset_len} samples"
        if site:
            evidence += f" from the DataLoader at {where(site)}"
    fix = (f"Evaluate {EVAL_FACTOR:.0f}x less often (every N steps/epochs instead of every "
           f"one) or on a fixed subset of the validation set; run it under "
           f"torch.inference_mode() with a larger batch.")
    return [make("eval-dominates", "Evaluation dominates the run", evidence + ".", fix,
                 share, EVAL_FACTOR, location=loc(site), confidence="high")]


def io_in_loop(f: Facts) -> list[Finding]:
    if f.steps < MIN_STEPS:
        return []
    out = []
    for rec in _io_sites(f):
        share = f.share(rec.seconds)
        if share < IO_MIN_SHARE:
            continue
        per_step = rec.count / max(f.steps, 1)
        each = rec.seconds / max(rec.count, 1)
        evidence = (f"{rec.call} at {where(rec.site)} ran {rec.count} times in the "
                    f"training loop ({per_step:.2g} per step, {secs(each)} each): "
                    f"{pct(share)} of the run.")
        fix = (f"Move `{source(rec.site) or rec.call}` out of the per-step path: do it "
               f"every N steps (e.g. once per epoch) or in a background thread.")
        out.append(make("io-in-loop", "File I/O inside the training loop", evidence, fix,
                        share, IO_FACTOR, location=loc(rec.site), confidence="high",
                        measured=[Measure("calls", rec.count, "count")]))
    return out


def _io_sites(f: Facts) -> list[IoCall]:
    """Hooked I/O calls in steady training (summed per line), plus sampled lines that
    write files (one call per step assumed)."""
    sites: dict[tuple[str, int], IoCall] = {}
    for r in f.record.io:
        if r.phase != "steady" or not r.site:
            continue
        key = r.site[:2]
        seen = sites.get(key)
        sites[key] = r if seen is None else dataclasses.replace(
            seen, count=seen.count + r.count, seconds=seen.seconds + r.seconds)
    for h in f.record.hot_lines:
        key = (h.file, h.line)
        steady_s = sum(v for k, v in h.tags.items() if k != "eval")
        if key in sites or steady_s <= 0:
            continue
        text = source([h.file, h.line])
        if _IO_TEXT.search(text):
            sites[key] = IoCall(call=text[:60], site=(h.file, h.line, h.function),
                                phase="steady", count=f.steps, seconds=steady_s)
    return sorted(sites.values(), key=lambda r: r.seconds, reverse=True)


def grad_in_eval(f: Facts) -> list[Finding]:
    gie = f.record.grad_in_eval
    calls = [c for c in gie.calls if c.without_backward > 0]
    if not calls:
        return []
    ratios = gie.grad_over_nograd
    factor = statistics.median(ratios) if ratios else 1.0
    hot = {(h.file, h.line): h for h in f.record.hot_lines}
    out = []
    for c in calls:
        site = c.site
        h = hot.get(site[:2]) if site else None
        share = float(h.total_share) if h else 0.0
        n = c.without_backward
        evidence = (f"{c.module} ran {n} forwards in eval() mode with autograd on "
                    f"(called at {where(site)}, {pct(share)} of the run); ")
        evidence += (f"re-running {len(ratios)} of them under no_grad measured grad mode "
                     f"{factor:.2f}x slower" if ratios else "its cost was not measured")
        evidence += ", and it keeps activations alive for a backward that never comes."
        fix = (f"Wrap the evaluation at {where(site)} in `with torch.inference_mode():` "
               f"(or torch.no_grad()).")
        out.append(make("grad-in-eval", "Evaluation builds autograd graphs it never uses",
                        evidence, fix, share, max(factor, 1.0), location=loc(site),
                        confidence="high" if ratios else "low"))
    return out
