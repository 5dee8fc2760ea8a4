"""perfpilot.apply: what each plan knob does at run time (CPU; CUDA paths skip)."""

from __future__ import annotations

import contextlib
import sys
import types
from collections import OrderedDict, namedtuple

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from perfpilot.apply_plan import (
    Applied,
    _default_threads,
    apply,
    autocast,
    batch_size_of,
    lr_at,
    lr_scales,
    make_loader,
    make_scaler,
    prepare_model,
    resolve_device,
    set_lr,
    setup_process,
    to_device,
    uses_channels_last,
)
from perfpilot.errors import PlanError
from perfpilot.plan import Plan

CUDA = torch.cuda.is_available()


@pytest.fixture
def restore_torch_state():
    """setup_process changes process-wide knobs; put them back for the other tests."""
    saved = (torch.get_num_threads(), torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    yield
    torch.set_num_threads(saved[0])
    (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
     torch.backends.cudnn.benchmark) = saved[1:]


def conv_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))


# ---------------------------------------------------------------- precision


@pytest.mark.parametrize("precision", ["fp32", "tf32"])
def test_full_precision_has_no_autocast_and_no_scaler(precision):
    plan = Plan(precision=precision)
    assert isinstance(autocast(plan), contextlib.nullcontext)
    assert make_scaler(plan) is None


def test_bf16_autocasts_matmuls_on_cpu():
    plan = Plan(precision="bf16")
    with autocast(plan):
        out = torch.randn(4, 4) @ torch.randn(4, 4)
    assert out.dtype == torch.bfloat16
    assert make_scaler(plan) is None  # bf16 has fp32's range: no loss scaling


def test_autocast_contexts_are_fresh_objects():
    plan = Plan(precision="bf16")
    assert autocast(plan) is not autocast(plan)


def test_fp16_on_cpu_is_a_plan_error_naming_the_key():
    # MPS runs fp16 too: the message must not say CUDA alone
    with pytest.raises(PlanError, match="'precision'.*needs a CUDA or MPS device"):
        autocast(Plan(precision="fp16"))


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_fp16_on_cuda_has_autocast_and_scaler():  # pragma: no cover - GPU only
    plan = Plan(device="cuda", precision="fp16")
    assert isinstance(make_scaler(plan), torch.amp.GradScaler)
    with autocast(plan):
        out = torch.randn(4, 4, device="cuda") @ torch.randn(4, 4, device="cuda")
    assert out.dtype == torch.float16


@pytest.mark.skipif(CUDA, reason="checks the message when CUDA is missing")
def test_cuda_device_without_cuda_is_a_plan_error():
    with pytest.raises(PlanError, match="'device'"):
        resolve_device(Plan(device="cuda"))


# ---------------------------------------------------------------- process settings


def test_setup_process_sets_threads_tf32_and_cudnn(restore_torch_state):
    setup_process(Plan(precision="tf32", cpu_threads=1, cudnn_benchmark=True))
    assert torch.get_num_threads() == 1
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert torch.backends.cudnn.benchmark
    setup_process(Plan(precision="fp32"))  # None restores the default thread count
    assert torch.get_num_threads() == _default_threads()
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert not torch.backends.cudnn.benchmark


def test_interop_threads_same_value_is_accepted():
    setup_process(Plan(interop_threads=torch.get_num_interop_threads()))


def test_interop_threads_change_too_late_is_explained(monkeypatch):
    def refuse(n):
        raise RuntimeError("Error: cannot set number of interop threads after parallel work")

    monkeypatch.setattr(torch, "set_num_interop_threads", refuse)
    wanted = torch.get_num_interop_threads() + 1
    with pytest.raises(PlanError, match="interop_threads.*fresh process"):
        setup_process(Plan(interop_threads=wanted))


# ---------------------------------------------------------------- model


