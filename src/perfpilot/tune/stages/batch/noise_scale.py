"""The gradient noise scale B_simple = tr(Σ) / |G|² (McCandlish et al. 2018).

``G`` is the true (whole-data) gradient and ``Σ`` the per-sample gradient covariance, both
at the model's current parameters. For a batch of ``B`` samples drawn independently,
``E|G_B|² = |G|² + tr(Σ)/B``, so two batch sizes give the unbiased estimators of the
paper's Appendix A.1::

    |G|²  ≈ (B_big |G_big|² - B_small |G_small|²) / (B_big - B_small)
    tr Σ  ≈ (|G_small|² - |G_big|²) / (1/B_small - 1/B_big)

Both are averaged over ``n_estimates`` independent draws *before* the ratio is taken
(the ratio of noisy means is far less biased than the mean of noisy ratios).

How this module draws: each estimate samples ``large_batch`` indices uniformly *with
replacement* (so the samples are independent and the identity above is exact, with no
finite-population correction), splits them into chunks of ``small_batch``, takes the
gradient of each chunk, and averages the chunk gradients into the large-batch gradient.
``|G_small|²`` is the mean over the chunks, so one estimate costs one large-batch
forward + backward. All estimates are taken at the same parameters: nothing is updated.

The model is left as it was: gradients are computed with :func:`torch.autograd.grad`
(``.grad`` fields untouched), buffers (e.g. BatchNorm running statistics) are restored,
and the global RNG state is forked, so measuring along training does not perturb it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class NoiseScale:
    """A measured gradient noise scale with its parts and a bootstrap interval.

    ``b_simple`` is ``inf`` when the |G|² estimate is not positive (the gradient is
    indistinguishable from noise at these batch sizes); ``to_dict`` writes it as ``None``.
    ``ci_low``/``ci_high`` bound ``b_simple`` (percentile bootstrap over the estimates,
    ratio of resampled means).
    """

    b_simple: float
    grad_sq: float
    trace_sigma: float
    ci_low: float
    ci_high: float
    confidence: float
    small_batch: int
    large_batch: int
    n_estimates: int
    grad_sq_samples: tuple[float, ...] = ()
    trace_sigma_samples: tuple[float, ...] = ()

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        """JSON form; infinities become ``None``; per-estimate samples only on request."""
        d = asdict(self)
        if not samples:
            d.pop("grad_sq_samples")
            d.pop("trace_sigma_samples")
        else:
            d["grad_sq_samples"] = list(self.grad_sq_samples)
            d["trace_sigma_samples"] = list(self.trace_sigma_samples)
        for k in ("b_simple", "ci_low", "ci_high"):
            if not math.isfinite(d[k]):
                d[k] = None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NoiseScale:
        def num(v: Any) -> float:
            return math.inf if v is None else float(v)

        return cls(
            b_simple=num(d["b_simple"]), grad_sq=float(d["grad_sq"]),
            trace_sigma=float(d["trace_sigma"]), ci_low=num(d["ci_low"]),
            ci_high=num(d["ci_high"]), confidence=float(d["confidence"]),
            small_batch=int(d["small_batch"]), large_batch=int(d["large_batch"]),
            n_estimates=int(d["n_estimates"]),
            grad_sq_samples=tuple(d.get("grad_sq_samples", ())),
            trace_sigma_samples=tuple(d.get("trace_sigma_samples", ())),
        )


def gradient_noise_scale(
    model: Any,
    loss_fn: Callable[[Any, Any], Any],
    dataset: Any,
    *,
    small_batch: int,
    large_batch: int,
    n_estimates: int = 8,
    seed: int = 0,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    confidence: float = 0.95,
    n_boot: int = 2000,
) -> NoiseScale:
    """Estimate B_simple of ``model`` on ``dataset`` at its current parameters.

    ``loss_fn(model, batch)`` returns the *mean* loss of the batch; batches are collated
    with ``collate_fn`` (default: PyTorch's) and moved to the device of the model's first
    parameter. ``large_batch`` must be at least twice ``small_batch``; when it is not a
    multiple, the last chunk is smaller and counts only towards the large-batch gradient.
    Deterministic for a given ``seed``.
    """
    _check_sizes(small_batch, large_batch, n_estimates)
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no parameters that require gradients")
    gen = torch.Generator().manual_seed(seed)
    small_sq, big_sq = [], []
    with _preserved(model):
        for _ in range(n_estimates):
            idx = torch.randint(len(dataset), (large_batch,), generator=gen).tolist()
            s, b = _one_estimate(model, loss_fn, dataset, idx, small_batch, params, collate_fn)
            small_sq.append(s)
            big_sq.append(b)
    return _from_norms(np.array(small_sq), np.array(big_sq), small_batch, large_batch,
                       confidence, n_boot, seed)


def _check_sizes(small: int, large: int, n: int) -> None:
    if small < 1 or large < 2 * small:
        raise ValueError(f"need 1 <= small_batch and large_batch >= 2*small_batch, "
                         f"got small_batch={small}, large_batch={large}")
    if n < 2:
        raise ValueError(f"n_estimates must be >= 2 for an interval, got {n}")


def _one_estimate(model: Any, loss_fn: Callable[[Any, Any], Any], dataset: Any,
                  idx: list[int], small: int, params: list[Any],
                  collate_fn: Callable[[list[Any]], Any] | None) -> tuple[float, float]:
    """(mean over full chunks of |G_small|², |G_big|²) for one draw of indices."""
    import torch

    total = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    chunk_sq: list[float] = []
    for start in range(0, len(idx), small):
        chunk = idx[start:start + small]
        grads = _chunk_grad(model, loss_fn, dataset, chunk, params, collate_fn)
        if len(chunk) == small:
            chunk_sq.append(sum(float(g.double().pow(2).sum()) for g in grads))
        for t, g in zip(total, grads, strict=True):
            t.add_(g.double(), alpha=len(chunk))
    big = sum(float(t.div_(len(idx)).pow(2).sum()) for t in total)
    return float(np.mean(chunk_sq)), big


def _chunk_grad(model: Any, loss_fn: Callable[[Any, Any], Any], dataset: Any,
                chunk: Sequence[int], params: list[Any],
                collate_fn: Callable[[list[Any]], Any] | None) -> list[Any]:
    import torch
    from torch.utils.data import default_collate

    batch = (collate_fn or default_collate)([dataset[i] for i in chunk])
    batch = move_to(batch, params[0].device)
    loss = loss_fn(model, batch)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g.detach() for g, p in
            zip(grads, params, strict=True)]


def move_to(batch: Any, device: Any) -> Any:
    """Tensors inside tuples/lists/dicts moved to ``device``; other values unchanged."""
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [move_to(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch


class _preserved:
    """Restore the model's buffers and fork the global RNG around a measurement."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __enter__(self) -> None:
        import torch

        self.buffers = [b.detach().clone() for b in self.model.buffers()]
        devices = [b.device.index for b in self.buffers if b.device.type == "cuda"]
        self.rng = torch.random.fork_rng(devices=sorted(set(devices)))
        self.rng.__enter__()

    def __exit__(self, *exc: Any) -> None:
        import torch

        self.rng.__exit__(*exc)
        with torch.no_grad():
            for b, saved in zip(self.model.buffers(), self.buffers, strict=True):
                b.copy_(saved)


def _from_norms(small_sq: np.ndarray, big_sq: np.ndarray, bs: int, bb: int,
                confidence: float, n_boot: int, seed: int) -> NoiseScale:
    grad_sq = (bb * big_sq - bs * small_sq) / (bb - bs)
    trace = (small_sq - big_sq) / (1.0 / bs - 1.0 / bb)
    lo, hi = _bootstrap_ratio(trace, grad_sq, confidence, n_boot, seed)
    return NoiseScale(
        b_simple=_ratio(trace.mean(), grad_sq.mean()), grad_sq=float(grad_sq.mean()),
        trace_sigma=float(trace.mean()), ci_low=lo, ci_high=hi, confidence=confidence,
        small_batch=bs, large_batch=bb, n_estimates=len(small_sq),
        grad_sq_samples=tuple(float(v) for v in grad_sq),
        trace_sigma_samples=tuple(float(v) for v in trace),
    )


def _ratio(num: float, den: float) -> float:
    # A non-positive |G|² estimate means "noise dominates": B_simple is beyond measurement.
    return float(num / den) if den > 0 else math.inf


def _bootstrap_ratio(num: np.ndarray, den: np.ndarray, confidence: float, n_boot: int,
                     seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(num), size=(n_boot, len(num)))
    nums, dens = num[idx].mean(axis=1), den[idx].mean(axis=1)
    ratios = np.where(dens > 0, nums / np.where(dens > 0, dens, 1.0), np.inf)
    alpha = (1.0 - confidence) / 2
    # inverted_cdf picks sample values, so an infinite ratio never turns into NaN.
    lo, hi = np.quantile(ratios, [alpha, 1 - alpha], method="inverted_cdf")
    return float(lo), float(hi)
