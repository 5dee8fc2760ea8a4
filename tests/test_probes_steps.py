"""StepTracker: slices, step boundaries, evaluation segments, warm-up (injected clock)."""

from __future__ import annotations

import pytest

from perfpilot.probes.steps import StepTracker


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def tick(self, dt: float) -> None:
        self.t += dt


@pytest.fixture
def clock() -> Clock:
    return Clock()


def train_step(t: StepTracker, c: Clock, loader: int = 1, data: float = 0.01,
               fwd: float = 0.02, bwd: float = 0.03, opt: float = 0.005,
               other: float = 0.001, batch: int = 8) -> None:
    t.data_begin(loader)
    c.tick(data)
    t.data_end(batch)
    t.forward_begin(eval_mode=False, batch_size=batch)
    c.tick(fwd)
    t.forward_end()
    t.backward_begin()
    c.tick(bwd)
    t.backward_end()
    t.optimizer_begin()
    c.tick(opt)
    t.optimizer_end()
    c.tick(other)


def eval_pass(t: StepTracker, c: Clock, loader: int = 2, batches: int = 3) -> None:
    for _ in range(batches):
        t.data_begin(loader)
        c.tick(0.01)
        t.data_end(16)
        t.forward_begin(eval_mode=True)
        c.tick(0.02)
        t.forward_end()
        c.tick(0.001)  # metric bookkeeping between batches


def test_training_steps_and_phases(clock):
    t = StepTracker(clock, process_start=90.0)
    assert t.tag() == "startup"
    clock.tick(1.0)  # imports, model building
    for _ in range(5):
        train_step(t, clock)
    t.finish()
    assert t.step_kind() == "optimizer"
    steps = t.steps("optimizer")
    assert len(steps) == 5
    first, last = steps[0], steps[-1]
    assert first["start"] == pytest.approx(101.0)
    assert last["phases"]["data"] == pytest.approx(0.01)
    assert last["phases"]["backward"] == pytest.approx(0.03)
    # the loop's own code between optimizer.step() and the next fetch is "other"
    assert last["phases"]["other"] == pytest.approx(0.001)
    assert last["samples"] == 8
    assert t.warmup_end == pytest.approx(steps[1]["end"])
    out = t.export(origin=90.0)
    assert out["clock"]["first_activity"] == pytest.approx(11.0)
    assert out["boundaries"]["optimizer"] == 5 and out["boundaries"]["data"] == 5


def test_tags_follow_the_phase(clock):
    t = StepTracker(clock)
    for _ in range(3):
        train_step(t, clock)
    t.data_begin(1)
    assert t.tag() == "data"
    t.data_end(8)
    t.forward_begin()
    assert t.tag() == "forward"


def test_eval_segment_is_kept_out_of_the_training_step(clock):
    t = StepTracker(clock)
    for _ in range(3):
        train_step(t, clock)
    eval_pass(t, clock, batches=3)
    for _ in range(2):
        train_step(t, clock)
    t.finish()
    assert t.eval_segment_count == 1
    # three batches, plus the loop code between the last optimizer step and the first
    # evaluation fetch (it ran "since", so it belongs to the evaluation)
    assert t.eval_s == pytest.approx(3 * 0.031 + 0.001, rel=1e-6)
    step = t.steps("optimizer")[3]  # the step whose interval holds the evaluation
    assert step["phases"]["eval"] == pytest.approx(t.eval_s)
    assert step["phases"]["data"] == pytest.approx(0.01)  # only the training fetch
    assert t.loader_role == {1: "train", 2: "eval"}


def test_frozen_teacher_forward_is_not_evaluation(clock):
    t = StepTracker(clock)
    for _ in range(4):
        t.data_begin(1)
        clock.tick(0.01)
        t.data_end(8)
        t.forward_begin(eval_mode=True)  # teacher under no_grad
        clock.tick(0.02)
        t.forward_end()
        t.forward_begin(eval_mode=False)  # student
        clock.tick(0.02)
        t.forward_end()
        t.backward_begin()
        clock.tick(0.03)
        t.backward_end()
        t.optimizer_begin()
        t.optimizer_end()
    t.finish()
    assert t.eval_s == 0 and t.eval_segment_count == 0
    assert t.steps("optimizer")[-1]["phases"]["forward"] == pytest.approx(0.04)


def test_training_in_eval_mode_is_training(clock):
    t = StepTracker(clock)
    for _ in range(3):
        t.data_begin(1)
        clock.tick(0.01)
        t.data_end(8)
        t.forward_begin(eval_mode=True)  # model.eval() but grads flow (frozen BN)
        clock.tick(0.02)
        t.forward_end()
        t.backward_begin()
        clock.tick(0.03)
        t.backward_end()
        t.optimizer_begin()
        t.optimizer_end()
    t.finish()
    assert t.eval_s == 0 and t.trained_in_eval_mode == 3
    assert t.steps("optimizer")[-1]["phases"]["forward"] == pytest.approx(0.02)
    assert t.steps("optimizer")[-1]["phases"]["data"] == pytest.approx(0.01)


def test_inference_steps_by_batch_then_by_forward(clock):
    t = StepTracker(clock)
    eval_pass(t, clock, loader=3, batches=5)
    t.finish()
    assert t.step_kind() == "data" and len(t.steps("data")) == 5
    t2 = StepTracker(clock)
    for _ in range(4):
        t2.forward_begin(eval_mode=True, batch_size=32)
        clock.tick(0.01)
        t2.forward_end()
    t2.finish()
    assert t2.step_kind() == "forward"
    assert [s["samples"] for s in t2.steps("forward")] == [32] * 4