def test_channels_last_converts_conv_models_only():
    plan = Plan(channels_last=True)
    conv = prepare_model(conv_net(), plan)
    assert conv[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv[0].weight.is_contiguous()
    linear = nn.Linear(3, 2)
    assert not uses_channels_last(linear, plan)
    assert prepare_model(linear, plan).weight.is_contiguous()
    assert not uses_channels_last(conv_net(), Plan())


@pytest.mark.parametrize("mode,expected", [("default", {}), ("max-autotune",
                                                             {"mode": "max-autotune"})])
def test_compile_mode_is_passed_to_torch_compile(monkeypatch, mode, expected):
    calls = []
    monkeypatch.setattr(torch, "compile", lambda m, **kw: calls.append(kw) or m)
    prepare_model(nn.Linear(2, 2), Plan(compile=mode))
    assert calls == [expected]
    calls.clear()
    prepare_model(nn.Linear(2, 2), Plan(compile="off"))
    assert calls == []


# ---------------------------------------------------------------- data


def _ds(n: int = 10) -> TensorDataset:
    return TensorDataset(torch.arange(n, dtype=torch.float32).unsqueeze(1), torch.arange(n))


def test_make_loader_passes_the_plan_knobs():
    plan = Plan(batch_size=4, num_workers=2, prefetch_factor=3, persistent_workers=True,
                pin_memory=True)
    collate = lambda items: items  # noqa: E731
    loader = make_loader(_ds(), plan, collate_fn=collate)
    assert loader.batch_size == 4 and loader.num_workers == 2
    assert loader.prefetch_factor == 3 and loader.persistent_workers
    assert loader.collate_fn is collate and loader.drop_last
    assert loader.pin_memory is False  # pinning only helps copies to a CUDA device


def test_make_loader_without_workers_keeps_defaults():
    loader = make_loader(_ds(), Plan(batch_size=3), shuffle=False, drop_last=False)
    assert loader.num_workers == 0 and not loader.persistent_workers
    assert [len(b[0]) for b in loader] == [3, 3, 3, 1]


def test_make_loader_never_drops_the_only_batch():
    assert len(make_loader(_ds(3), Plan(batch_size=8))) == 1


def test_make_loader_shuffles_reproducibly_by_seed():
    def order(seed):
        return [b[1].tolist() for b in make_loader(_ds(), Plan(batch_size=5), seed=seed)]

    assert order(1) == order(1)
    assert order(1) != order(2)


def test_to_device_moves_nested_batches_and_keeps_types():
    Pair = namedtuple("Pair", "x y")
    batch = {"a": [torch.zeros(2), (torch.ones(1), "label")], "b": Pair(torch.ones(2), 3),
             "c": OrderedDict(z=torch.zeros(1))}
    moved = to_device(batch, "cpu")
    assert isinstance(moved["b"], Pair) and moved["b"].y == 3
    assert isinstance(moved["a"], list) and isinstance(moved["a"][1], tuple)
    assert moved["a"][1][1] == "label"
    assert isinstance(moved["c"], OrderedDict)
    assert torch.equal(moved["a"][0], torch.zeros(2))


def test_to_device_channels_last_converts_4d_tensors_only():
    images, labels = to_device((torch.randn(2, 3, 4, 4), torch.arange(2)), "cpu",
                               channels_last=True)
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert not images.is_contiguous()
    assert labels.is_contiguous()


@pytest.mark.parametrize("batch,n", [
    (torch.zeros(5, 3), 5),
    ((torch.zeros(4), torch.zeros(4)), 4),
    ({"x": torch.zeros(6, 2)}, 6),
    ([["a", "b", "c"]], 3),
    (["a", "b"], 2),
    (torch.tensor(1.0), 1),
])
def test_batch_size_of(batch, n):
    assert batch_size_of(batch) == n


# ---------------------------------------------------------------- learning rate


def test_lr_warmup_is_linear_then_constant():
    plan = Plan(lr=0.1, warmup_steps=4)
    assert [lr_at(s, plan) for s in range(6)] == pytest.approx(
        [0.025, 0.05, 0.075, 0.1, 0.1, 0.1])
    assert lr_at(0, Plan(lr=0.1)) == 0.1


def test_set_lr_keeps_per_group_ratios():
    a, b = nn.Linear(1, 1), nn.Linear(1, 1)
    opt = torch.optim.SGD([{"params": a.parameters()},
                           {"params": b.parameters(), "lr": 0.01}], lr=0.1)
    scales = lr_scales(opt)
    set_lr(opt, 1.0, scales)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1.0, 0.1])


# ---------------------------------------------------------------- apply()


def test_apply_prepares_everything_for_a_user_loop(restore_torch_state):
    model = nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    plan = Plan(lr=0.2, warmup_steps=2, batch_size=5, precision="bf16")
    pp = apply(plan, model, opt, _ds(), shuffle=False)
    assert isinstance(pp, Applied) and pp.device == torch.device("cpu")
    assert pp.scaler is None and pp.optimizer is opt
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)  # warmup step 0
    assert pp.update_lr(5) == pytest.approx(0.2) == opt.param_groups[0]["lr"]
    x, y = pp.to_device(next(iter(pp.loader)))
    assert y.tolist() == [0, 1, 2, 3, 4]
    with pp.autocast():
        assert (pp.model(x)).dtype == torch.bfloat16


def test_apply_without_dataset_has_no_loader(restore_torch_state):
    assert apply(Plan(), nn.Linear(1, 1)).loader is None


def test_apply_consults_the_hardware_check_when_present(monkeypatch, restore_torch_state):
    fake = types.ModuleType("perfpilot.devices")

    def check_plan(plan, machine=None):
        raise PlanError("plan key 'precision': 'bf16' is not supported by this CPU")

    fake.check_plan = check_plan
    monkeypatch.setitem(sys.modules, "perfpilot.devices", fake)
    with pytest.raises(PlanError, match="not supported"):
        apply(Plan(precision="bf16"), nn.Linear(1, 1))


def test_perfpilot_apply_is_the_function_and_the_module_has_its_own_name(restore_torch_state):
    import perfpilot
    import perfpilot.apply_plan as module

    assert perfpilot.apply is module.apply  # no module shadows the public function
    pp = perfpilot.apply(Plan(), nn.Linear(1, 1))
    assert isinstance(pp, Applied) and module.make_loader is make_loader

