"""perfpilot.engine: phase accounting, stopping rules, determinism, errors.

Tiny synthetic workloads are defined here. Exact-timing tests inject a fake clock that
only the workload advances (data per sample, forward, backward, optimizer step), so the
expected phase times are known exactly; costs are powers of two so sums are exact.
"""

from __future__ import annotations

import math
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from perfpilot.engine import NonFiniteError, StepTiming, Trainer, run
from perfpilot.errors import PlanError, UserError, WorkloadError
from perfpilot.plan import Plan
from perfpilot.record import PHASES, RunRecord
from perfpilot.workload import Workload

DATA_S, FWD_S, BWD_S, OPT_S = 2**-10, 2**-8, 2**-7, 2**-9  # fake seconds
BATCH = 4
STEP_S = BATCH * DATA_S + FWD_S + BWD_S + OPT_S


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


class Data(Dataset):
    """Regression pairs; each item costs ``cost`` on the fake clock (or real busy work)."""

    def __init__(self, n: int, clock: FakeClock | None = None, cost: float = 0.0,
                 busy: int = 0, fail_at: int | None = None) -> None:
        g = torch.Generator().manual_seed(123)
        self.x, self.y = torch.randn(n, 4, generator=g), torch.arange(n, dtype=torch.float32)
        self.clock, self.cost, self.busy, self.fail_at = clock, cost, busy, fail_at

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        if i == self.fail_at:
            raise KeyError(f"sample {i} is corrupt")
        if self.clock is not None:
            self.clock.advance(self.cost)
        if self.busy:  # real CPU work (not sleep): a slow input pipeline
            sum(k * k for k in range(self.busy))
        return self.x[i], self.y[i]


class _TickOnBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, clock, dt):
        ctx.clock, ctx.dt = clock, dt
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        if ctx.clock is not None:
            ctx.clock.advance(ctx.dt)
        return grad, None, None


class Net(nn.Module):
    def __init__(self, clock: FakeClock | None, dropout: float) -> None:
        super().__init__()
        self.clock = clock
        self.body = nn.Sequential(nn.Linear(4, 16), nn.Dropout(dropout), nn.Linear(16, 1))

    def forward(self, x):
        if self.clock is not None:
            self.clock.advance(FWD_S)
        return _TickOnBackward.apply(self.body(x), self.clock, BWD_S).squeeze(1)


class ClockSGD(torch.optim.SGD):
    clock: FakeClock | None = None

    def step(self, closure=None):
        if self.clock is not None:
            self.clock.advance(OPT_S)
        return super().step(closure)


def tiny(clock: FakeClock | None = None, *, n: int = 64, busy: int = 0, dropout: float = 0.0,
         loss=None, metric=None, target=None, val_n: int = BATCH, fail_at=None,
         plan: Plan | None = None) -> Workload:
    def optimizer(params, lr):
        opt = ClockSGD(params, lr=lr)
        opt.clock = clock
        return opt

    def mse(model, batch):
        x, y = batch
        return F.mse_loss(model(x), y / n)

    return Workload(
        name="tiny", model=lambda: Net(clock, dropout),
        train_data=lambda: Data(n, clock, DATA_S, busy, fail_at),
        val_data=(lambda: Data(val_n)) if metric else None,
        loss=loss or mse, optimizer=optimizer, metric=metric, target=target,
        baseline=plan or Plan(batch_size=BATCH, lr=0.05),
    )


# ---------------------------------------------------------------- phase accounting


def test_phases_are_attributed_exactly_with_an_injected_clock():
    clock = FakeClock()
    with Trainer(tiny(clock), tiny().baseline, clock=clock) as tr:
        timings = tr.train_steps(3)
    for t in timings:
        assert (t.data, t.h2d, t.forward, t.backward, t.optimizer, t.other) == (
            BATCH * DATA_S, 0.0, FWD_S, BWD_S, OPT_S, 0.0)
        assert t.total == STEP_S and t.samples == BATCH and t.data_host == t.data
    assert tr.step == 3 and tr.samples == 3 * BATCH and tr.train_time_s == 3 * STEP_S


