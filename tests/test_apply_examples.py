"""The documented examples of applying a plan: a plain PyTorch loop and a Lightning run."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import pytest

from perfpilot.plan import Plan, save_plan

EXAMPLES = Path(__file__).parent.parent / "examples" / "apply"
PLAN = Plan(batch_size=64, lr=3e-3, warmup_steps=3, num_workers=1, cpu_threads=1,
            precision="bf16")


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_own_loop_trains_under_the_plan(tmp_path: Path) -> None:
    save_plan(PLAN, tmp_path / "plan.json")
    losses = load("own_loop").main(str(tmp_path / "plan.json"), steps=30)
    assert len(losses) == 30 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-5:]) < sum(losses[:5])  # it learns


def test_own_loop_without_a_plan_uses_the_defaults() -> None:
    assert len(load("own_loop").main(None, steps=3)) == 3


def test_lightning_example_trains_under_the_plan(tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    save_plan(PLAN, tmp_path / "plan.json")
    module = load("lightning_module").main(str(tmp_path / "plan.json"), steps=12)
    assert len(module.losses) == 12 and all(math.isfinite(x) for x in module.losses)
    assert module.hparams.batch_size == 64  # the plan's batch size reached the module
