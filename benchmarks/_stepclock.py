"""Run a training script unmodified and note when each training step ends.

    python benchmarks/_stepclock.py OUT STOP script.py ARGS...

The script runs as ``__main__`` (``runpy``, its directory first on ``sys.path``, as
``python script.py`` would). Two clocks are kept, one ``time.perf_counter()`` appended per
event: the end of every ``Tensor.backward()`` / ``torch.autograd.backward()`` call and
every ``Optimizer.step()`` (torch's global step post-hook). That is all it adds to the
run: the "plain" arm of ``benchmarks/real_scripts.py`` (and the script under py-spy) runs
through it, so a plain per-step time exists to compare with a profiler's.

``STOP`` is ``0`` (run the script to its end) or ``KIND:N`` (``optimizer:12``,
``backward:12``): after the N-th event of that kind the run ends with ``os._exit(0)``, as
``perfpilot profile --steps`` ends its window (DataLoader workers terminated first), for
a script whose own arguments cannot
keep it short (``imagenet --dummy`` trains on 1.28 M fake images).

``OUT`` gets ``{"t0", "end", "exit_code", "backward": [...], "optimizer": [...],
"stopped"}`` (seconds of ``perf_counter``; ``t0`` is taken before the script starts).
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import time

T0 = time.perf_counter()


def end_now() -> None:
    """Leave at once, as ``perfpilot profile``'s window end does: flush the script's
    output, terminate daemonic ``multiprocessing`` children (DataLoader workers, which
    would otherwise linger until their watchdog notices, holding the caller's pipes), and
    ``os._exit(0)``."""
    import multiprocessing as mp

    sys.stdout.flush()
    sys.stderr.flush()
    children = [p for p in mp.active_children() if p.daemon]
    for p in children:
        p.terminate()
    for p in children:
        p.join(1.0 / max(len(children), 1))
    os._exit(0)


def main() -> None:
    out, stop_at, script, *args = sys.argv[1:]
    stop_kind, _, n = stop_at.partition(":")
    stop = int(n) if n else 0
    marks: dict[str, list[float]] = {"backward": [], "optimizer": []}
    state = {"stopped": False}

    def write(code: int) -> None:
        with open(out, "w") as f:
            json.dump({"t0": T0, "end": time.perf_counter(), "exit_code": code,
                       "stopped": state["stopped"], **marks}, f)

    def mark(kind: str) -> None:
        marks[kind].append(time.perf_counter())
        if stop and kind == stop_kind and len(marks[kind]) >= stop:
            state["stopped"] = True
            write(0)
            end_now()

    import torch
    import torch.optim.optimizer as opt

    real_backward = torch.autograd.backward

    def backward(*a, **kw):  # Tensor.backward calls torch.autograd.backward
        try:
            return real_backward(*a, **kw)
        finally:
            mark("backward")

    torch.autograd.backward = backward
    opt.register_optimizer_step_post_hook(lambda *_: mark("optimizer"))
    sys.argv = [script, *args]
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    write(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