def test_phases_add_up_to_the_step_time_with_the_real_clock():
    record = run(tiny(), tiny().baseline, steps=20, progress=False)
    assert set(record.phases_s) == set(PHASES)
    assert all(v >= 0 for v in record.phases_s.values())
    assert record.phases_s["forward"] > 0 and record.phases_s["backward"] > 0
    total = sum(record.phases_s.values())
    assert total == pytest.approx(record.step_time_s.mean, rel=0.05)
    assert record.samples_per_s == pytest.approx(BATCH / record.step_time_s.mean, rel=0.05)


def test_a_slow_dataset_shows_up_as_data_time():
    record = run(tiny(busy=40000), Plan(batch_size=8, lr=0.05), steps=8, progress=False)
    assert record.phases_s["data"] / sum(record.phases_s.values()) > 0.5
    assert max(record.phases_s, key=record.phases_s.get) == "data"


def test_grad_accum_counts_every_micro_batch():
    clock = FakeClock()
    plan = Plan(batch_size=BATCH, lr=0.05, grad_accum=3)
    with Trainer(tiny(clock), plan, clock=clock) as tr:
        timings = tr.train_steps(2)
    assert [t.samples for t in timings] == [3 * BATCH, 3 * BATCH]
    assert tr.samples == 6 * BATCH and tr.step == 2
    assert timings[0].data == 3 * BATCH * DATA_S and timings[0].forward == 3 * FWD_S
    assert timings[0].optimizer == OPT_S  # one optimizer step per 3 micro-batches


def test_epochs_wrap_around():
    with Trainer(tiny(n=8), Plan(batch_size=BATCH, lr=0.05)) as tr:
        tr.train_steps(5)
    assert tr.epoch == 2


# ---------------------------------------------------------------- determinism


def losses(w: Workload, plan: Plan, seed: int, n: int = 6) -> list[float]:
    with Trainer(w, plan, seed=seed) as tr:
        return [t.loss for t in tr.train_steps(n)]


def test_same_plan_and_seed_give_the_same_losses():
    w, plan = tiny(dropout=0.3), Plan(batch_size=BATCH, lr=0.05)
    assert losses(w, plan, 7) == losses(w, plan, 7)
    assert losses(w, plan, 7) != losses(w, plan, 8)


def test_interleaved_trainers_do_not_disturb_each_other():
    w, plan = tiny(dropout=0.3), Plan(batch_size=BATCH, lr=0.05)
    alone = losses(w, plan, 7)
    with Trainer(w, plan, seed=7) as a, Trainer(w, plan, seed=9) as b:
        mixed = []
        for _ in range(6):
            mixed += [t.loss for t in a.train_steps(1)]
            b.train_steps(1)
    assert mixed == alone


def test_the_callers_rng_is_left_alone():
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    with Trainer(tiny(dropout=0.3), Plan(batch_size=BATCH, lr=0.05), seed=5) as tr:
        tr.train_steps(2)
    assert torch.equal(torch.rand(1), expected)


# ---------------------------------------------------------------- errors


def test_nan_loss_raises_naming_the_step():
    calls = []

    def loss(model, batch):
        calls.append(1)
        out = model(batch[0]).pow(2).mean()
        return out * math.nan if len(calls) == 3 else out

    with Trainer(tiny(loss=loss), Plan(batch_size=BATCH, lr=0.05)) as tr:
        with pytest.raises(FloatingPointError, match="non-finite loss at step 3"):
            tr.train_steps(5)


def test_a_run_that_diverges_keeps_what_it_measured_on_the_error():
    calls = []

    def loss(model, batch):
        calls.append(1)
        out = model(batch[0]).pow(2).mean()
        return out * math.inf if len(calls) == 6 else out

    with pytest.raises(NonFiniteError) as e:
        run(tiny(loss=loss), Plan(batch_size=BATCH, lr=0.05), steps=10, warmup_steps=1,
            progress=False)
    err = e.value
    assert isinstance(err, FloatingPointError)  # callers catching that still do
    assert (err.what, err.step, err.value) == ("loss", 6, math.inf)
    assert err.record.steps == 5 and len(err.record.loss_history) == 5
    assert err.record.engine.stop_reason == "non-finite loss"


def test_a_failing_dataset_is_a_workload_error():
    with Trainer(tiny(fail_at=5), Plan(batch_size=64, lr=0.05)) as tr:
        with pytest.raises(WorkloadError, match="reading a batch.*corrupt"):
            tr.train_steps(1)


