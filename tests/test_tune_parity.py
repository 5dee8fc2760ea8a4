"""Numerical parity: the rule on loss sequences, and a NaN-producing candidate refused by
the hardware stage with the real engine."""

from __future__ import annotations

import math

import pytest
import torch

from perfpilot.plan import Plan
from perfpilot.tune import parity as par
from perfpilot.tune.stage import StageContext
from perfpilot.tune.stages.candidates import DeviceInfo, ModelTraits
from perfpilot.tune.stages.hardware import HardwareStage
from perfpilot.tune.study import Study
from perfpilot.workload import Workload
from perfpilot.workloads._common import TensorPairs

REF = [2.0 * 0.95**i for i in range(20)]
TOL = par.Tolerance(steps=20, rtol=0.05, atol=0.01)


def test_identical_losses_pass():
    v = par.judge(REF, REF, TOL)
    assert v.ok and v.state == "complete" and v.candidate_loss == v.reference_loss


def test_small_drift_within_tolerance_passes():
    assert par.judge(REF, [x * 1.02 for x in REF], TOL).ok


def test_out_of_tolerance_fails_with_the_numbers():
    v = par.judge(REF, [x * 1.2 for x in REF], TOL)
    assert not v.ok and v.state == "failed"
    assert "fp32 reference" in v.reason and TOL.describe() in v.reason


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_is_nan_state(bad):
    losses = REF[:5] + [bad] + REF[6:]
    v = par.judge(REF, losses, TOL)
    assert v.state == "nan" and "step 6" in v.reason


def test_divergence_is_named():
    rising = [2.0 * 1.05**i for i in range(20)]
    v = par.judge(REF, rising, TOL)
    assert v.state == "failed" and "diverged" in v.reason


def test_checker_refuses_nan_at_once_and_tolerance_after_k_steps():
    check = par.checker(REF, TOL)
    check(REF[:3])  # fine so far
    with pytest.raises(par.ParityFailure) as e:
        check(REF[:3] + [math.nan])
    assert e.value.verdict.state == "nan"
    check([x * 1.5 for x in REF[:10]])  # off, but K steps have not run yet
    with pytest.raises(par.ParityFailure, match="fp32 reference"):
        check([x * 1.5 for x in REF])


def test_reference_plan_is_fp32_eager():
    p = par.reference_plan(Plan(precision="bf16", compile="default", cpu_threads=1))
    assert (p.precision, p.compile, p.cpu_threads) == ("fp32", "off", 1)


# ---------------------------------------------------------------- with the real engine


class NaNUnderAutocast(torch.nn.Module):
    """Fine in fp32; NaN under CPU autocast (stands in for a model whose activations
    overflow in reduced precision)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(x)
        if torch.is_autocast_enabled("cpu"):
            out = out * float("nan")
        return out


def _data() -> TensorPairs:
    g = torch.Generator().manual_seed(0)
    return TensorPairs(torch.randn(256, 8, generator=g), torch.randint(0, 3, (256,), generator=g))


def _loss(model, batch):
    x, y = batch
    return torch.nn.functional.cross_entropy(model(x), y)


def test_stage_refuses_a_candidate_that_produces_nan():
    w = Workload(name="nanny", model=NaNUnderAutocast, train_data=_data, loss=_loss,
                 optimizer=lambda p, lr: torch.optim.SGD(p, lr=lr), baseline=Plan(batch_size=16))
    cpu = DeviceInfo("cpu", {"fp32": None, "tf32": "CUDA only", "bf16": None,
                             "fp16": "CUDA only"}, None, cores=2)
    stage = HardwareStage(infos=lambda: [cpu], traits=lambda wl: ModelTraits(False, True))
    ctx = StageContext(workload=w, incumbent=w.baseline, trials=Study(), budget_s=60,
                       horizon_s=600, options={"axes": ["precision"], "parity_steps": 5,
                                               "chunk_s": 0.02, "pairs": 5, "max_pairs": 5})
    result = stage.run(ctx)
    assert result.plan.precision == "fp32"
    (entry,) = [e for e in result.evidence["candidates"] if e["label"] == "precision=bf16"]
    assert entry["fate"] == "rejected" and entry["reason"].startswith("nan:")
    ab = [t for t in result.trials if t.plan["check"] == "ab"]
    assert [t.state for t in ab] == ["nan"] and "step 1" in ab[0].reason
    ref = [t for t in result.trials if t.plan["check"] == "reference"]
    assert ref[0].state == "complete" and len(ref[0].measurements["losses"]) == 5
