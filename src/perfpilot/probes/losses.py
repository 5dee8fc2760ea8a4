"""The training loss per step, from the backward wrapper of
:class:`~perfpilot.probes.hooks.TorchHooks` (the record's ``loss_history``).

The first backward of each training step whose first argument is a scalar tensor that
needs grad is the step's loss (a GAN: the first of its losses; ``scaler.scale(loss)
.backward()``: the scaled value, as it is). It is kept detached (no graph held) and read
as a float later, at a step boundary once :data:`FLUSH_EVERY` are waiting or at the end:
never ``.item()`` inside the backward (on CUDA that would wait for the GPU every step).

Raw rows are ``[optimizer_steps, backward_steps, t, loss]``: the step counts of both
definitions before this backward (the record's definition is chosen at the end, see
:mod:`perfpilot.probes.steps`) and the time relative to the process start.
:func:`loss_history` turns them into the record's rows. Nothing here imports torch.
"""

from __future__ import annotations

from typing import Any

MAX_ROWS = 20000
FLUSH_EVERY = 256


class LossRecorder:
    """Collects the raw rows (see the module docstring)."""

    def __init__(self) -> None:
        self.rows: list[list[Any]] = []
        self._done = 0  # rows[:_done] hold floats
        self._last_opt = -1

    def on_backward(self, first: Any, counts: dict[str, int], t: float) -> None:
        """A backward (not nested, main thread) starts; ``first`` is its first argument."""
        if len(self.rows) >= MAX_ROWS:
            return
        if isinstance(first, (list, tuple)) and len(first) == 1:
            first = first[0]
        opt = counts.get("optimizer", 0)
        if opt and opt == self._last_opt:
            return  # not the first loss of this optimizer step
        numel = getattr(first, "numel", None)
        if numel is None or not getattr(first, "requires_grad", False) or numel() != 1:
            return
        self._last_opt = opt
        value = first.detach()
        if value.device.type == "cpu":
            value = float(value)  # no device to wait for
        self.rows.append([opt, counts.get("backward", 0), t, value])
        if self._done == len(self.rows) - 1 and isinstance(value, float):
            self._done += 1

    def flush(self, force: bool = False) -> None:
        """Read the waiting values as floats (at a step boundary, or at the end)."""
        if len(self.rows) - self._done < (1 if force else FLUSH_EVERY):
            return
        for row in self.rows[self._done:]:
            v = row[3]
            if not isinstance(v, float):
                try:
                    row[3] = float(v)
                except Exception:  # a tensor that cannot be read (freed device...)
                    row[3] = None
        self._done = len(self.rows)

    def section(self, final: bool) -> list[list[Any]]:
        """The rows read so far (all of them at the end)."""
        if final:
            self.flush(force=True)
        return [list(r) for r in self.rows[:self._done]]


def loss_history(rows: list[list[Any]], tracker: dict[str, Any]) -> list[list[float]]:
    """The record's rows ``[step, t_s, loss, samples_cum]``: ``step`` numbers the record's
    training steps from 1 (warm-up included), ``t_s`` is the end of that step in seconds
    since the start of the first step (the backward's time for a step that never closed),
    ``samples_cum`` the training samples up to and including it (0 when unknown)."""
    kind = tracker.get("step_kind")
    col = {"optimizer": 0, "backward": 1}.get(kind or "")
    if col is None or not rows:
        return []
    steps = tracker.get("steps") or []
    first = steps[0]["start"] if steps else (tracker.get("clock") or {}).get("first_activity")
    t0 = float(first or 0.0)
    cum, total = [], 0
    for s in steps:
        total += int(s.get("samples") or 0)
        cum.append(total)
    out: list[list[float]] = []
    seen: set[int] = set()
    for row in rows:
        idx, loss = int(row[col]), row[3]
        if loss is None or idx in seen:
            continue
        seen.add(idx)
        closed = idx < len(steps)
        t = steps[idx]["end"] if closed else row[2]
        samples = cum[idx] if closed else total
        out.append([idx + 1, round(float(t) - t0, 6), float(loss), samples])
        if len(out) >= MAX_ROWS:
            break
    return out