def test_a_loss_without_grad_is_a_workload_error():
    def loss(model, batch):
        return torch.tensor(1.0)

    with Trainer(tiny(loss=loss), Plan(batch_size=BATCH, lr=0.05)) as tr:
        with pytest.raises(WorkloadError, match="grad_fn"):
            tr.train_steps(1)


def test_the_hardware_check_runs_when_available(monkeypatch):
    fake = types.ModuleType("perfpilot.devices")

    def check_plan(plan, machine=None):
        raise PlanError("plan key 'compile': 'default' has no working compiler here")

    fake.check_plan = check_plan
    monkeypatch.setitem(sys.modules, "perfpilot.devices", fake)
    with pytest.raises(PlanError, match="compile"):
        Trainer(tiny(), tiny().baseline)
    Trainer(tiny(), tiny().baseline, check=False).close()


def test_until_target_needs_a_target():
    with pytest.raises(UserError, match="no target"):
        run(tiny(), tiny().baseline, until_target=True, progress=False)


def test_run_needs_a_limit():
    with pytest.raises(UserError, match="steps, time_s or until_target"):
        run(tiny(), tiny().baseline, progress=False)


# ---------------------------------------------------------------- stopping and the record


def test_steps_limit_and_warmup_exclusion():
    clock = FakeClock()
    record = run(tiny(clock), tiny().baseline, steps=7, warmup_steps=2, progress=False,
                 clock=clock)
    engine = record.engine
    assert record.steps == 7 and engine.stop_reason == "steps"
    assert engine.warmup_steps == 2 and engine.measured_steps == 5
    assert record.step_time_s.n == 5 and record.step_time_s.median == STEP_S
    assert [row[0] for row in record.loss_history] == list(range(1, 8))
    assert record.loss_history[-1][1] == 7 * STEP_S


def test_progress_hears_the_run_and_nothing_is_displayed_by_the_engine():
    from perfpilot.engine import measured_run
    from perfpilot.progress import NullProgress

    class Heard(NullProgress):
        def __init__(self) -> None:
            self.events: list[tuple] = []

        def run_started(self, name, total, unit):
            self.events.append(("start", name, total, unit))

        def run_step(self, completed, info):
            self.events.append(("step", completed, info.split()[:2]))

        def run_finished(self):
            self.events.append(("end",))

    clock, heard = FakeClock(), Heard()
    run(tiny(clock), tiny().baseline, steps=5, progress=heard, clock=clock)
    ev = heard.events
    assert ev[0] == ("start", tiny().name, 5, "steps") and ev[-1] == ("end",)
    steps = [e for e in ev if e[0] == "step"]
    assert steps and steps[-1][1] == 5 and steps[-1][2] == ["step", "5"]
    from pathlib import Path

    assert "perfpilot.render" not in Path(measured_run.__file__).read_text()


def test_time_limit_counts_training_time():
    clock = FakeClock()
    record = run(tiny(clock), tiny().baseline, time_s=10 * STEP_S, progress=False, clock=clock)
    assert record.steps == 10 and record.engine.stop_reason == "time"
    assert record.engine.train_time_s == 10 * STEP_S


def test_until_target_stops_at_the_target_and_excludes_eval_time():
    clock = FakeClock()
    evals = []

    def metric(model, batch):  # the k-th evaluation scores k; each costs 1 fake second
        evals.append(1)
        clock.advance(1.0)
        return float(len(evals))

    w = tiny(clock, metric=metric, target=3.0)
    record = run(w, w.baseline, until_target=True, eval_every_s=3 * STEP_S, progress=False,
                 clock=clock)
    assert record.engine.stop_reason == "target"
    assert record.steps == 9
    assert record.time_to_target_s == 9 * STEP_S
    assert record.engine.eval_time_s == 3.0
    assert record.metric["history"] == [[3, 3 * STEP_S, 1.0], [6, 6 * STEP_S, 2.0],
                                        [9, 9 * STEP_S, 3.0]]
    assert record.metric["value"] == 3.0 and record.metric["target"] == 3.0


def test_the_final_evaluation_reports_the_metric_without_until_target():
    w = tiny(metric=lambda m, b: 0.5, target=0.4)
    record = run(w, w.baseline, steps=3, progress=False)
    assert record.metric["name"] == "metric" and record.metric["value"] == 0.5
    assert record.time_to_target_s is not None  # reached at the (final) evaluation


