"""Loader stage: the stopping rule on faked trainers, and a real run on a slow Dataset."""

from __future__ import annotations

import random
import time

import torch

from perfpilot.engine import StepTiming
from perfpilot.plan import Plan
from perfpilot.tune.stage import StageContext
from perfpilot.tune.stages.candidates import DeviceInfo
from perfpilot.tune.stages.loader import LoaderStage
from perfpilot.tune.study import Study
from perfpilot.workload import Workload

QUICK = {"chunk_s": 0.05, "pairs": 5, "max_pairs": 5, "probe_steps": 8}


def cpu(cores):
    return DeviceInfo("cpu", {"fp32": None}, None, cores=cores)


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


class LoaderTrainer:
    """Step time = max(compute, data / workers) + a little noise; data share follows."""

    def __init__(self, clock: Clock, plan: Plan, compute_s: float, data_s: float, seed: int):
        self.clock, self.plan, self.rng = clock, plan, random.Random(seed)
        self.compute_s, self.data_s = compute_s, data_s

    def train_steps(self, n):
        out = []
        for _ in range(n):
            data = self.data_s if self.plan.num_workers == 0 else max(
                0.0, self.data_s / self.plan.num_workers - self.compute_s)
            dt = (self.compute_s + data) * (1 + 0.02 * (2 * self.rng.random() - 1))
            self.clock.t += dt
            out.append(StepTiming(data=data, h2d=0, forward=dt - data, backward=0, optimizer=0,
                                  other=0, total=dt, samples=32, loss=1.0))
        return out

    def close(self):
        pass


def fake_run(compute_s, data_s, cores, options=None, budget_s=600.0, incumbent=Plan()):
    clock, seeds = Clock(), iter(range(10**6))

    def make(workload, plan):
        return LoaderTrainer(clock, plan, compute_s, data_s, next(seeds))

    stage = LoaderStage(trainer_factory=make, clock=clock, infos=lambda: [cpu(cores)])
    w = Workload(name="fake", model=lambda: None, train_data=lambda: None,
                 loss=lambda m, b: None, optimizer=lambda p, lr: None)
    ctx = StageContext(workload=w, incumbent=incumbent, trials=Study(), budget_s=budget_s,
                       horizon_s=600, options={**QUICK, **(options or {})})
    return stage.run(ctx)


def fates(result):
    return {e["label"]: (e["fate"], e["reason"]) for e in result.evidence["candidates"]}


def test_not_input_bound_tries_no_workers():
    result = fake_run(compute_s=0.01, data_s=0.0001, cores=4)
    assert result.plan == Plan()
    f = fates(result)
    assert f["num_workers=1"][0] == "skipped" and "not the bottleneck" in f["num_workers=1"][1]
    assert result.evidence["data_share"] < 0.05


def test_stops_adding_workers_once_data_is_no_longer_the_bottleneck():
    # data 20 ms, compute 10 ms: 2 workers hide the data wait, more are not tried.
    result = fake_run(compute_s=0.01, data_s=0.02, cores=8)
    assert result.plan.num_workers == 2
    f = fates(result)
    assert f["num_workers=2, cpu_threads=4"][0] == "accepted"
    assert f["num_workers=3, cpu_threads=2"][0] == "skipped"
    assert "no longer the bottleneck" in result.evidence["workers_stopped"]
    assert result.plan.cpu_threads * result.plan.num_workers <= 8


def test_a_useless_first_worker_does_not_stop_the_search():
    # Data-only steps: one worker moves the work (no gain), two run it in parallel.
    result = fake_run(compute_s=0.0005, data_s=0.02, cores=2)
    f = fates(result)
    assert f["num_workers=1"][0] == "rejected"
    assert f["num_workers=2, cpu_threads=1"][0] == "accepted"
    assert (result.plan.num_workers, result.plan.cpu_threads) == (2, 1)


# ---------------------------------------------------------------- real engine, slow Dataset


class SlowDataset(torch.utils.data.Dataset):
    """Stands in for I/O-bound loading: each item waits 1.5 ms (like a disk/network read)."""

    def __len__(self):
        return 4096

    def __getitem__(self, i):
        time.sleep(0.0015)
        g = torch.Generator().manual_seed(i)
        return torch.randn(16, generator=g), torch.tensor(i % 4)


def _loss(model, batch):
    x, y = batch
    return torch.nn.functional.cross_entropy(model(x), y)


def test_loader_stage_finds_workers_for_a_slow_dataset():
    w = Workload(name="slow", model=lambda: torch.nn.Linear(16, 4), train_data=SlowDataset,
                 loss=_loss, optimizer=lambda p, lr: torch.optim.SGD(p, lr=lr),
                 baseline=Plan(batch_size=16))
    stage = LoaderStage(infos=lambda: [cpu(2)])
    # 7 pairs, up to 14 if undecided: on a shared machine one disturbed chunk must not be
    # able to veto a real gain (with 5 pairs the interval is the min..max of the ratios).
    ctx = StageContext(workload=w, incumbent=w.baseline, trials=Study(), budget_s=60,
                       horizon_s=600, options={**QUICK, "pairs": 7, "max_pairs": 14,
                                               "confirm": False})
    result = stage.run(ctx)
    assert result.evidence["data_share"] > 0.05  # measured: the loader is the bottleneck
    assert result.plan.num_workers >= 1, fates(result)
    assert result.plan.num_workers * (result.plan.cpu_threads or 2) <= 2
    won = [e for e in result.evidence["candidates"] if e["fate"] == "accepted"]
    assert won and all(e["ci_low"] > 1.03 for e in won)
    for t in result.trials:
        assert t.state == "complete", (t.plan, t.reason)
