"""TorchHooks in-process: loaders, roots, grad-in-eval, I/O, threads, overrides, undo."""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from perfpilot.probes.hooks import TorchHooks, batch_size_of
from perfpilot.probes.steps import StepTracker


@pytest.fixture
def hooked():
    tracker = StepTracker()
    hooks = TorchHooks(tracker)
    originals = (DataLoader.__init__, torch.save, torch.autograd.backward, pickle.dump,
                 torch.set_num_threads, torch.optim.Optimizer.zero_grad)
    hooks.install()
    try:
        yield tracker, hooks
    finally:
        hooks.uninstall()
        now = (DataLoader.__init__, torch.save, torch.autograd.backward, pickle.dump,
               torch.set_num_threads, torch.optim.Optimizer.zero_grad)
        assert now == originals  # everything patched is restored


def loop(tmp_path, steps: int = 6):
    torch.manual_seed(0)
    x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
    train = DataLoader(TensorDataset(x, y), batch_size=8)  # line: the loader's site
    val = DataLoader(TensorDataset(x, y), batch_size=32)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for i, (xb, yb) in enumerate(train):
        if i == steps:
            break
        opt.zero_grad()
        loss_fn(model(xb), yb).backward()
        opt.step()
        torch.save(model.state_dict(), tmp_path / "ck.pt")
    model.eval()
    for xb, yb in val:  # evaluation without no_grad: grad-in-eval
        loss_fn(model(xb), yb)
    with torch.no_grad():
        model(x)
    return model


def test_loader_steps_roots_and_io(hooked, tmp_path):
    tracker, hooks = hooked
    loop(tmp_path)
    tracker.finish()
    sec = hooks.section()
    train, val = sec["loaders"]
    assert train["batch_size"] == 8 and train["num_workers"] == 0
    assert train["role"] == "train" and val["role"] == "eval"
    assert train["site"][0] == __file__
    assert train["batches"] == 7 and train["samples"] == 56
    assert tracker.step_kind() == "optimizer" and len(tracker.steps("optimizer")) == 6
    types = {r["type"]: r for r in sec["roots"]}
    assert types["Sequential"]["has_params"] and not types["CrossEntropyLoss"]["has_params"]
    assert sec["optimizers"][0]["steps"] == 6
    saves = [r for r in sec["io"] if r["call"] == "torch.save"]
    assert sum(r["count"] for r in saves) == 6 and {r["site"][0] for r in saves} == {__file__}
    assert {r["phase"] for r in saves} == {"warmup", "steady"}
    assert tracker.eval_segment_count >= 1


def test_grad_in_eval_is_counted_and_measured(hooked, tmp_path):
    tracker, hooks = hooked
    loop(tmp_path)
    gie = hooks.section()["grad_in_eval"]
    (call,) = gie["calls"]
    assert call["module"] == "Sequential" and call["calls"] == 2 and call["then_backward"] == 0
    assert call["site"][0] == __file__
    assert len(gie["grad_over_nograd"]) == 1 and gie["grad_over_nograd"][0] > 0


def test_set_num_threads_is_recorded(hooked):
    _, hooks = hooked
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
    finally:
        torch.set_num_threads(before)
    calls = hooks.section()["set_num_threads"]
    assert calls[0]["value"] == 1 and calls[0]["site"][0] == __file__


def test_loader_overrides_apply_to_positional_and_keyword_args():
    tracker = StepTracker()
    hooks = TorchHooks(tracker, overrides={"batch_size": 16, "num_workers": 0,
                                           "persistent_workers": True})
    hooks.install()
    try:
        ds = TensorDataset(torch.randn(32, 2))
        a = DataLoader(ds, 4, shuffle=False)
        b = DataLoader(ds, batch_size=2)
    finally:
        hooks.uninstall()
    assert a.batch_size == 16 and b.batch_size == 16
    assert not a.persistent_workers  # dropped: it needs workers


def test_global_hooks_come_off_after_warmup(hooked, tmp_path):
    from torch.nn.modules import module as m

    _, hooks = hooked
    loop(tmp_path)
    assert not hooks._global
    assert not m._global_forward_pre_hooks


def test_batch_size_of_nested_batches():
    assert batch_size_of((torch.zeros(5, 2), torch.zeros(5))) == 5
    assert batch_size_of({"x": [torch.zeros(3, 1)]}) == 3
    assert batch_size_of(["a", 1]) is None
