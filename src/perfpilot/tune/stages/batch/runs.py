"""The real runs behind the batch stage: fit probes, throughput windows, noise-scale
measurements and time-to-target runs, each returning an :class:`Outcome` for a trial.

Everything here runs the workload through :class:`perfpilot.engine.Trainer` under the
incumbent plan (device, precision, compile, loader settings) with only the batch size, LR
and warmup changed. :class:`BatchRuns` is the seam the stage is tested through: tests pass
a fake with the same methods.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from perfpilot.trial import Outcome, outcome_of_exception
from perfpilot.tune.stages.batch.noise_scale import gradient_noise_scale

if TYPE_CHECKING:
    from perfpilot.plan import Plan
    from perfpilot.workload import Workload


@dataclass(frozen=True)
class RunConfig:
    """One configuration validated on time to target."""

    batch_size: int
    lr: float
    warmup_steps: int

    def key(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "lr": float(f"{self.lr:.6g}"),
                "warmup_steps": self.warmup_steps}


@dataclass(frozen=True)
class NoiseSpec:
    """How to measure the noise scale: batch sizes, number of estimates, and (along a
    run) the first checkpoint in samples, after which checkpoints double, at most
    ``max_points`` of them after the one at 0 samples."""

    small_batch: int
    large_batch: int
    n_estimates: int
    first_samples: int
    max_points: int = 5


class Runs(Protocol):
    """What the batch stage measures; :class:`BatchRuns` does it for real."""

    def dataset_size(self) -> int: ...
    def memory_budget(self, fraction: float) -> Outcome: ...
    def probe(self, batch_size: int) -> Outcome: ...
    def throughput(self, batch_size: int, window_s: float) -> Outcome: ...
    def noise(self, spec: NoiseSpec, seed: int) -> Outcome: ...
    def time_to_target(self, cfg: RunConfig, *, seed: int, max_samples: int,
                       eval_fraction: float, noise: NoiseSpec | None,
                       target: float | None = None, first_eval: int = 0) -> Outcome: ...
    def close(self) -> None: ...


class BatchRuns:
    """Real measurements of ``workload`` under ``plan`` (batch, LR and warmup varied)."""

    def __init__(self, workload: Workload, plan: Plan,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.workload, self.plan, self.clock = workload, plan, clock
        self._trainers: dict[int, Any] = {}
        self._train: Any = None

    # -- data

    def train_set(self) -> Any:
        if self._train is None:
            from perfpilot.workload import build_dataset

            self._train = build_dataset(self.workload, "train_data")
        return self._train

    def dataset_size(self) -> int:
        return len(self.train_set())

    def _plan(self, batch: int, lr: float | None = None, warmup: int | None = None) -> Plan:
        changes: dict[str, Any] = {"batch_size": batch}
        if lr is not None:
            changes.update(lr=lr, warmup_steps=warmup or 0)
        return self.plan.replace(**changes)

    # -- fit

    def memory_budget(self, fraction: float) -> Outcome:
        """The CPU memory budget (bytes) as a trial, so a resumed run reuses the value."""
        import psutil

        available = psutil.virtual_memory().available
        return Outcome("complete", {"budget_bytes": int(available * fraction),
                                    "available_bytes": int(available)})

    def probe(self, batch_size: int) -> Outcome:
        """Two full training steps (forward, backward, optimizer) on a fresh model at
        ``batch_size``; the peak memory above what was in use, and the last step's time.
        Whatever happens, the model is dropped and cached memory freed before returning."""
        from perfpilot.engine import Trainer

        cuda = self.plan.device.startswith("cuda")
        trainer = None
        try:
            # Built before the window: the peak covers the steps (activations, gradients,
            # optimizer state), not one-time costs such as loading the data set.
            trainer = Trainer(self.workload, self._plan(batch_size), check=False)
            with _peak_memory(cuda, self.plan.device) as peak:
                timings = trainer.train_steps(2)
            return Outcome("complete", {"peak_bytes": peak.get("bytes"),
                                        "step_s": timings[-1].total,
                                        "memory_probe": peak.get("how")})
        except Exception as e:  # noqa: BLE001 - an OOM is the answer, not a crash
            out = outcome_of_exception(e)
            del e  # the traceback holds the failed step's tensors
            return out
        finally:
            if trainer is not None:
                trainer.close()
            del trainer
            _free_memory(cuda)

    # -- throughput

    def throughput(self, batch_size: int, window_s: float) -> Outcome:
        """Samples/s over one window of at least ``window_s`` and 2 steps. Trainers are
        kept per batch size (the first window of a size starts with an untimed step), so
        windows of several sizes can be interleaved without rebuilding or recompiling."""
        fresh = batch_size not in self._trainers
        trainer = self._trainer(batch_size)
        if fresh:
            trainer.train_steps(1)
        samples, seconds, steps = 0, 0.0, 0
        while steps < 2 or seconds < window_s:
            t = trainer.train_steps(1)[0]
            samples, seconds, steps = samples + t.samples, seconds + t.total, steps + 1
        return Outcome("complete", {"samples_per_s": samples / seconds, "steps": steps,
                                    "window_s": seconds})

    def _trainer(self, batch_size: int) -> Any:
        from perfpilot.engine import Trainer

        if batch_size not in self._trainers:
            self._trainers[batch_size] = Trainer(self.workload, self._plan(batch_size),
                                                 check=False)
        return self._trainers[batch_size]

    def close(self) -> None:
        for t in self._trainers.values():
            t.close()
        self._trainers.clear()
        _free_memory(self.plan.device.startswith("cuda"))

    # -- noise scale

    def noise(self, spec: NoiseSpec, seed: int) -> Outcome:
        """The noise scale of a freshly initialized model (seeded like a run)."""
        from perfpilot.engine import Trainer

        with Trainer(self.workload, self._plan(spec.small_batch), seed=seed,
                     check=False) as trainer:
            est = self._noise_of(trainer, spec, seed)
        return Outcome("complete", {"noise": est, "samples": 0})

    def _noise_of(self, trainer: Any, spec: NoiseSpec, seed: int) -> dict[str, Any]:
        start = self.clock()
        est = gradient_noise_scale(
            model_of(trainer), self.workload.loss, self.train_set(),
            small_batch=spec.small_batch, large_batch=spec.large_batch,
            n_estimates=spec.n_estimates, seed=seed, collate_fn=self.workload.collate_fn)
        return {**est.to_dict(), "cost_s": self.clock() - start}

    # -- time to target

    def time_to_target(self, cfg: RunConfig, *, seed: int, max_samples: int,
                       eval_fraction: float, noise: NoiseSpec | None,
                       target: float | None = None, first_eval: int = 0) -> Outcome:
        """Train until ``target`` (default: the workload's) or ``max_samples`` samples.

        The schedule is in samples: the first evaluation after ``first_eval`` samples (at
        least one step; the caller sets it from a run known to need more, so evaluations
        are not spent where the level cannot be), then as :func:`next_eval` says, each step
        at least the samples one evaluation's time would have trained
        (:func:`eval_floor`: an evaluation never costs more than the training since the
        last one). The samples to target are interpolated between the evaluations around
        the crossing (:func:`crossing`). With ``noise``, the noise scale is measured at 0
        samples and then at doubling sample counts. ``train_time_s`` (``ttt_s``: interpolated at the
        crossing) is training time on this machine's clock, evaluation and noise
        measurement excluded; ``noise_cost_s`` what the noise measurements took.
        """
        from perfpilot.engine import Trainer

        w = self.workload if target is None else replace(self.workload, target=target)
        with Trainer(w, self._plan(cfg.batch_size, cfg.lr, cfg.warmup_steps),
                     seed=seed, check=False) as trainer:
            return _TargetRun(self, w, trainer, cfg.batch_size, max_samples, eval_fraction,
                              noise, seed, first_eval).run()


class _TargetRun:
    """The loop of one time-to-target run (train a chunk, evaluate, maybe measure noise)."""

    def __init__(self, runs: BatchRuns, workload: Workload, trainer: Any, batch: int,
                 max_samples: int, eval_fraction: float, noise: NoiseSpec | None,
                 seed: int, first_eval: int = 0) -> None:
        self.runs, self.w, self.trainer, self.batch = runs, workload, trainer, batch
        self.max_samples, self.eval_fraction = max_samples, eval_fraction
        self.first_eval = first_eval
        self.noise, self.seed = noise, seed
        self.curve: list[list[float]] = []
        self.profile: list[dict[str, Any]] = []
        self.next_noise = 0

    def run(self) -> Outcome:
        try:
            return self._loop()
        except FloatingPointError as e:  # a diverged run is a result, with its curve
            return Outcome("nan", self._data(), reason=str(e))

    def _loop(self) -> Outcome:
        tr, w = self.trainer, self.w
        while True:
            self._maybe_noise()
            tr.train_steps(self._next_chunk())
            metric = tr.evaluate()
            if metric is None:
                raise RuntimeError("the workload has no validation metric to reach a target")
            self.curve.append([tr.samples, tr.train_time_s, float(metric)])
            if w.reached(metric):
                samples, ttt = crossing(self.curve, float(w.target), w.direction)
                return Outcome("complete", {**self._data(), "reached": True,
                                            "samples_to_target": samples, "ttt_s": ttt})
            if tr.samples >= self.max_samples:
                return Outcome("pruned", {**self._data(), "reached": False},
                               reason=f"no target after {tr.samples} samples (cutoff "
                                      f"{self.max_samples}: it can no longer win)")

    def _next_chunk(self) -> int:
        """Steps to the next evaluation (see :func:`next_eval` and :func:`eval_floor`), at
        least one."""
        w, tr = self.w, self.trainer
        if not self.curve:
            nxt = float(self.first_eval)
        else:
            nxt = max(next_eval(self.curve, tr.samples, float(w.target), w.direction,
                                self.eval_fraction),
                      eval_floor(tr.samples, tr.train_time_s, tr.eval_time_s,
                                 len(self.curve)))
        nxt = min(nxt, self.max_samples)
        return max(1, math.ceil((nxt - self.trainer.samples) / self.batch))

    def _maybe_noise(self) -> None:
        if (self.noise is None or self.trainer.samples < self.next_noise
                or len(self.profile) > self.noise.max_points):
            return
        est = self.runs._noise_of(self.trainer, self.noise, self.seed + len(self.profile))
        self.profile.append({"samples": self.trainer.samples,
                             "train_time_s": self.trainer.train_time_s, **est})
        self.next_noise = max(self.noise.first_samples, 2 * self.trainer.samples)

    def _data(self) -> dict[str, Any]:
        d: dict[str, Any] = {"curve": self.curve, "samples": self.trainer.samples,
                             "steps": self.trainer.step,
                             "train_time_s": self.trainer.train_time_s,
                             "eval_time_s": self.trainer.eval_time_s}
        if self.noise is not None:
            d["noise_profile"] = self.profile
            d["noise_cost_s"] = sum(p["cost_s"] for p in self.profile)
        return d


def next_eval(curve: list[list[float]], seen: int, target: float, direction: str,
              fraction: float) -> float:
    """Samples at which to evaluate next, from the metric curve so far.

    Evaluations cost time that is not training, so they are spent near the target: the
    crossing ``s*`` is extrapolated linearly in log-samples, from the last evaluation and
    the latest one at most half its samples (a trend over a doubling, steadier than
    between neighbours on a noisy metric), and the next evaluation goes short of it: to
    the smaller of ``s* (1 - 2 fraction)`` and the geometric midpoint, but at least
    ``fraction`` and at most 100% further. So evaluations close in on the target in steps
    of about ``fraction``. With no trend yet, or none towards the target, the samples
    double. The schedule depends only on the metric values, not on the machine's load.
    """
    lo, hi = seen * (1 + fraction), 2.0 * seen
    if len(curve) < 2 or seen <= 0:
        return hi
    s1, _, m1 = curve[-1]
    s0, _, m0 = next((c for c in reversed(curve[:-1]) if c[0] <= s1 / 2), curve[0])
    sign = 1.0 if direction == "max" else -1.0
    gain = sign * (m1 - m0) / max(math.log(s1 / s0), 1e-12) if s0 > 0 else 0.0
    # ``gain`` is per unit of log-samples; the crossing is more than a doubling away (or
    # never, at this rate) when the exponent passes log 2: no exp() overflow on a flat trend.
    if gain <= 0 or sign * (target - m1) / gain > math.log(2):
        return hi
    star = s1 * math.exp(sign * (target - m1) / gain)
    return min(max(min(star * (1 - 2 * fraction), math.sqrt(s1 * star)), lo), hi)


def eval_floor(samples: int, train_s: float, eval_s: float, evaluations: int) -> float:
    """The earliest next evaluation such that it costs no more than the training since
    the last one: ``samples`` plus what one evaluation's mean time (``eval_s`` over
    ``evaluations``) trains at the run's mean speed so far. On a workload whose validation
    pass costs as much as hundreds of training samples, :func:`next_eval`'s close-in steps
    would otherwise spend most of a short run evaluating. The floor depends on measured
    times (so on the machine's load), which moves evaluations but not what they measure:
    the crossing is still interpolated between the two around the level."""
    if evaluations <= 0 or train_s <= 0 or samples <= 0:
        return 0.0
    return samples + (eval_s / evaluations) * samples / train_s


def crossing(curve: list[list[float]], target: float, direction: str) -> tuple[float, float]:
    """(samples, training seconds) where the metric crossed the target: interpolated
    between the last evaluation before and the first one at the target, linearly in
    log-samples (the scale learning curves are close to linear on), then the training
    time at those samples linearly."""
    s1, t1, m1 = curve[-1]
    if len(curve) < 2:
        return s1, t1
    s0, t0, m0 = curve[-2]
    if m1 == m0 or s0 <= 0:
        return s1, t1
    frac = min(max((target - m0) / (m1 - m0), 0.0), 1.0)
    s = s0 * (s1 / s0) ** frac
    return s, t0 + (s - s0) / (s1 - s0) * (t1 - t0)


def model_of(trainer: Any) -> Any:
    """The trainer's underlying ``nn.Module`` (not a compiled wrapper)."""
    model = trainer.model
    return getattr(model, "_orig_mod", model)


# ---------------------------------------------------------------- memory


@contextlib.contextmanager
def _peak_memory(cuda: bool, device: str) -> Iterator[dict[str, Any]]:
    """Yields a dict that receives ``bytes``: the peak above the memory in use on entry."""
    out: dict[str, Any] = {}
    if cuda:
        import torch

        dev = torch.device(device)
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)
        yield out
        out.update(bytes=int(torch.cuda.max_memory_allocated(dev) - before),
                   how="cuda max_memory_allocated")
        return
    reset = _reset_peak_rss()
    before = _rss()
    yield out
    if reset:
        out.update(bytes=max(_peak_rss() - before, 0), how="peak RSS (VmHWM, reset)")
    else:  # no resettable peak: the RSS growth is a lower bound
        out.update(bytes=max(_rss() - before, 0), how="RSS growth (lower bound)")


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _reset_peak_rss() -> bool:
    """Linux >= 4.0: writing 5 to clear_refs resets VmHWM (the peak RSS) to the current RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _peak_rss() > 0
    except OSError:
        return False


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _free_memory(cuda: bool) -> None:
    """Return freed memory so the next probe starts clean (cached blocks, malloc arenas).

    A full ``gc.collect()`` walks every object torch created (~0.4 s); on the CPU the young
    generations hold what a failed step left behind, and an OOM there is not at stake."""
    if cuda:
        import torch

        gc.collect()
        torch.cuda.empty_cache()
        return
    gc.collect(1)
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
