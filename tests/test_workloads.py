"""The built-in workloads: they load, honour the contract, train, and pickle."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from perfpilot.engine import Trainer
from perfpilot.plan import Plan
from perfpilot.workload import BUILTINS, Workload, check_workload, load_workload
from perfpilot.workloads import augmented, charlm, digits
from perfpilot.workloads._common import split_indices


@pytest.fixture(scope="module", params=sorted(BUILTINS))
def builtin(request: pytest.FixtureRequest) -> Workload:
    return load_workload(request.param)


def test_every_builtin_loads_and_passes_the_check(builtin: Workload) -> None:
    check_workload(builtin)
    assert builtin.target is not None and builtin.metric is not None
    assert builtin.baseline.precision == "fp32" and builtin.baseline.num_workers == 0
    assert builtin.description


def test_every_builtin_trains_a_few_steps(builtin: Workload) -> None:
    plan = builtin.baseline.replace(batch_size=8)
    with Trainer(builtin, plan) as trainer:
        steps = trainer.train_steps(3)
        value = trainer.evaluate(max_batches=2)
    assert [s.samples for s in steps] == [8, 8, 8]
    assert all(math.isfinite(s.loss) for s in steps)
    assert value is not None and math.isfinite(value)


def test_every_builtin_and_its_datasets_pickle(builtin: Workload) -> None:
    """Process executors ship workloads; DataLoader workers may ship datasets (spawn)."""
    assert pickle.loads(pickle.dumps(builtin)).name == builtin.name
    for data in (builtin.train_data(), builtin.val_data()):  # type: ignore[misc]
        clone = pickle.loads(pickle.dumps(data))
        assert len(clone) == len(data)


# ---------------------------------------------------------------- digits


def test_digits_learns() -> None:
    w = digits.workload()
    with Trainer(w, w.baseline) as trainer:
        before = trainer.evaluate()
        trainer.train_steps(60)
        after = trainer.evaluate()
    assert before is not None and after is not None
    assert before < 0.3 < 0.7 < after


def test_digits_split_is_fixed_and_disjoint() -> None:
    train, val = split_indices(1797, digits.VAL_FRACTION, digits.SPLIT_SEED)
    again = split_indices(1797, digits.VAL_FRACTION, digits.SPLIT_SEED)
    assert torch.equal(train, again[0]) and torch.equal(val, again[1])
    assert len(set(train.tolist()) | set(val.tolist())) == 1797
    assert len(digits.train_data()) == len(train) and len(digits.val_data()) == len(val)
    x, y = digits.train_data()[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and 0 <= x.min() <= x.max() <= 1
    assert y.dtype == torch.int64


def test_digits_runs_channels_last_in_bf16() -> None:
    w = digits.workload()
    plan = w.baseline.replace(channels_last=True, precision="bf16", batch_size=16)
    with Trainer(w, plan) as trainer:
        steps = trainer.train_steps(2)
    assert all(math.isfinite(s.loss) for s in steps)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtins_train_on_cuda(name: str) -> None:  # pragma: no cover - GPU only
    w = load_workload(name)
    plan = w.baseline.replace(device="cuda", precision="bf16", pin_memory=True)
    with Trainer(w, plan) as trainer:
        steps = trainer.train_steps(3)
        assert trainer.evaluate(max_batches=2) is not None
    assert all(math.isfinite(s.loss) for s in steps)


# ---------------------------------------------------------------- charlm


def test_charlm_reads_the_stdlib_sources_deterministically() -> None:
    data = charlm.corpus()
    assert data.dtype == torch.uint8 and len(data) == charlm.TEXT_BYTES
    first = sorted(charlm.stdlib_dir().glob("*.py"))[0].read_bytes()
    assert bytes(data[: min(len(first), 1000)].tolist()) == first[:1000]


def test_charlm_windows_are_next_byte_pairs() -> None:
    windows = charlm.ByteWindows(torch.arange(10, dtype=torch.uint8), block=4, stride=2)
    assert len(windows) == 3  # starts 0, 2, 4; each needs block + 1 bytes
    x, y = windows[2]
    assert x.tolist() == [4, 5, 6, 7] and y.tolist() == [5, 6, 7, 8]
    with pytest.raises(IndexError):
        windows[3]
    train, val = charlm.train_data(), charlm.val_data()
    assert len(train) == charlm.TEXT_BYTES - charlm.VAL_BYTES - charlm.BLOCK
    assert len(val) == (charlm.VAL_BYTES - 1) // charlm.BLOCK


def test_charlm_starts_near_uniform_and_learns() -> None:
    w = charlm.workload()
    with Trainer(w, w.baseline.replace(lr=3e-3, batch_size=16)) as trainer:
        before = trainer.evaluate(max_batches=4)
        trainer.train_steps(25)
        after = trainer.evaluate(max_batches=4)
    assert before is not None and after is not None
    assert abs(before - math.log(256)) < 0.3
    assert after < before - 1.5


def test_charlm_model_is_causal() -> None:
    model = charlm.model().eval()
    x = torch.randint(0, 256, (1, charlm.BLOCK))
    changed = x.clone()
    changed[0, -1] = (x[0, -1] + 1) % 256
    with torch.no_grad():
        a, b = model(x), model(changed)
    assert torch.allclose(a[:, :-1], b[:, :-1], atol=1e-5)
    assert not torch.allclose(a[:, -1], b[:, -1])


# ---------------------------------------------------------------- augmented


def test_augment_shapes_ranges_and_randomness() -> None:
    train = augmented.train_data()
    (a, label), (b, _) = train[0], train[0]
    assert a.shape == (3, augmented.SIZE, augmented.SIZE) and a.dtype == torch.float32
    assert not torch.equal(a, b)  # a fresh augmentation per access
    lo, hi = (0 - augmented.MEAN) / augmented.STD, (1 - augmented.MEAN) / augmented.STD
    assert lo - 1e-6 <= a.min() and a.max() <= hi + 1e-6
    assert label == digits.train_data()[0][1]
    source = train.sources[0]
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(augmented.augment(source, g1), augmented.augment(source, g2))


def test_augmented_validation_is_deterministic() -> None:
    a, b = augmented.val_data(), augmented.val_data()
    assert torch.equal(a.x, b.x) and len(a) == len(digits.val_data())


def test_augmented_trains_with_loader_workers() -> None:
    w = augmented.workload()
    plan = w.baseline.replace(batch_size=16, num_workers=2, persistent_workers=True)
    with Trainer(w, plan) as trainer:
        steps = trainer.train_steps(4)
    assert [s.samples for s in steps] == [16] * 4


def test_baselines_are_plain_user_settings() -> None:
    for name in BUILTINS:
        plan = load_workload(name).baseline
        assert plan == Plan(batch_size=plan.batch_size, lr=plan.lr)
