"""LR scaling rules per optimizer family, warmup, and their overrides."""

from __future__ import annotations

import math

import pytest
import torch

from perfpilot.tune.stages.batch.lr import LrPolicy, optimizer_family, rule_for, scale_lr


def _params():
    return [torch.nn.Parameter(torch.zeros(2))]


@pytest.mark.parametrize(("opt", "family", "rule"), [
    (lambda p: torch.optim.SGD(p, lr=0.1), "sgd", "linear"),
    (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True), "sgd", "linear"),
    (lambda p: torch.optim.Adam(p, lr=1e-3), "adaptive", "sqrt"),
    (lambda p: torch.optim.AdamW(p, lr=1e-3), "adaptive", "sqrt"),
    (lambda p: torch.optim.RMSprop(p, lr=1e-3), "adaptive", "sqrt"),
    (lambda p: torch.optim.LBFGS(p, lr=1.0), "unknown", "sqrt"),
])
def test_family_and_default_rule(opt, family, rule) -> None:
    o = opt(_params())
    assert optimizer_family(o) == family
    assert rule_for(o) == rule


def test_subclass_of_sgd_is_sgd() -> None:
    class MySGD(torch.optim.SGD):
        pass

    assert rule_for(MySGD(_params(), lr=0.1)) == "linear"


def test_scaling_rules() -> None:
    assert scale_lr(0.1, 32, 128, "linear") == pytest.approx(0.4)
    assert scale_lr(1e-3, 32, 128, "sqrt") == pytest.approx(2e-3)
    assert scale_lr(1e-3, 32, 8, "sqrt") == pytest.approx(5e-4)
    assert scale_lr(1e-3, 32, 128, "none") == 1e-3
    assert scale_lr(0.1, 32, 32, "linear") == 0.1
    with pytest.raises(ValueError, match="unknown LR rule"):
        scale_lr(0.1, 32, 64, "cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        scale_lr(0.1, 0, 64, "linear")


def test_policy_warmup_only_when_lr_grows() -> None:
    p = LrPolicy(rule="linear", base_lr=0.1, base_batch=32, warmup_samples=640)
    assert p.lr(128) == pytest.approx(0.4)
    assert p.warmup_steps(128) == 5  # 640 samples / 128
    assert p.warmup_steps(16) == 0  # LR falls: no warmup needed
    assert p.warmup_steps(32) == 0
    assert p.warmup_steps(32, lr=0.2) == 20  # an LR raised at the same batch warms up
    assert p.rescale(0.2, 32, 64) == pytest.approx(0.4)


def test_policy_keeps_the_baseline_warmup_in_samples() -> None:
    p = LrPolicy(rule="sqrt", base_lr=1e-3, base_batch=32, base_warmup_steps=100)
    assert p.warmup_steps(64) == 50 and p.warmup_steps(16) == 200
    assert p.lr(64) == pytest.approx(1e-3 * math.sqrt(2))


def test_stage_options_override_the_rule() -> None:
    from perfpilot.errors import UserError
    from perfpilot.tune.stages.batch.stage import BatchOptions

    assert BatchOptions.from_options({"batch": {"lr_rule": "linear"}}).lr_rule == "linear"
    assert BatchOptions.from_options({}).lr_rule == "auto"
    with pytest.raises(UserError, match="lr_rule"):
        BatchOptions.from_options({"batch": {"lr_rule": "cubic"}})
    with pytest.raises(UserError, match="unknown batch option 'lr'"):
        BatchOptions.from_options({"batch": {"lr": 1}})
    with pytest.raises(UserError, match="'margin'"):
        BatchOptions.from_options({"batch": {"margin": 1.5}})
    with pytest.raises(UserError, match="'candidates'"):
        BatchOptions.from_options({"batch": {"candidates": 2.5}})
    assert BatchOptions.from_options({"batch": {"warmup_steps": 0}}).warmup_steps == 0


def test_one_lr_reached_two_ways_is_one_configuration() -> None:
    from perfpilot.tune.stages.batch.stage import canonical_lr

    base = 1e-3
    a = canonical_lr(float(f"{base * 2 * math.sqrt(2):.6g}") * math.sqrt(2), base)
    assert a == canonical_lr(base * 4, base) == 0.004
    assert canonical_lr(1e-3 * math.sqrt(1438 / 32), base) == pytest.approx(6.7035e-3, rel=1e-4)
