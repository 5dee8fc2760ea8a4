"""StackSampler: stacks, time weights, Python/hand-off classification, line fix-ups."""

from __future__ import annotations

import dis
import sys
import threading
import time

import pytest

from perfpilot.probes.sampler import StackSampler


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def parked_in_known_function(ready: threading.Event, release: threading.Event) -> None:
    ready.set()
    release.wait(10)


@pytest.fixture
def worker():
    ready, release = threading.Event(), threading.Event()
    th = threading.Thread(target=parked_in_known_function, args=(ready, release))
    th.start()
    ready.wait(5)
    yield th
    release.set()
    th.join(5)


def main_stacks(section: dict) -> list[dict]:
    return [s for s in section["stacks"] if s["thread"] == "MainThread"]


def test_tick_attributes_time_and_classifies(worker):
    clock = Clock()
    s = StackSampler(0.005, clock=clock, main_ident=worker.ident, tag=lambda: "forward")
    switch = sys.getswitchinterval()
    own = threading.get_ident()
    clock.t = 0.010
    s.tick(late_s=0.0, skip=own)  # the GIL was free: native code or waiting
    clock.t = 0.015
    s.tick(late_s=switch * 1.2, skip=own)  # forced hand-over: Python was running
    clock.t = 0.025
    s.tick(late_s=switch * 0.5, skip=own)  # released early: the line is not known
    sec = s.section()
    stacks = main_stacks(sec)
    assert len(stacks) == 1
    st = stacks[0]
    assert st["frames"][-1][2] == "wait"  # Event.wait inside the known function...
    assert any(f[2] == "parked_in_known_function" for f in st["frames"])
    assert [f[2] for f in st["frames"]][0] in ("_bootstrap", "run")  # outermost first
    assert st["count"] == 3 and st["tag"] == "forward"
    assert st["seconds"] == pytest.approx(0.025)
    assert st["python_s"] == pytest.approx(0.005)
    assert st["handoff_s"] == pytest.approx(0.010)
    assert sec["total"] == 3 and sec["seconds"] == pytest.approx(0.025)


def loop_with_membership(xs: list[int]) -> int:
    n = 0
    for x in range(50):
        if x in xs:
            n += 1
    return n


def test_lineless_back_edge_maps_to_the_loop_body():
    s = StackSampler(0.005)
    code = loop_with_membership.__code__
    back = [i.offset for i in dis.get_instructions(code) if i.opname.startswith("JUMP_BACKWARD")]
    first = code.co_firstlineno
    for offset in back:
        assert first + 2 <= s._line_at(code, id(code), offset) <= first + 4


def tight_loop(xs: list[int]) -> int:
    total = 0
    for x in xs:
        total += x * x
    return total


def _back_edges(code) -> list[int]:
    return [i.offset for i in dis.get_instructions(code) if i.opname.startswith("JUMP_BACKWARD")]


def test_back_edge_sample_goes_to_the_membership_test_not_the_line_after():
    # The GIL is handed over at the back edge, after `x in xs` ran; the scan is the cost.
    s = StackSampler(0.005)
    code = loop_with_membership.__code__
    for offset in _back_edges(code):
        assert s._line_at(code, id(code), offset) == code.co_firstlineno + 3


def test_back_edge_sample_of_a_tight_loop_goes_to_its_body():
    s = StackSampler(0.005)
    code = tight_loop.__code__
    for offset in _back_edges(code):
        assert s._line_at(code, id(code), offset) == code.co_firstlineno + 3


def test_no_frame_object_outlives_a_tick(worker):
    import gc
    import types

    s = StackSampler(0.005, main_ident=worker.ident)
    s.tick(skip=threading.get_ident())
    held = [o for o in gc.get_referents(*vars(s).values()) if isinstance(o, types.FrameType)]
    assert held == []  # see StackSampler._walk: kept frames crash CPython 3.11
    assert gc.isenabled()  # restored after the tick


def test_background_sampling_is_cheap():
    s = StackSampler(0.002)
    s.start()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 0.3:
        sum(i * i for i in range(1000))
    s.stop()
    sec = s.section()
    assert sec["total"] >= 20
    assert sec["busy_s"] < 0.3  # CPU time of the sampler thread itself
    py = sum(st["python_s"] for st in main_stacks(sec))
    assert py > 0  # the busy loop above is Python bytecode