def test_skip_removes_perfpilots_own_time(clock):
    t = StepTracker(clock)
    train_step(t, clock)
    t.forward_begin()
    clock.tick(0.5)  # e.g. starting the profiler
    t.skip()
    clock.tick(0.02)
    t.forward_end()
    assert t.skipped_s == pytest.approx(0.5)
    assert t.totals["forward"] == pytest.approx(0.04)


def test_no_activity_is_all_startup(clock):
    t = StepTracker(clock)
    clock.tick(2.0)
    t.finish()
    assert t.step_kind() is None and t.first_activity is None
    assert t.export(origin=0.0)["steps"] == []


def manual_step(t: StepTracker, c: Clock, batch: int = 20) -> None:
    """A step without torch.optim: model forward, loss module forward, backward, update."""
    t.forward_begin(eval_mode=False, batch_size=batch)
    c.tick(0.02)
    t.forward_end()
    t.forward_begin(step=False)  # the criterion module
    c.tick(0.005)
    t.forward_end()
    t.backward_begin()
    c.tick(0.03)
    t.backward_end()
    c.tick(0.004)  # p.data.add_(...) by hand: the user's code


def test_without_an_optimizer_a_backward_is_a_step(clock):
    t = StepTracker(clock)
    for _epoch in range(2):
        for _ in range(5):
            manual_step(t, clock)
        for _ in range(3):  # validation under no_grad: forwards and loss, no backward
            t.forward_begin(eval_mode=True, batch_size=10)
            clock.tick(0.01)
            t.forward_end()
            t.forward_begin(step=False)
            clock.tick(0.001)
            t.forward_end()
    t.finish()
    assert t.step_kind() == "backward"
    steps = t.steps("backward")
    assert len(steps) == 10 and t.boundaries()["forward"] == 16
    assert [s["samples"] for s in steps] == [20] * 10 and t.samples_from("backward") == "forward"
    # the loss forward is forward time; the update after backward is the next step's other
    assert steps[1]["phases"]["forward"] == pytest.approx(0.025)
    assert steps[1]["phases"]["other"] == pytest.approx(0.004)
    # the validation pass is evaluation, inside the first step of the next epoch
    assert t.eval_segment_count == 2
    assert steps[5]["phases"]["eval"] == pytest.approx(0.033)
    assert t.warmup_end == pytest.approx(steps[1]["end"])


def test_events_after_finish_are_ignored(clock):
    t = StepTracker(clock)
    for _ in range(3):
        manual_step(t, clock)
    t.finish("duration")
    manual_step(t, clock)  # the script runs on unwatched (--keep-running)
    assert len(t.steps("backward")) == 3 and t.export(0.0)["stopped"] == "duration"


def closure_step(t: StepTracker, c: Clock) -> None:
    """Lightning's automatic optimization: the fetch, then ``optimizer.step(closure)``
    whose closure runs training_step (forward, loss), zero_grad and backward."""
    t.data_begin(1)
    c.tick(0.01)
    t.data_end(8)
    t.optimizer_begin()  # the step's pre-hook
    c.tick(0.004)  # the framework calls training_step
    t.forward_begin(eval_mode=False, batch_size=8)
    c.tick(0.02)
    t.forward_end()
    t.forward_begin(step=False)  # the loss module
    c.tick(0.002)
    t.forward_end()
    c.tick(0.003)  # training_step's own code: logging
    t.optimizer_begin(step=False)  # zero_grad inside the closure
    c.tick(0.001)
    t.optimizer_end(step=False)
    t.backward_begin()
    c.tick(0.03)
    t.backward_end()
    c.tick(0.005)  # the update itself, after the closure returned
    t.optimizer_end()
    c.tick(0.001)


def test_a_closure_inside_optimizer_step_keeps_its_phases(clock):
    t = StepTracker(clock)
    for _ in range(4):
        closure_step(t, clock)
    t.finish()
    assert t.step_kind() == "optimizer" and len(t.steps("optimizer")) == 4
    phases = t.steps("optimizer")[-1]["phases"]
    assert phases["forward"] == pytest.approx(0.022)
    assert phases["backward"] == pytest.approx(0.03)
    # the update and zero_grad are the optimizer; the closure's own code is "other"
    assert phases["optimizer"] == pytest.approx(0.006)
    assert phases["other"] == pytest.approx(0.004 + 0.003 + 0.001)
    assert t.steps("optimizer")[-1]["samples"] == 8
    assert t.totals["optimizer"] == pytest.approx(4 * 0.006)


def test_a_step_without_a_closure_is_all_optimizer_and_a_tag_tells_the_closure(clock):
    t = StepTracker(clock)
    for _ in range(3):
        train_step(t, clock)
    assert t.steps("optimizer")[-1]["phases"]["optimizer"] == pytest.approx(0.005)
    t.optimizer_begin()
    assert t.tag() == "optimizer"
    t.forward_begin()
    t.forward_end()
    assert t.tag() == "other"  # the closure's code after its forward
    t.backward_begin()
    t.backward_end()
    assert t.tag() == "optimizer"  # the update
