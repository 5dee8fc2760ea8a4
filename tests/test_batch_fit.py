"""The fit-limit search: never returns a size that was not run, never above the limit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from perfpilot.plan import Plan
from perfpilot.tune.stages.batch.fit import NothingFits, Probe, find_fit_limit
from perfpilot.workload import Workload


def fake_probe(limit: int, ran: list[int], per_sample: int | None = None):
    def probe(size: int) -> Probe:
        ran.append(size)
        if size > limit:
            return Probe(size, "oom", reason="CUDA out of memory")
        peak = None if per_sample is None else 1000 + per_sample * size
        return Probe(size, "ok", peak_bytes=peak, step_s=0.01)
    return probe


@pytest.mark.parametrize("limit", [1, 2, 3, 31, 32, 33, 100, 511, 1000])
@pytest.mark.parametrize("start", [1, 32, 700])
def test_returns_a_size_it_ran_never_above_the_limit(limit: int, start: int) -> None:
    ran: list[int] = []
    fit = find_fit_limit(fake_probe(limit, ran), start=start, cap=4096, margin=0.1)
    assert fit.limit <= limit
    assert fit.limit in ran
    assert any(p.batch_size == fit.limit and p.ok and p.ran for p in fit.probes)
    assert fit.cause == "memory"
    assert fit.largest_ok <= limit < fit.smallest_failed
    # bisection got within 5% of the true limit, and the margin is at most 10% below it
    assert fit.largest_ok >= 0.95 * limit - 1
    assert fit.limit >= int(0.9 * fit.largest_ok) // 2


def test_margin_backs_off_and_is_probed() -> None:
    ran: list[int] = []
    fit = find_fit_limit(fake_probe(1000, ran), start=32, cap=10_000, margin=0.1,
                         tolerance=0.0)
    assert fit.largest_ok == 1000
    assert fit.limit == 900 and 900 in ran


def test_cap_reached_returns_the_cap_it_ran_without_margin() -> None:
    # Lightning's power mode would report 2x the last size here; we report what ran.
    ran: list[int] = []
    fit = find_fit_limit(fake_probe(10**9, ran), start=32, cap=1438)
    assert fit.limit == 1438 and ran[-1] == 1438
    assert fit.cause == "cap" and fit.smallest_failed is None and fit.margin == 0.0
    assert ran == [32, 64, 128, 256, 512, 1024, 1438]


def test_nothing_fits() -> None:
    with pytest.raises(NothingFits):
        find_fit_limit(fake_probe(0, []), start=8, cap=64)


def test_other_failures_bound_the_search_too() -> None:
    def probe(size: int) -> Probe:
        return Probe(size, "failed" if size > 50 else "ok", reason="boom")

    fit = find_fit_limit(probe, start=8, cap=1000, margin=0.0)
    assert fit.limit <= 50


def test_memory_budget_refuses_projected_sizes_without_running_them() -> None:
    ran: list[int] = []
    budget = 1000 + 100 * 300  # the budget allows 300 samples at 100 bytes each
    fit = find_fit_limit(fake_probe(10**9, ran, per_sample=100), start=16, cap=10_000,
                         budget_bytes=budget)
    refused = [p for p in fit.probes if not p.ran]
    assert refused and all(p.state == "over-budget" for p in refused)
    assert all(p.batch_size not in ran for p in refused)
    assert fit.cause == "budget" and fit.limit in ran and fit.limit <= 300
    assert fit.limit >= 0.95 * 300 - 1
    assert fit.memory_model["per_sample_bytes"] == pytest.approx(100)


def test_measured_peak_over_budget_fails_the_size() -> None:
    def probe(size: int) -> Probe:  # memory jumps at 64: not linear, so it must be measured
        return Probe(size, "ok", peak_bytes=10 if size < 64 else 10**6)

    fit = find_fit_limit(probe, start=8, cap=1000, budget_bytes=1000)
    assert fit.limit < 64
    assert any(p.batch_size == 64 and p.state == "over-budget" and p.ran for p in fit.probes)


# ---------------------------------------------------------------- through the real engine

LIMIT = 48


class OomAbove(nn.Module):
    """A model that raises CUDA's out-of-memory error for batches above LIMIT."""

    def __init__(self, error: type[Exception] = torch.OutOfMemoryError) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2)
        self.error = error

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > LIMIT:
            raise self.error("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.lin(x)


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.utils.data.TensorDataset(torch.randn(400, 4, generator=g),
                                          torch.randint(0, 2, (400,), generator=g))


def _loss(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


@pytest.mark.parametrize("error", [torch.OutOfMemoryError, RuntimeError])
def test_engine_probe_with_failing_model(error: type[Exception]) -> None:
    from perfpilot.tune.stage import StageContext
    from perfpilot.tune.stages.batch.stage import BatchOptions, BatchStage, _Tuning
    from perfpilot.tune.study import Study

    w = Workload(name="oom", model=lambda: OomAbove(error), train_data=_data,
                 loss=_loss, optimizer=lambda p, lr: torch.optim.SGD(p, lr=lr),
                 baseline=Plan(batch_size=8, lr=0.1, cpu_threads=1))
    stage = BatchStage()
    ctx = StageContext(workload=w, incumbent=w.baseline, trials=Study(), budget_s=5)
    tuning = _Tuning(ctx, BatchOptions(), stage._make_runs(w, w.baseline))
    fit = tuning.fit_limit()
    ran_ok = {p.batch_size for p in fit.probes if p.ok}
    assert fit.limit <= LIMIT and fit.limit in ran_ok
    assert any(p.state == "oom" for p in fit.probes)
    assert all(t.stage == "batch" and t.plan["step"] in ("fit", "memory-budget")
               for t in tuning.trials)
    states = {t.plan.get("batch_size"): t.state for t in tuning.trials if "batch_size" in t.plan}
    assert states[64] == "oom" and states[8] == "complete"


def test_doubling_stops_at_a_step_too_slow_to_validate() -> None:
    def probe(size: int) -> Probe:
        return Probe(size, "ok", step_s=size / 100)

    fit = find_fit_limit(probe, start=8, cap=10**6, max_step_s=1.0)
    assert fit.cause == "time" and fit.limit == 128  # 1.28 s: the first step over 1 s
    assert fit.smallest_failed is None
