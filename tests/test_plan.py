"""Tests of perfpilot.plan: validation names the key, JSON round trip, partial files."""

from __future__ import annotations

import json

import pytest

from perfpilot.errors import PlanError, UserError
from perfpilot.plan import (
    COMPILE_MODES,
    PLAN_VERSION,
    PRECISIONS,
    Plan,
    knob_names,
    load_plan,
    save_plan,
)

# (key, bad value, other settings needed to reach that key's check)
BAD_VALUES: list[tuple[str, object, dict]] = [
    ("device", "gpu", {}), ("device", "cuda:x", {}), ("device", "", {}), ("device", 0, {}),
    ("device", "CPU", {}),
    ("precision", "fp8", {}), ("precision", None, {}), ("precision", 16, {}),
    ("compile", "on", {}), ("compile", True, {}), ("compile", None, {}),
    ("channels_last", 1, {}), ("channels_last", "yes", {}),
    ("batch_size", 0, {}), ("batch_size", -8, {}), ("batch_size", 1.5, {}),
    ("batch_size", True, {}), ("batch_size", "32", {}), ("batch_size", None, {}),
    ("lr", 0, {}), ("lr", -0.1, {}), ("lr", float("nan"), {}), ("lr", float("inf"), {}),
    ("lr", True, {}), ("lr", "0.1", {}), ("lr", None, {}),
    ("warmup_steps", -1, {}), ("warmup_steps", 1.0, {}),
    ("grad_accum", 0, {}), ("grad_accum", 2.0, {}),
    ("num_workers", -1, {}), ("num_workers", None, {}),
    ("prefetch_factor", 0, {"num_workers": 2}), ("prefetch_factor", 2, {}),
    ("prefetch_factor", 2.0, {"num_workers": 2}),
    ("pin_memory", 1, {}), ("pin_memory", None, {}),
    ("persistent_workers", True, {}), ("persistent_workers", "no", {"num_workers": 2}),
    ("cpu_threads", 0, {}), ("cpu_threads", 2.5, {}),
    ("interop_threads", 0, {}), ("interop_threads", "4", {}),
    ("cudnn_benchmark", 0, {}),
]


def test_defaults_are_valid_and_version_comes_first():
    d = Plan().to_dict()
    assert next(iter(d)) == "version" and d["version"] == PLAN_VERSION
    assert list(d)[1:] == list(knob_names())


def test_every_knob_has_bad_value_cases():
    assert {key for key, _, _ in BAD_VALUES} == set(knob_names())


@pytest.mark.parametrize("key, value, others", BAD_VALUES,
                         ids=[f"{k}={v!r}" for k, v, _ in BAD_VALUES])
def test_bad_values_name_the_key(key, value, others):
    with pytest.raises(PlanError, match=f"plan key '{key}'"):
        Plan(**others, **{key: value})
    with pytest.raises(PlanError, match=f"'{key}'"):  # the same through JSON
        Plan.from_dict({**others, key: value})


@pytest.mark.parametrize("data", [
    {"device": "cuda:1"}, {"device": "mps"}, {"device": "xla"}, {"precision": "bf16"},
    {"compile": "max-autotune"}, {"num_workers": 4, "prefetch_factor": 4,
                                  "persistent_workers": True},
    {"lr": 1}, {"cpu_threads": 2, "interop_threads": 1}, {"grad_accum": 8},
])
def test_good_values_are_accepted(data):
    plan = Plan.from_dict(data)
    for k, v in data.items():
        assert getattr(plan, k) == v


def test_all_precisions_and_compile_modes_are_valid():
    for p in PRECISIONS:
        assert Plan(precision=p).precision == p
    for c in COMPILE_MODES:
        assert Plan(compile=c).compile == c


def test_unknown_key_is_named_with_the_known_keys():
    with pytest.raises(PlanError, match=r"unknown plan key 'batchsize' \(known keys: device"):
        Plan.from_dict({"batchsize": 64})
    with pytest.raises(PlanError, match="unknown plan key 'threads'"):
        Plan().replace(threads=4)


def test_replace_validates():
    assert Plan().replace(batch_size=64).batch_size == 64
    with pytest.raises(PlanError, match="'batch_size'"):
        Plan().replace(batch_size=0)


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_unsupported_version_is_named(version):
    with pytest.raises(PlanError, match="plan key 'version'"):
        Plan.from_dict({"version": version})


def test_missing_version_means_current():
    assert Plan.from_dict({}) == Plan()


def test_boolean_version_is_rejected():
    with pytest.raises(PlanError, match="'version'"):
        Plan.from_dict({"version": True})


def test_device_with_trailing_newline_is_rejected():
    with pytest.raises(PlanError, match="'device'"):
        Plan(device="cpu\n")


