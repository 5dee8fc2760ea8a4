"""perfpilot.trial: the Trial's JSON shape, how trial functions' fates become states, and
trial identities."""

from __future__ import annotations

import json

import pytest

from perfpilot.trial import Outcome, Trial, execute_trial, outcome_of_exception, trial_identity


def test_trial_round_trip():
    t = Trial(number=3, stage="hardware", plan={"precision": "bf16"}, state="oom",
              reason="CUDA out of memory", measurements={"ratio": 1.2}, started_at=1.0,
              finished_at=2.0)
    d = t.to_dict()
    assert list(d) == ["number", "stage", "plan", "state", "reason", "measurements",
                       "started_at", "finished_at"]  # the JSON shape records keep
    assert Trial.from_dict(json.loads(json.dumps(d))) == t
    assert Trial.from_dict({**d, "added_later": 1}) == t


@pytest.mark.parametrize("exc, state", [
    (MemoryError("x"), "oom"), (RuntimeError("CUDA out of memory. Tried"), "oom"),
    (FloatingPointError("loss is nan"), "nan"), (TimeoutError("slow"), "timeout"),
    (ValueError("boom"), "failed")])
def test_exceptions_become_states(exc, state):
    assert outcome_of_exception(exc).state == state


def test_execute_trial_times_and_classifies():
    ticks = iter([10.0, 12.5])
    t = execute_trial(4, "s", {"k": 1}, lambda: (_ for _ in ()).throw(ValueError("boom")),
                      clock=lambda: next(ticks))
    assert (t.state, t.reason, t.started_at, t.finished_at) == ("failed", "ValueError: boom",
                                                                10.0, 12.5)
    with pytest.raises(ValueError, match="return state 'nan'"):
        execute_trial(0, "s", {}, lambda: Outcome("complete", {"x": float("nan")}))
    with pytest.raises(KeyboardInterrupt):
        execute_trial(0, "s", {}, lambda: (_ for _ in ()).throw(KeyboardInterrupt()))


def test_equal_keys_have_equal_identities():
    assert trial_identity("s", {"a": 1, "b": 2}) == trial_identity("s", {"b": 2, "a": 1})
    assert trial_identity("s", {"a": 1}) != trial_identity("t", {"a": 1})