def test_on_step_can_stop_the_run():
    seen: list[StepTiming] = []

    def on_step(trainer, timing):
        seen.append(timing)
        return len(seen) >= 3

    record = run(tiny(), tiny().baseline, steps=50, on_step=on_step, progress=False)
    assert record.engine.stop_reason == "callback"
    assert record.steps == 3 and len(seen) == 3


def test_evaluate_is_a_sample_weighted_mean():
    w = tiny(metric=lambda model, batch: float(batch[1].mean()), val_n=10)
    with Trainer(w, w.baseline) as tr:  # batches of 4, 4, 2 over labels 0..9
        assert tr.evaluate() == pytest.approx(4.5)
        assert tr.evaluate(max_batches=1) == pytest.approx(1.5)
    assert Trainer(tiny(), tiny().baseline).evaluate() is None


def test_record_round_trips_through_json(tmp_path):
    w = tiny(metric=lambda m, b: 1.0, target=0.5)
    record = run(w, w.baseline, steps=4, progress=False)
    assert record.peak_memory_bytes > 0 and record.machine
    assert record.plan["batch_size"] == BATCH
    record.save(tmp_path / "r.json")
    back = RunRecord.load(tmp_path / "r.json")
    assert back.to_dict() == record.to_dict()


def test_one_step_runs_still_have_statistics():
    record = run(tiny(), tiny().baseline, steps=1, progress=False)
    assert record.steps == 1 and record.step_time_s.n == 1
    assert record.step_time_s.ci_low == record.step_time_s.median


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_steps_are_timed_with_events():  # pragma: no cover - GPU only
    plan = Plan(device="cuda", batch_size=BATCH, lr=0.05, pin_memory=True)
    with Trainer(tiny(), plan) as tr:
        timings = tr.train_steps(5)
        assert tr.timer_name == "cuda-events"
    for t in timings:
        assert sum(t.phases().values()) == pytest.approx(t.total, rel=1e-3, abs=1e-5)
        assert t.forward > 0 and math.isfinite(t.loss)


class LaggingTimer:
    """Stands in for CUDA events: a mark completes only once ``lag`` later marks exist
    (or on wait), like events queued behind GPU work."""

    name = "fake-async"

    def __init__(self, clock: FakeClock, lag: int) -> None:
        self.clock, self.lag, self.marks, self.polls = clock, lag, [], 0

    def mark(self):
        self.marks.append([self.clock(), False])
        for m in self.marks[: -self.lag]:
            m[1] = True
        return self.marks[-1]

    @staticmethod
    def seconds(a, b):
        return b[0] - a[0]

    def done(self, mark):
        self.polls += 1
        return mark[1]

    def wait(self, mark):
        for m in self.marks:
            m[1] = True


def test_async_timings_resolve_lazily_in_order():
    clock = FakeClock()
    with Trainer(tiny(clock), tiny().baseline, clock=clock) as tr:
        tr._timer = LaggingTimer(clock, lag=12)  # about two steps behind
        resolved_during = []
        original = tr._resolve

        def spy(block):
            out = original(block)
            resolved_during.append((block, len(out)))
            return out

        tr._resolve = spy
        timings = tr.train_steps(6)
    assert len(timings) == 6 and all(t.total == STEP_S for t in timings)
    assert any(n > 0 for block, n in resolved_during if not block)  # some before the end
    assert resolved_during[-1][0] and resolved_during[-1][1] > 0  # the rest at the end
    assert tr.train_time_s == 6 * STEP_S


def test_default_target_evaluation_is_stretched_when_evaluation_is_costly():
    clock = FakeClock()
    evals = []

    def metric(model, batch):  # the 2nd evaluation meets the target; each costs 1 s
        evals.append(1)
        clock.advance(1.0)
        return float(len(evals))

    w = tiny(clock, metric=metric, target=2.0)
    record = run(w, w.baseline, until_target=True, progress=False, clock=clock)
    (_, t1, _), (_, t2, _) = record.metric["history"]
    assert 1.0 <= t1 < 1.0 + STEP_S  # the first after 1 s of training
    assert 3.0 <= t2 - t1 < 3.0 + STEP_S  # then 3 s apart: evaluation <= 25% of training
    assert record.engine.eval_adaptive