def test_non_object_json_is_rejected():
    with pytest.raises(PlanError, match="JSON object"):
        Plan.from_dict([1, 2])  # type: ignore[arg-type]


def test_json_round_trip_of_every_knob():
    plan = Plan(device="cuda:1", precision="bf16", compile="reduce-overhead",
                channels_last=True, batch_size=256, lr=0.05, warmup_steps=100, grad_accum=4,
                num_workers=3, prefetch_factor=4, pin_memory=True, persistent_workers=True,
                cpu_threads=6, interop_threads=2, cudnn_benchmark=True)
    back = Plan.from_dict(json.loads(plan.to_json()))
    assert back == plan
    assert set(plan.diff(Plan())) == set(knob_names())
    assert plan.diff(back) == {}
    assert Plan().diff(Plan(batch_size=8)) == {"batch_size": (32, 8)}


def test_partial_plan_file_takes_the_rest_from_base(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text('{"batch_size": 128}')
    base = Plan(lr=0.1, num_workers=2, pin_memory=True)
    plan = load_plan(path, base=base)
    assert plan == base.replace(batch_size=128)
    assert load_plan(path) == Plan(batch_size=128)  # no base: the defaults


def test_save_and_load_round_trip(tmp_path):
    plan = Plan(precision="bf16", batch_size=64)
    path = tmp_path / "p.json"
    save_plan(plan, path)
    assert json.loads(path.read_text())["version"] == PLAN_VERSION
    assert load_plan(path) == plan


def test_load_plan_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(PlanError, match=f"plan file not found: {missing}"):
        load_plan(missing)
    broken = tmp_path / "broken.json"
    broken.write_text('{"batch_size": 64,\n}')
    with pytest.raises(PlanError, match=rf"{broken}: not valid JSON .* line 2"):
        load_plan(broken)
    bad = tmp_path / "bad.json"
    bad.write_text('{"precision": "fp8"}')
    with pytest.raises(PlanError, match=rf"{bad}: plan key 'precision': 'fp8'"):
        load_plan(bad)
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"bs": 1}')
    with pytest.raises(PlanError, match=rf"{unknown}: unknown plan key 'bs'"):
        load_plan(unknown)
    with pytest.raises(PlanError, match=f"{tmp_path} is a folder, not a plan file"):
        load_plan(tmp_path)  # a directory


def test_plan_errors_are_user_errors():
    assert issubclass(PlanError, UserError)


def test_binary_plan_file_error_names_the_file(tmp_path):
    binary = tmp_path / "plan.bin"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(PlanError, match=str(binary)):
        load_plan(binary)


def test_plan_is_frozen():
    with pytest.raises(AttributeError):
        Plan().batch_size = 3  # type: ignore[misc]


# ---------------------------------------------------------------- checking a file early


def test_check_plan_file_names_the_file_and_the_key(tmp_path):
    from perfpilot.plan import check_plan_file

    cases = {"misspelt.json": ({"batch_sise": 64}, "unknown plan key 'batch_sise'"),
             "bad.json": ({"lr": -1}, "plan key 'lr'"),
             "version.json": ({"version": 9}, "plan key 'version'"),
             "list.json": ([1], "must be a JSON object")}
    for name, (data, words) in cases.items():
        path = tmp_path / name
        path.write_text(json.dumps(data))
        with pytest.raises(PlanError, match=words) as info:
            check_plan_file(path)
        assert str(info.value).startswith(f"{path}: ")
    with pytest.raises(PlanError, match="plan file not found"):
        check_plan_file(tmp_path / "missing.json")


def test_check_plan_file_leaves_rules_between_keys_to_the_base(tmp_path):
    """prefetch_factor needs num_workers > 0, which may come from the workload's baseline."""
    from perfpilot.plan import check_plan_file

    path = tmp_path / "partial.json"
    path.write_text(json.dumps({"prefetch_factor": 4}))
    check_plan_file(path)
    assert load_plan(path, base=Plan(num_workers=2)).prefetch_factor == 4
    with pytest.raises(PlanError, match="needs num_workers > 0"):
        load_plan(path)


@pytest.mark.parametrize("key, value, others", BAD_VALUES,
                         ids=[f"{k}={v!r}" for k, v, _ in BAD_VALUES])
def test_check_value_agrees_with_validation(key, value, others):
    """Each value the Plan refuses on its own is refused by check_value too; the two
    refused only because of another key (num_workers 0) pass it."""
    from perfpilot.plan import check_value

    if (key, repr(value)) in (("prefetch_factor", "2"), ("persistent_workers", "True")):
        check_value(key, value)
        return
    with pytest.raises(PlanError, match=f"'{key}'"):
        check_value(key, value)
