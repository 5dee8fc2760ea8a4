"""Injection of script-plan knobs (probes/inject.py) and the loss per step (probes/losses.py).

Real runs of tests/fixtures/inject/knobs.py under the runner: the script reports from the
inside what it saw (threads, loader settings, lr, the dtype inside forward, memory format,
whether it was compiled), and prints its losses, which the record must repeat.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from perfpilot.probes.assemble import build_record
from perfpilot.probes.hooks import TorchHooks
from perfpilot.probes.inject import FP16_REASON, NO_LOADER, NO_MODEL, Injector
from perfpilot.probes.launch import parse_target, run_profiled
from perfpilot.probes.losses import LossRecorder, loss_history
from perfpilot.probes.steps import StepTracker

FIXTURES = Path(__file__).parent / "fixtures" / "inject"
SCRIPT = FIXTURES / "knobs.py"


def run(changes, *args, tmp_path=None):
    """Run knobs.py under the runner as the tuner does; (record, facts, printed losses)."""
    cfg = {"overrides": changes, "window": False, "calibrate": False, "steps": None,
           "interval_s": 0.02, "measure_nograd": False, "save_every_s": 0}
    out = tmp_path / "report.txt"
    target = parse_target([sys.executable, str(SCRIPT), *args, "--report", str(out)])
    res = run_profiled(target, cfg, quiet=True)
    text = out.read_text()
    assert res.exit_code == 0, (res.exit_code, text)
    facts = json.loads(next(ln for ln in text.splitlines() if ln.startswith("FACTS "))[6:])
    losses = [(int(ln.split()[1]), float(ln.split()[2])) for ln in text.splitlines()
              if ln.startswith("LOSS ")]
    return build_record(res.raw), facts, losses


def loads_plainly(path):
    """torch.load of a pickled model in a process without perfpilot: what it holds."""
    code = ("import sys, torch; sys.path.insert(0, sys.argv[2]); "
            "m = torch.load(sys.argv[1], weights_only=False); "
            "print(type(m).__name__, m._compiled_call_impl is None, "
            "any('perfpilot' in repr(type(v)) for v in vars(m).values()))")
    out = subprocess.run([sys.executable, "-c", code, str(path), str(FIXTURES)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_every_knob_applied_with_a_conv_model(tmp_path):
    changes = {"num_workers": 1, "batch_size": 16, "cpu_threads": 1, "interop_threads": 1,
               "seed": 7, "cudnn_benchmark": True, "precision": "bf16",
               "channels_last": True, "lr_scale": 0.5}
    saved = tmp_path / "model.pt"
    rec, facts, losses = run(changes, "--conv", "--save", str(saved), tmp_path=tmp_path)
    assert facts["num_workers"] == 1 and facts["batch_size"] == 16
    assert facts["threads"] == 1 and facts["threads_end"] == 1 and facts["interop"] == 1
    assert facts["initial_seed"] == 7 and facts["cudnn_benchmark"] is True
    assert facts["lr_after_init"] == pytest.approx(0.05)
    assert facts["defaults_lr"] == pytest.approx(0.05)
    assert facts["sched_base_lr"] == pytest.approx(0.05)  # a scheduler sees the scaled lr
    assert facts["inner_dtype"] == "torch.bfloat16"
    assert facts["input_channels_last"] is True and facts["weight_channels_last"] is True
    assert facts["same_params"] is True  # the optimizer still holds the model's params
    assert set(rec.injection.applied) == set(changes) and rec.injection.refused == {}
    # the loss per step is the script's own, step numbers and samples as the record counts
    assert [r[0] for r in rec.loss_history] == [s for s, _ in losses] == list(range(1, 7))
    assert [r[2] for r in rec.loss_history] == [v for _, v in losses]
    assert [r[3] for r in rec.loss_history] == [16 * i for i in range(1, 7)]
    ts = [r[1] for r in rec.loss_history]
    assert ts == sorted(ts) and ts[0] > 0
    assert rec.steps == 6
    assert loads_plainly(saved) == ["ConvNet", "True", "False"]


def test_refused_knobs_change_nothing(tmp_path):
    changes = {"precision": "fp16", "channels_last": True, "num_workers": 2}
    rec, facts, losses = run(changes, "--no-loader", "--scaler", "--steps", "4",
                             tmp_path=tmp_path)
    assert rec.injection.applied == {}
    assert rec.injection.refused == {"precision": FP16_REASON,
                                     "channels_last": "the model has no 2-D convolution",
                                     "num_workers": NO_LOADER}
    assert facts["inner_dtype"] == "torch.float32"
    # scaler.scale(loss).backward(): the scaled value, as the script handed it over
    assert [(r[0], r[2]) for r in rec.loss_history] == losses
    assert [r[3] for r in rec.loss_history] == [8, 16, 24, 32]  # from the forward's input


def test_model_knobs_without_training_are_refused(tmp_path):
    changes = {"precision": "bf16", "compile": "default", "channels_last": True,
               "lr_scale": 2.0}
    rec, facts, _ = run(changes, "--conv", "--no-train", "--steps", "3", tmp_path=tmp_path)
    assert rec.injection.refused == {"precision": NO_MODEL, "compile": NO_MODEL,
                                     "channels_last": NO_MODEL}
    assert set(rec.injection.applied) == {"lr_scale"}
    assert facts["compiled"] is False and facts["weight_channels_last"] is False
    assert facts["lr_after_init"] == pytest.approx(0.2)
    assert rec.loss_history == []


def test_compile_in_place_and_the_pickle_stays_plain(tmp_path):
    saved = tmp_path / "model.pt"
    rec, facts, losses = run({"compile": "default"}, "--steps", "3", "--save", str(saved),
                             tmp_path=tmp_path)
    assert facts["compiled"] is True and facts["same_params"] is True
    assert rec.injection.applied["compile"].startswith("MLP.compile()")
    assert [(r[0], r[2]) for r in rec.loss_history] == losses
    assert not [e for e in rec.profile.hook_errors if "inject" in e]
    assert loads_plainly(saved) == ["MLP", "True", "False"]


# ---------------------------------------------------------------- in process


@pytest.fixture
def hooks_with():
    made = []

    def make(overrides):
        h = TorchHooks(StepTracker(), overrides=overrides, measure_nograd=False)
        h.install()
        made.append(h)
        return h

    yield make
    for h in made:
        h.uninstall()


def test_tensor_lr_is_scaled_once_and_stays_a_tensor(hooks_with):
    h = hooks_with({"lr_scale": 0.5})
    p = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.Adam([p], lr=torch.tensor(0.01))
    assert isinstance(opt.param_groups[0]["lr"], torch.Tensor)
    assert float(opt.param_groups[0]["lr"]) == pytest.approx(0.005)
    assert float(opt.defaults["lr"]) == pytest.approx(0.005)
    h.uninstall()
    opt2 = torch.optim.SGD([p], lr=0.1)  # uninstalled: not scaled
    assert opt2.param_groups[0]["lr"] == 0.1


def test_a_knob_that_raises_is_refused_with_the_reason():
    def too_late(n):
        raise RuntimeError("cannot set number of interop threads after parallel work "
                           "has started")

    inj = Injector({"interop_threads": 1, "cudnn_benchmark": True},
                   patch=lambda *a: None, error=lambda *a: None)
    fake = SimpleNamespace(set_num_interop_threads=too_late,
                           backends=SimpleNamespace(cudnn=SimpleNamespace(benchmark=False)))
    inj.install(fake)
    assert inj.refused == {"interop_threads": "RuntimeError: cannot set number of interop "
                                              "threads after parallel work has started"}
    assert fake.backends.cudnn.benchmark is True and "cudnn_benchmark" in inj.applied


def test_loss_recorder_keeps_the_first_scalar_of_each_step():
    rec = LossRecorder()
    x = torch.ones(3, requires_grad=True)
    rec.on_backward(x * 2, {"optimizer": 0, "backward": 0}, 0.1)  # not a scalar
    rec.on_backward(x.sum(), {"optimizer": 0, "backward": 1}, 0.2)
    rec.on_backward(x.sum() * 3, {"optimizer": 0, "backward": 2}, 0.3)  # same step (acc.)
    rec.on_backward(x.sum() * 5, {"optimizer": 1, "backward": 3}, 0.4)
    rec.on_backward(x.sum() * 7, {"optimizer": 1, "backward": 4}, 0.5)  # GAN's 2nd loss
    rec.on_backward(torch.tensor(1.0), {"optimizer": 2, "backward": 5}, 0.6)  # no grad
    rows = rec.section(final=True)
    assert [r[3] for r in rows] == [3.0, 9.0, 15.0]
    steps = [{"start": 0.1, "end": 0.35, "samples": 4}, {"start": 0.35, "end": 0.55,
                                                         "samples": 4}]
    tr = {"step_kind": "optimizer", "steps": steps}
    # step 1 kept once (its first scalar loss), step 2 once; times are step ends
    assert loss_history(rows, tr) == [[1, 0.25, 3.0, 4], [2, 0.45, 15.0, 8]]
    assert loss_history(rows, {"step_kind": "backward", "steps": []})[0][0] == 2
    assert loss_history(rows, {"step_kind": "data", "steps": steps}) == []
