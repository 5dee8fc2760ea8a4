"""The noise-scale estimator against linear regression, where G and Σ are known exactly."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from perfpilot.tune.stages.batch.noise_scale import NoiseScale, gradient_noise_scale


def _regression(n: int = 2048, d: int = 6, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    w_true = torch.randn(d, generator=gen, dtype=torch.float64)
    y = x @ w_true + 0.5 * torch.randn(n, generator=gen, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():  # parameters away from the optimum: |G| clearly non-zero
        model.weight.copy_((w_true + 0.3 * torch.randn(d, generator=gen,
                                                       dtype=torch.float64)).unsqueeze(0))
    return x, y, model


def _loss(model, batch):
    x, y = batch
    return 0.5 * (model(x).squeeze(1) - y).pow(2).mean()


def _truth(x, y, model):
    """Per-sample gradients (r_i x_i): G is their mean, tr Σ their mean squared deviation."""
    with torch.no_grad():
        r = model(x).squeeze(1) - y
    g = r.unsqueeze(1) * x
    G = g.mean(0)
    trace = (g - G).pow(2).sum(1).mean()
    return float(G.pow(2).sum()), float(trace)


def test_known_answer_within_15_percent():
    x, y, model = _regression()
    grad_sq, trace = _truth(x, y, model)
    data = list(zip(x, y, strict=True))
    est = gradient_noise_scale(model, _loss, data, small_batch=4, large_batch=64,
                               n_estimates=200, seed=1)
    truth = trace / grad_sq
    assert abs(est.grad_sq - grad_sq) / grad_sq < 0.15
    assert abs(est.trace_sigma - trace) / trace < 0.15
    assert abs(est.b_simple - truth) / truth < 0.15
    assert est.ci_low <= est.b_simple <= est.ci_high
    assert est.ci_low < truth < est.ci_high


def test_deterministic_and_leaves_model_untouched():
    x, y, model = _regression(n=256)
    data = list(zip(x, y, strict=True))
    before = model.weight.detach().clone()
    torch.manual_seed(5)
    expected_next = torch.rand(3)
    torch.manual_seed(5)
    a = gradient_noise_scale(model, _loss, data, small_batch=4, large_batch=16, n_estimates=5)
    assert torch.equal(torch.rand(3), expected_next)  # global RNG not consumed
    b = gradient_noise_scale(model, _loss, data, small_batch=4, large_batch=16, n_estimates=5)
    assert a == b
    assert torch.equal(model.weight, before) and model.weight.grad is None


def test_buffers_restored():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    data = [(torch.randn(3), torch.randn(())) for _ in range(64)]
    before = model[1].running_mean.clone()

    def loss(m, batch):
        xb, yb = batch
        return (m(xb).squeeze(1) - yb).pow(2).mean()

    gradient_noise_scale(model, loss, data, small_batch=4, large_batch=8, n_estimates=2)
    assert torch.equal(model[1].running_mean, before)


def test_noise_dominated_gives_infinite_b_simple_and_json_none():
    est = NoiseScale(b_simple=math.inf, grad_sq=-1.0, trace_sigma=2.0, ci_low=10.0,
                     ci_high=math.inf, confidence=0.95, small_batch=2, large_batch=8,
                     n_estimates=4)
    d = est.to_dict()
    assert d["b_simple"] is None and d["ci_high"] is None
    assert NoiseScale.from_dict(d).b_simple == math.inf


def test_rejects_bad_sizes():
    x, y, model = _regression(n=32)
    data = list(zip(x, y, strict=True))
    with pytest.raises(ValueError, match="large_batch"):
        gradient_noise_scale(model, _loss, data, small_batch=8, large_batch=12)
    with pytest.raises(ValueError, match="n_estimates"):
        gradient_noise_scale(model, _loss, data, small_batch=2, large_batch=8, n_estimates=1)


def test_public_name_resolves():
    import perfpilot

    assert perfpilot.gradient_noise_scale is gradient_noise_scale
