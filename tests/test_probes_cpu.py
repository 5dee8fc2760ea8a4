"""The CPU probe: own user/system time, page faults and other processes' use, measured
over the steady window, typed in the record and shown with a warning on a busy machine."""

from __future__ import annotations

import pytest

from perfpilot.probes.cpu import CpuProbe, read_sample
from perfpilot.record import RunRecord, StatSummary
from perfpilot.record_probe_sections import CpuUse
from perfpilot.render.profile_console import busy_note, cpu_parts


def probe_with(readings: list[tuple[float, dict[str, float]]]) -> CpuProbe:
    times = iter([t for t, _ in readings])
    values = iter([r for _, r in readings])
    return CpuProbe(clock=lambda: next(times), read=lambda: next(values))


def reading(user: float, system: float, busy: float, faults: float = 0.0,
            children: float = 0.0, load: float = 1.0) -> dict[str, float]:
    return {"user_s": user, "system_s": system, "machine_busy_s": busy,
            "minor_faults": faults, "major_faults": 0.0, "children_s": children,
            "load_1m": load}


def test_the_steady_window_is_differenced_and_others_are_what_the_machine_did_besides():
    p = probe_with([(0.0, reading(1.0, 0.1, 100.0)),       # start-up: not in the window
                    (2.0, reading(3.0, 0.5, 104.0, 1000, load=2.0)),  # window opens
                    (6.0, reading(5.4, 2.1, 114.0, 9000, children=1.0, load=3.0))])
    p.sample()
    p.sample(steady_from=1.5)
    p.sample(steady_from=1.5)
    cpu = CpuUse.from_dict(p.section(cores=2))
    assert cpu.window == "steady" and cpu.span_s == pytest.approx(4.0)
    assert cpu.user_s == pytest.approx(2.4) and cpu.system_s == pytest.approx(1.6)
    assert cpu.system_share == pytest.approx(0.4)
    # 10 busy CPU seconds on the machine: 4 ours, 1 our workers', 5 the others'.
    assert cpu.children_s == pytest.approx(1.0)
    assert cpu.other_processes_s == pytest.approx(5.0) and cpu.other_cores == pytest.approx(1.25)
    assert cpu.minor_faults == 8000 and (cpu.load_1m_start, cpu.load_1m_end) == (2.0, 3.0)


def test_a_failing_reading_is_a_note_not_an_exception():
    def broken() -> dict[str, float]:
        raise OSError("no /proc")

    p = CpuProbe(read=broken)
    p.sample()
    d = p.section(cores=2)
    assert d["error"] == "OSError: no /proc" and not CpuUse.from_dict(d).measured


def test_a_real_reading_has_the_fields_the_section_needs():
    r = read_sample()
    assert {"user_s", "system_s", "children_s", "machine_busy_s"} <= set(r)
    assert r["machine_busy_s"] >= r["user_s"] + r["system_s"] - 1.0  # the machine includes us


def record_with(cpu: CpuUse) -> RunRecord:
    return RunRecord(workload="w", plan={}, steps=1, samples_per_s=1.0,
                     step_time_s=StatSummary(1, 1, 1, 1), phases_s={}, peak_memory_bytes=0,
                     cpu=cpu)


def test_the_section_round_trips_and_a_busy_machine_is_said():
    busy = CpuUse(span_s=4.0, window="steady", user_s=2.4, system_s=1.6,
                  other_processes_s=5.0, minor_faults=8000, load_1m_end=3.0, usable_cores=2)
    rec = record_with(busy)
    assert RunRecord.from_dict(rec.to_dict()).cpu == busy
    text = "; ".join(cpu_parts(rec))
    assert "system 1.6 s (40% of 4 s)" in text and "2,000 page faults/s" in text
    assert "other processes used 1.2 of 2 cores, load average 3.0" in text
    assert "Other processes kept 1.2 cores busy" in busy_note(rec)
    quiet = record_with(CpuUse(span_s=4.0, window="steady", user_s=3.0, system_s=0.1,
                               other_processes_s=0.2, usable_cores=2))
    assert busy_note(quiet) == "" and cpu_parts(record_with(CpuUse())) == []


def test_the_window_ends_at_the_last_step_not_after_the_scripts_tail():
    p = probe_with([(0.0, reading(0.0, 0.0, 0.0)),
                    (2.0, reading(2.0, 0.0, 2.0)),
                    (4.0, reading(4.0, 0.0, 4.0)),
                    (9.0, reading(4.5, 3.0, 9.0))])  # the tail: saving, system time
    for _ in range(4):
        p.sample(steady_from=1.0)
    cpu = CpuUse.from_dict(p.section(cores=2, until=4.5))
    assert cpu.span_s == pytest.approx(2.0) and cpu.system_s == 0.0
    assert CpuUse.from_dict(p.section(cores=2)).span_s == pytest.approx(7.0)  # no bound


def test_the_allocator_is_named_with_its_settings(monkeypatch):
    import platform

    from perfpilot.probes import cpu as cpu_mod

    cpu_mod._allocator.cache_clear()
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libjemalloc.so.2")
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    try:
        assert cpu_mod.allocator() == {"allocator": "jemalloc",
                                       "allocator_env": {"MALLOC_ARENA_MAX": "2"}}
        monkeypatch.delenv("LD_PRELOAD")
        cpu_mod._allocator.cache_clear()
        glibc = platform.libc_ver()[0] == "glibc"
        assert cpu_mod.allocator()["allocator"] == ("glibc" if glibc else "")
    finally:
        cpu_mod._allocator.cache_clear()
