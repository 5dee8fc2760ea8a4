"""``system-time``: the kernel's share of the process's CPU, allocator churn and its
environment fix (on synthetic records), and how ``--verify`` applies that fix."""

from __future__ import annotations

from typing import Any

import pytest
from test_diagnose_rules import changed, record

from perfpilot.diagnose import diagnose, facts_of
from perfpilot.diagnose.system import MALLOC_ENV, system_time
from perfpilot.record import amdahl


def cpu(user: float = 1.0, system: float = 2.0, faults: int = 500_000, span: float = 4.05,
        allocator: str = "glibc", env: dict[str, str] | None = None, **kw: Any
        ) -> dict[str, Any]:
    return {"span_s": span, "window": "steady", "user_s": user, "system_s": system,
            "minor_faults": faults, "usable_cores": 2, "allocator": allocator,
            "allocator_env": env or {}, **kw}


def test_allocator_churn_on_glibc_offers_the_malloc_environment():
    rec = changed(record(), cpu=cpu())
    (f,) = system_time(facts_of(rec))
    assert f.id == "system-time" and "churn" in f.title.lower()
    assert f.plan_change == {"env": MALLOC_ENV}
    assert "MALLOC_MMAP_MAX_=0" in f.fix and "peak" in f.fix  # the cost is said
    assert "67%" in f.evidence and "123,457 page faults/s" in f.evidence
    # the share: system's part of the CPU, over the part of the window spent computing
    assert f.time_share == pytest.approx(2 / 3, rel=1e-3)
    assert f.estimated_speedup == pytest.approx(amdahl(2 / 3, 5.0), rel=1e-3)
    assert f.measured_value("system_share") == pytest.approx(2 / 3, abs=1e-3)


@pytest.mark.parametrize(("allocator", "env"), [("jemalloc", {}),
                                                ("glibc", {"MALLOC_MMAP_MAX_": "0"}), ("", {})])
def test_no_setting_is_offered_where_it_would_not_apply(allocator: str, env: dict):
    (f,) = system_time(facts_of(changed(record(), cpu=cpu(allocator=allocator, env=env))))
    assert f.plan_change is None and f.confidence == "low"
    assert "preallocated buffers" in f.fix


def test_system_time_without_page_faults_is_not_called_churn():
    (f,) = system_time(facts_of(changed(record(), cpu=cpu(faults=100))))
    assert f.plan_change is None and "not page faults" in f.evidence


@pytest.mark.parametrize("kw", [{"system": 0.2},          # 17% of CPU: under 20%
                                {"user": 0.1, "system": 0.2},  # 0.3 CPU s: too little
                                {"span": 0.0}])           # not measured
def test_silent_below_its_thresholds(kw: dict[str, float]):
    assert system_time(facts_of(changed(record(), cpu=cpu(**kw)))) == []


def test_a_data_bound_loop_counts_only_its_computing_share():
    # half the window waits for loader workers: the process's own system time can only
    # stretch the other half
    rec = changed(record({"data": 0.021}), cpu=cpu())  # forward + backward + optimizer
    f = next(x for x in diagnose(rec, lint=False) if x.id == "system-time")
    assert f.time_share == pytest.approx(2 / 3 * 0.5, rel=1e-2)


def test_verify_applies_an_env_change_to_the_rerun_environment(monkeypatch):
    import perfpilot.probes.verify as verify
    from perfpilot.probes.launch import ChildResult, Target

    seen: list[dict[str, Any]] = []

    def fake_run(target, config, *, quiet=False, extra_env=None):
        seen.append({"overrides": config["overrides"], "env": extra_env})
        return ChildResult(1, None)

    monkeypatch.setattr(verify, "run_profiled", fake_run)
    base, fixed = verify._script_measures(Target(kind="script", args=("x.py",)),
                                          {"env": {"MALLOC_MMAP_MAX_": 0}}, None)
    for measure in (base, fixed):
        with pytest.raises(RuntimeError):
            measure()
    assert seen == [{"overrides": {}, "env": {}},
                    {"overrides": {}, "env": {"MALLOC_MMAP_MAX_": "0"}}]
