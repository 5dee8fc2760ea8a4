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


# ---------------------------------------------------------------- pickle safety, roles, steps


class SeqLM(nn.Module):
    """Sequence-first LSTM model: input (seq, batch), as pytorch/examples' LM."""

    def __init__(self, transpose: bool = False) -> None:
        super().__init__()
        self.transpose = transpose  # True: takes (batch, seq) and transposes for the LSTM
        self.emb = nn.Embedding(20, 8)
        self.rnn = nn.LSTM(8, 8)
        self.out = nn.Linear(8, 20)

    def forward(self, x):
        if self.transpose:
            x = x.t()
        y, _ = self.rnn(self.emb(x))
        return torch.log_softmax(self.out(y), -1).view(-1, 20)


def manual_sgd(model, criterion, make_batch, steps: int, evals: int = 0) -> None:
    """Train by hand (no torch.optim), then evaluate under eval()/no_grad."""
    for _ in range(steps):
        x, y = make_batch()
        model.zero_grad()
        criterion(model(x), y).backward()
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-0.1)
    model.eval()
    with torch.no_grad():
        for _ in range(evals):
            x, y = make_batch()
            criterion(model(x), y)
    model.train()


def lm_batch(seq: int = 7, batch: int = 5, batch_first: bool = False):
    shape = (batch, seq) if batch_first else (seq, batch)
    x = torch.randint(0, 20, shape)
    return x, torch.randint(0, 20, (seq * batch,))


def test_a_profiled_model_pickles_deep_copies_and_saves_clean(hooked, tmp_path):
    import copy
    import io

    _, hooks = hooked
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    manual_sgd(model, nn.MSELoss(), lambda: (torch.randn(8, 4), torch.randn(8, 2)), steps=6)
    assert {r["type"] for r in hooks.section()["roots"]} == {"Sequential", "MSELoss"}
    data = pickle.dumps(model)
    assert b"perfpilot" not in data
    clone = copy.deepcopy(model)
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    for m in (pickle.loads(data), clone, loaded):
        assert not m._forward_pre_hooks and not m._forward_hooks
        assert not m._forward_hooks_always_called
    buf.seek(0)  # the default weights_only load, as the examples do it, works too
    with torch.serialization.safe_globals([nn.Sequential, nn.Linear, nn.ReLU]):
        torch.load(buf)
    assert torch.equal(loaded(torch.ones(1, 4)), model(torch.ones(1, 4)))


def test_uninstall_restores_the_root_classes():
    tracker = StepTracker()
    hooks = TorchHooks(tracker)
    hooks.install()
    try:
        manual_sgd(SeqLM(), nn.NLLLoss(), lm_batch, steps=4)
        assert "__call__" in SeqLM.__dict__ and "__call__" in nn.NLLLoss.__dict__
    finally:
        hooks.uninstall()
    assert "__call__" not in SeqLM.__dict__ and "__call__" not in nn.NLLLoss.__dict__
    assert SeqLM.__call__ is nn.Module.__call__


def test_manual_sgd_steps_are_backwards_and_losses_start_no_step(hooked):
    tracker, hooks = hooked
    fc = nn.Linear(4, 1)  # pytorch/examples' regression: functional loss, update by hand
    manual_sgd(fc, torch.nn.functional.smooth_l1_loss,
               lambda: (torch.randn(32, 4), torch.randn(32, 1)), steps=9, evals=3)
    tracker.finish()
    assert tracker.step_kind() == "backward"
    steps = tracker.steps("backward")
    assert len(steps) == 9 and {s["samples"] for s in steps} == {32}
    assert tracker.samples_from("backward") == "forward"


def test_seq_first_batch_dimension_and_eval_kept_apart(hooked):
    tracker, hooks = hooked
    manual_sgd(SeqLM(), nn.NLLLoss(), lm_batch, steps=8, evals=4)
    tracker.finish()
    roots = {r["type"]: r for r in hooks.section()["roots"]}
    assert roots["NLLLoss"]["role"] == "loss" and roots["SeqLM"]["role"] == "model"
    assert roots["SeqLM"]["batch_dim"] == 1 and "LSTM" in roots["SeqLM"]["batch_dim_from"]
    assert tracker.step_kind() == "backward"
    assert [s["samples"] for s in tracker.steps("backward")] == [5] * 8  # not 7 (seq)
    assert tracker.eval_segment_count == 1


def test_a_model_that_transposes_for_its_lstm_keeps_dim_0(hooked):
    tracker, hooks = hooked
    manual_sgd(SeqLM(transpose=True), nn.NLLLoss(),
               lambda: lm_batch(batch_first=True), steps=6)
    tracker.finish()
    (root,) = [r for r in hooks.section()["roots"] if r["type"] == "SeqLM"]
    assert root["batch_dim"] == 0 and "transposes" in root["batch_dim_from"]
    assert {s["samples"] for s in tracker.steps("backward")[1:]} == {5}


def test_a_failing_probe_is_a_note_not_the_scripts_exception(hooked, monkeypatch):
    tracker, hooks = hooked

    def broken() -> None:
        raise RuntimeError("probe bug")

    monkeypatch.setattr(tracker, "backward_begin", broken)
    model = nn.Linear(3, 1)
    manual_sgd(model, nn.MSELoss(), lambda: (torch.randn(4, 3), torch.randn(4, 1)), steps=3)
    assert model.weight.grad is not None  # the script's backward ran
    assert any("probe bug" in e for e in hooks.errors)


class KeywordModel(nn.Module):
    """Called as ``model(**batch)``, as Hugging Face's Trainer calls its models."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 1)

    def forward(self, inputs=None, labels=None):
        return nn.functional.mse_loss(self.fc(inputs), labels)


def test_keyword_only_forwards_give_the_batch_dimension(hooked):
    tracker, hooks = hooked
    model = KeywordModel()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(8):
        loss = model(**{"inputs": torch.randn(12, 4), "labels": torch.randn(12, 1)})
        opt.zero_grad()
        loss.backward()
        opt.step()
    tracker.finish()
    steps = tracker.steps("optimizer")
    assert len(steps) == 8 and tracker.samples_from("optimizer") == "forward"
    # the first call finds the root (the global pre-hook sees no keywords); from the
    # second on, during discovery and after it, the keywords give the batch
    assert [s["samples"] for s in steps[1:]] == [12] * 7
    assert hooks._global == []  # and the last steps ran with the class wrapper
