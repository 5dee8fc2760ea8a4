"""Step boundaries and phase times of an arbitrary training script, from hook events.

The hooks (:mod:`perfpilot.probes.hooks`) report what the main thread enters and leaves
(a DataLoader fetch, a root module's forward, backward, an optimizer step, an I/O call).
The tracker cuts the timeline into *slices* at every event and labels each slice with
what was running (``data``, ``h2d``, ``forward``, ``backward``, ``optimizer``, ``io``,
or ``other`` for the user's own code in between). Three step definitions are kept at
once and the best one is chosen at the end:

``optimizer``
    a step ends when ``optimizer.step()`` returns (training scripts);
``backward``
    a step ends when ``backward()`` returns (training that updates parameters by hand,
    without ``torch.optim``: one backward is one step);
``data``
    a step starts at each batch fetch (inference scripts that iterate a DataLoader);
``forward``
    a step starts at each root-module forward (inference without a DataLoader).

Forwards of loss/criterion modules (the hooks tell, see ``forward_begin(step=False)``)
are forward time but never a boundary.

A *closure* (``optimizer.step(closure)``: Lightning's automatic optimization, LBFGS) runs
the forward and backward inside the optimizer step. Those keep their own labels, and the
step's own time is split: until the closure's first forward/backward it is held (if none
comes it was all the update: ``optimizer``), from then until the closure's backward ends
it is the closure's code (``other``, as in a loop without a closure: the training_step's
Python, logging), after that the update again (``optimizer``).

Samples per training step are the batches the training loader yielded in it, else the
batch dimension of its training forwards.

Evaluation is kept out of training steps: a *segment* of eval-mode forwards (``eval()``
or grad disabled) together with the batches they consume is labelled ``eval``. A lone
eval-mode forward inside a training step (a frozen teacher) is not evaluation and stays
``forward``.

Timeline: ``startup`` runs from process start to the first activity (imports, building
data and model); the first steps until :attr:`StepTracker.warmup_end` are warm-up; the
*steady window* runs from the end of warm-up to the end of the script. Findings use
shares of the steady window. The clock is injectable; nothing here imports torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from perfpilot.probes.step_series import MAX_STEPS_KEPT, StepSeries

LABELS: tuple[str, ...] = ("data", "h2d", "forward", "backward", "optimizer", "io", "other")
STEP_KINDS: tuple[str, ...] = ("optimizer", "backward", "data", "forward")
WARMUP_BOUNDARIES = 2
MAX_SEGMENTS_KEPT = 1000


class StepTracker:
    """Turns hook events into labelled time slices and steps (see the module docstring).

    Every event method takes no time argument: it reads ``clock()``. ``process_start``
    is the process creation time on the same clock (for the startup figure).
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter,
                 process_start: float | None = None) -> None:
        self.clock = clock
        now = clock()
        self.process_start = now if process_start is None else process_start
        self.script_start = now
        self.first_activity: float | None = None
        self.last_activity: float | None = None
        self.warmup_end: float | None = None
        self.end: float | None = None
        self.stopped = ""
        self._t = now
        self._stack: list[str] = []
        self._steps = {k: StepSeries(k) for k in STEP_KINDS}
        self._opt = self._steps["optimizer"]
        self._bwd = self._steps["backward"]
        self._n = dict.fromkeys(("opt", "bwd", "fetch", "fwd"), 0)
        self.totals: dict[str, float] = {}
        # evaluation state
        self.in_eval = False
        self._seg: dict[str, Any] | None = None
        self._pending: dict[str, float] = {}
        self._last_fetch_loader: int | None = None
        self._fetched_since_fwd = False
        self.loader_role: dict[int, str] = {}
        self.eval_segments: list[tuple[float, float, float]] = []  # start, end, seconds
        self.eval_s = 0.0
        self.eval_segment_count = 0
        self.trained_in_eval_mode = 0
        # torch.profiler window: its steps are slowed down, keep them out of statistics
        self.profiling = False
        self.profiled_s = 0.0
        self.skipped_s = 0.0
        self.on_boundary: Callable[[str], None] | None = None
        # an optimizer step's own stack entry: its index, and prologue|closure|update
        self._step_at: int | None = None
        self._in_step = ""
        self._held = 0.0  # the step's prologue seconds, not booked yet

    # ------------------------------------------------------------ time slices

    @property
    def label(self) -> str:
        if self._in_step == "closure" and len(self._stack) - 1 == self._step_at:
            return "other"
        return self._stack[-1] if self._stack else "other"

    def tag(self) -> str:
        """The label the sampler puts on a main-thread sample taken now."""
        if self.first_activity is None:
            return "startup"
        if self.profiling:
            return "profiling"
        if self.warmup_end is None:
            return "warmup"
        return "eval" if self.in_eval else self.label

    def _slice(self) -> float:
        now = self.clock()
        dt = now - self._t
        self._t = now
        if self.first_activity is None or dt <= 0:
            return now
        if self.profiling:
            self.profiled_s += dt
            for s in self._steps.values():
                s.excluded = s.excluded or s.cur is not None
        if self._in_step == "prologue" and len(self._stack) - 1 == self._step_at:
            self._held += dt  # closure code or update: told by what comes next
            return now
        self._book(self.label, dt)
        return now

    def _book(self, label: str, dt: float) -> None:
        """Add ``dt`` seconds of ``label`` to the totals, open steps and eval state."""
        totals = self.totals
        totals[label] = totals.get(label, 0.0) + dt
        key = "eval" if self.in_eval else label
        cur = self._opt.cur
        if cur is not None:
            cur[key] = cur.get(key, 0.0) + dt
        # Once an optimizer steps the other definitions are moot; once a backward runs,
        # the inference ones are.
        if not self._n["opt"]:
            cur = self._bwd.cur
            if cur is not None:
                cur[key] = cur.get(key, 0.0) + dt
            if not self._n["bwd"]:
                self._steps["data"].add(label, dt)
                self._steps["forward"].add(label, dt)
        if self._seg is None:
            self._pending[label] = self._pending.get(label, 0.0) + dt
        else:
            self._seg["labels"][label] = self._seg["labels"].get(label, 0.0) + dt

    def _book_held(self, label: str) -> None:
        held, self._held = self._held, 0.0
        if held > 0:
            self._book(label, held)

    def _closure_event(self) -> None:
        """A forward, backward or fetch: inside an optimizer step, a closure runs."""
        if self._in_step == "prologue":
            self._slice()
            self._book_held("other")
        if self._in_step:
            self._in_step = "closure"

    def _enter(self, label: str) -> float:
        now = self._slice()
        if self.first_activity is None:
            self.first_activity = self._t = now
            for s in self._steps.values():
                s.open(now)
        self._stack.append(label)
        return now

    def _leave(self, label: str) -> float:
        now = self._slice()
        if self._stack and self._stack[-1] == label:
            self._stack.pop()
        elif label in self._stack:  # an exception skipped an inner leave
            del self._stack[self._stack.index(label):]
        if self._step_at is not None and len(self._stack) <= self._step_at:
            self._book_held("optimizer")  # the step is over; no closure ran in it
            self._step_at, self._in_step = None, ""
        self.last_activity = now
        return now

    def _inference_boundary(self, kind: str, now: float) -> None:
        steps = self._steps[kind]
        if self._n["opt"] or self._n["bwd"]:
            steps.count += 1  # a training script: only the training steps are kept
        else:
            steps.boundary(now)

    def _boundary(self, kind: str, now: float) -> None:
        """Tell the listener first, then end warm-up: the boundary that ends the last
        warm-up step is still warm-up for whoever listens (window, --steps count)."""
        if self.on_boundary is not None:
            try:
                self.on_boundary(kind)
            finally:
                self._warmup_check(now)
        else:
            self._warmup_check(now)

    def closed_step_steady(self, kind: str) -> bool:
        """Whether the step of ``kind`` that just closed is one the record counts as steady:
        it started at or after the end of warm-up and is not in the profiler window (warm-up
        can end inside a step: a DataLoader's third fetch comes mid-step)."""
        series = self._steps.get(kind)
        if series is None or self.warmup_end is None or not series.steps:
            return False
        if len(series.steps) >= MAX_STEPS_KEPT:
            return True  # past what is kept every step is long after warm-up
        last = series.steps[-1]
        return last["start"] >= self.warmup_end - 1e-9 and not last["excluded"]

    def _warmup_check(self, now: float) -> None:
        if self.warmup_end is None and (self._n["opt"] >= WARMUP_BOUNDARIES
                                        or (self._n["bwd"] >= WARMUP_BOUNDARIES
                                            and not self._n["opt"])
                                        or self._n["fetch"] > WARMUP_BOUNDARIES
                                        or self._n["fwd"] > WARMUP_BOUNDARIES):
            self.warmup_end = now

    # ------------------------------------------------------------ events

    def data_begin(self, loader: int | None = None) -> None:
        if self.end is not None:
            return
        self._closure_event()
        role = self.loader_role.get(loader) if loader is not None else None
        if self.in_eval and role == "train":
            self._close_eval("fetch")
        now = self._enter("data")
        if self._seg is not None:
            self._seg["fetched_after"] = True
        elif role == "train":
            self._pending = {}  # what ran before a training fetch is never evaluation
        self._n["fetch"] += 1
        self._inference_boundary("data", now)
        self._last_fetch_loader = loader
        self._fetched_since_fwd = True
        self._boundary("data", now)

    def data_end(self, batch_size: int | None = None) -> None:
        if self.end is not None:
            return
        self._leave("data")
        if batch_size:
            self._steps["data"].samples += batch_size
            if not self.in_eval:
                self._opt.samples += batch_size
                self._bwd.samples += batch_size

    def forward_begin(self, eval_mode: bool = False, batch_size: int | None = None,
                      step: bool = True) -> None:
        """A root module's forward. ``step`` is False for a loss/criterion module (or any
        parameter-free root): its time is ``forward``, but it is no step boundary and
        does not change the evaluation state (it follows the model's forward)."""
        if self.end is not None:
            return
        self._closure_event()
        if not step:
            self._enter("forward")
            if self._seg is not None:
                self._seg["forwards"] += 1
            return
        if eval_mode:
            self._eval_forward()
        else:
            self._train_event()
            if self._fetched_since_fwd and self._last_fetch_loader is not None:
                self.loader_role.setdefault(self._last_fetch_loader, "train")
        self._fetched_since_fwd = False
        now = self._enter("forward")
        self._n["fwd"] += 1
        self._inference_boundary("forward", now)
        if batch_size:
            self._steps["forward"].fwd_samples += batch_size
            if not eval_mode:  # the fallback when no loader batch feeds the step
                self._opt.fwd_samples += batch_size
                self._bwd.fwd_samples += batch_size
        if self._seg is not None:
            self._seg["forwards"] += 1
        self._boundary("forward", now)

    def forward_end(self) -> None:
        if self.end is None:
            self._leave("forward")

    def backward_begin(self) -> None:
        if self.end is not None:
            return
        self._closure_event()
        if self.in_eval:
            self._close_eval("backward")
        self._enter("backward")

    def backward_end(self) -> None:
        """A backward ends a ``backward`` step (used when no optimizer ever steps)."""
        if self.end is not None:
            return
        now = self._leave("backward")
        if self._in_step == "closure":
            self._in_step = "update"  # the closure's backward is done: the update follows
        self._pending = {}
        self._n["bwd"] += 1
        if self._n["opt"]:
            self._bwd.count += 1
        else:
            self._bwd.boundary(now)
        self._boundary("backward", now)

    def optimizer_begin(self, step: bool = True) -> None:
        """``step`` is False for ``zero_grad``; an optimizer step may run a closure."""
        if self.end is not None:
            return
        if self.in_eval:
            self._close_eval("train")
        self._enter("optimizer")
        if step and self._in_step in ("", "prologue"):  # the innermost step runs a closure
            self._book_held("optimizer")  # an outer (wrapping) optimizer's own work
            self._step_at, self._in_step = len(self._stack) - 1, "prologue"

    def optimizer_end(self, step: bool = True) -> None:
        """``step`` is False for ``zero_grad`` (optimizer time, but not a boundary)."""
        if self.end is not None:
            return
        now = self._leave("optimizer")
        if not step:
            return
        self._book_held("optimizer")  # a wrapped optimizer's inner step: still the update
        self._pending = {}
        self._n["opt"] += 1
        self._steps["optimizer"].boundary(now)
        self._boundary("optimizer", now)

    def io_begin(self) -> None:
        if self.end is None:
            self._enter("io")

    def io_end(self) -> None:
        if self.end is None:
            self._leave("io")

    def h2d_begin(self) -> None:
        if self.end is None:
            self._enter("h2d")

    def h2d_end(self) -> None:
        if self.end is None:
            self._leave("h2d")

    def skip(self) -> None:
        """Drop the time since the last event from every phase: perfpilot's own work
        (starting/stopping the profiler, a measuring forward) ran in it."""
        now = self.clock()
        self.skipped_s += max(now - self._t, 0.0)
        self._t = now

    def finish(self, stopped: str = "end") -> None:
        """Close the timeline (idempotent); ``stopped`` says why the script ended."""
        if self.end is not None:
            return
        self._slice()
        self._book_held("optimizer")
        if self.in_eval:
            self._close_eval("end")
        self.end = self.clock()
        self.stopped = stopped
        last = self.last_activity or self.end
        # An open inference step ends with the last activity (if that kind of boundary
        # was ever seen); an open optimizer step is the tail after the last step.
        if self._n["fetch"]:
            self._steps["data"].close(last)
        if self._n["fwd"]:
            self._steps["forward"].close(last)

    # ------------------------------------------------------------ evaluation

    def _eval_forward(self) -> None:
        if self.in_eval:
            return
        now = self._slice()
        self.in_eval = True
        # The batch this forward consumes (and what ran since) is evaluation too.
        moved = dict(self._pending) if self._fetched_since_fwd else {}
        self._opt.move(moved, "eval")
        self._bwd.move(moved, "eval")
        if self._fetched_since_fwd and self._last_fetch_loader is not None:
            self.loader_role.setdefault(self._last_fetch_loader, "eval")
        self._seg = {"start": now - sum(moved.values()), "forwards": 0,
                     "fetched_after": False, "labels": moved}
        self._pending = {}

    def _train_event(self, backward: bool = False) -> None:
        if self.in_eval:
            self._close_eval("backward" if backward else "train")

    def _close_eval(self, why: str) -> None:
        """End an eval segment. It was not evaluation when a backward follows (training
        in eval mode) or when a single forward with no batch after it is followed by
        training (a frozen teacher inside a step): then its time goes back to its labels."""
        now = self._slice()
        seg, self._seg, self.in_eval = self._seg, None, False
        if seg is None:
            return
        lone = seg["forwards"] < 2 and not seg["fetched_after"] and why == "train"
        if why == "backward" or lone:
            self._opt.move(seg["labels"], "eval", back=True)
            self._bwd.move(seg["labels"], "eval", back=True)
            for label, dt in seg["labels"].items():
                self._pending[label] = self._pending.get(label, 0.0) + dt
            if why == "backward":
                self.trained_in_eval_mode += 1
            return
        spent = sum(seg["labels"].values())
        self.eval_s += spent
        self.eval_segment_count += 1
        if len(self.eval_segments) < MAX_SEGMENTS_KEPT:
            self.eval_segments.append((seg["start"], now, spent))

    # ------------------------------------------------------------ results

    def steps(self, kind: str) -> list[dict[str, Any]]:
        return self._steps[kind].steps

    def step_kind(self) -> str | None:
        """The boundary definition that applies: optimizer, else backward, else data,
        else forward."""
        for kind in STEP_KINDS:
            if self._steps[kind].count:
                return kind
        return None

    def samples_from(self, kind: str | None) -> str | None:
        """Where most steps of ``kind`` took their samples: ``loader`` (DataLoader
        batches) or ``forward`` (the batch dimension of the training forwards' input)."""
        sources = self._steps[kind].sources if kind else {}
        return max(sources, key=sources.__getitem__) if sources else None

    def boundaries(self) -> dict[str, int]:
        return {k: self._steps[k].count for k in STEP_KINDS}

    def export(self, origin: float) -> dict[str, Any]:
        """The tracker's state as JSON-able data, times relative to ``origin``."""
        def rel(t: float | None) -> float | None:
            return None if t is None else round(t - origin, 6)

        kind = self.step_kind()
        steps = []
        for s in list(self.steps(kind)) if kind else []:
            steps.append({"start": rel(s["start"]), "end": rel(s["end"]),
                          "phases": {k: round(v, 7) for k, v in s["phases"].items()},
                          "samples": s["samples"], "excluded": s["excluded"]})
        return {
            "step_kind": kind, "boundaries": self.boundaries(), "steps": steps,
            "steps_truncated": bool(kind) and self._steps[kind].count > len(steps),
            "clock": {"process_start": rel(self.process_start),
                      "script_start": rel(self.script_start),
                      "first_activity": rel(self.first_activity),
                      "warmup_end": rel(self.warmup_end),
                      "last_activity": rel(self.last_activity), "end": rel(self.end)},
            "totals": {k: round(v, 6) for k, v in self.totals.items()},
            "eval": {"seconds": round(self.eval_s, 6), "count": self.eval_segment_count,
                     "segments": [[rel(a), rel(b), round(c, 6)]
                                  for a, b, c in list(self.eval_segments)]},
            "profiled_s": round(self.profiled_s, 6), "skipped_s": round(self.skipped_s, 6),
            "trained_in_eval_mode": self.trained_in_eval_mode, "stopped": self.stopped,
            "samples_from": self.samples_from(kind),
        }
