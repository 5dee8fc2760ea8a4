"""What the training loop does besides training: evaluation, I/O, forwards that keep grad.

``eval-dominates``
    Measured: eval segments (eval-mode or no-grad forwards and the batches they consume)
    as a share of the steady window. Gain: Amdahl with evaluation run
    :data:`EVAL_FACTOR` times less often (or on a subset that size).
``io-in-loop``
    Measured: time in ``torch.save``/``load``, ``pickle``, ``numpy`` save/load during
    steady training (eval excluded), per call site; plus user lines that write files
    (``open``/``write``/``flush``...) with sampled time. Gain: Amdahl with the I/O done
    :data:`IO_FACTOR` times less often (every N steps instead of every step).
``grad-in-eval``
    Measured: forwards of modules in ``eval()`` mode with grad enabled (not followed by
    a backward), with the sampled time of their call sites; a few of them were re-run
    under ``no_grad`` and timed, giving the measured cost factor of grad mode.
    Gain: Amdahl with those calls sped up by that factor.
"""

from __future__ import annotations

import re
import statistics
from typing import Any

from perfpilot.diagnose.common import MIN_STEPS, Facts, loc, make, pct, secs, source, where
from perfpilot.record import Finding

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
    eval_loader = next((ld for ld in f.record.loaders if ld.get("role") == "eval"),
                       None)
    evidence = (f"Evaluation takes {pct(share)} of the run ({secs(f.eval_s)} of "
                f"{secs(f.window_s)}"
                + (f" in {passes} passes" if passes else "")
                + f"), training {pct(f.share(f.train_s))}")
    if eval_loader:
        evidence += f"; each pass reads {eval_loader.get('dataset_len')} samples"
        if eval_loader.get("site"):
            evidence += f" from the DataLoader at {where(eval_loader['site'])}"
    fix = (f"Evaluate {EVAL_FACTOR:.0f}x less often (every N steps/epochs instead of every "
           f"one) or on a fixed subset of the validation set; run it under "
           f"torch.inference_mode() with a larger batch.")
    return [make("eval-dominates", "Evaluation dominates the run", evidence + ".", fix,
                 share, EVAL_FACTOR, location=loc(eval_loader and eval_loader.get("site")),
                 confidence="high")]


def io_in_loop(f: Facts) -> list[Finding]:
    if f.steps < MIN_STEPS:
        return []
    out = []
    for rec in _io_sites(f):
        share = f.share(rec["seconds"])
        if share < IO_MIN_SHARE:
            continue
        per_step = rec["count"] / max(f.steps, 1)
        each = rec["seconds"] / max(rec["count"], 1)
        evidence = (f"{rec['call']} at {where(rec['site'])} ran {rec['count']} times in the "
                    f"training loop ({per_step:.2g} per step, {secs(each)} each): "
                    f"{pct(share)} of the run.")
        fix = (f"Move `{source(rec['site']) or rec['call']}` out of the per-step path: do it "
               f"every N steps (e.g. once per epoch) or in a background thread.")
        out.append(make("io-in-loop", "File I/O inside the training loop", evidence, fix,
                        share, IO_FACTOR, location=loc(rec["site"]), confidence="high",
                        calls=rec["count"]))
    return out


def _io_sites(f: Facts) -> list[dict[str, Any]]:
    """Hooked I/O calls in steady training, plus sampled lines that write files."""
    sites: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in f.record.io:
        if r.get("phase") != "steady" or not r.get("site"):
            continue
        key = tuple(r["site"][:2])
        entry = sites.setdefault(key, {"call": r["call"], "site": r["site"], "count": 0,
                                       "seconds": 0.0})
        entry["count"] += r["count"]
        entry["seconds"] += r["seconds"]
    for h in f.record.hot_lines:
        key = (h.file, h.line)
        steady_s = sum(v for k, v in h.tags.items() if k != "eval")
        if key in sites or steady_s <= 0:
            continue
        text = source([h.file, h.line])
        if _IO_TEXT.search(text):
            sites[key] = {"call": text[:60], "site": [h.file, h.line, h.function],
                          "count": f.steps, "seconds": steady_s}
    return sorted(sites.values(), key=lambda r: r["seconds"], reverse=True)


def grad_in_eval(f: Facts) -> list[Finding]:
    gie = f.record.grad_in_eval
    calls = [c for c in gie.get("calls", []) if c["calls"] - c.get("then_backward", 0) > 0]
    if not calls:
        return []
    ratios = gie.get("grad_over_nograd") or []
    factor = statistics.median(ratios) if ratios else 1.0
    hot = {(h.file, h.line): h for h in f.record.hot_lines}
    out = []
    for c in calls:
        site = c.get("site")
        h = hot.get((site[0], site[1])) if site else None
        share = float(h.total_share) if h else 0.0
        n = c["calls"] - c.get("then_backward", 0)
        evidence = (f"{c['module']} ran {n} forwards in eval() mode with autograd on "
                    f"(called at {where(site)}, {pct(share)} of the run); ")
        evidence += (f"re-running {len(ratios)} of them under no_grad measured grad mode "
                     f"{factor:.2f}x slower" if ratios else "its cost was not measured")
        evidence += ", and it keeps activations alive for a backward that never comes."
        fix = (f"Wrap the evaluation at {where(site)} in `with torch.inference_mode():` "
               f"(or torch.no_grad()).")
        out.append(make("grad-in-eval", "Evaluation builds autograd graphs it never uses",
                        evidence, fix, share, max(factor, 1.0), location=loc(site),
                        confidence="high" if ratios else "low", ratios=ratios))
    return out
