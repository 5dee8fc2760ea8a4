"""Conformance suite run against every executor (inline, process pool, Ray), plus the
timing rule of choose_executor and the process pool's own guarantees."""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback

import cloudpickle
import pytest

from perfpilot.errors import UserError
from perfpilot.execute import (
    InlineExecutor,
    ProcessExecutor,
    RemoteError,
    RemoteTraceback,
    TrialTimeout,
    WorkerDied,
    WorkerOOM,
    choose_executor,
)
from perfpilot.trial import Outcome
from perfpilot.tune.study import Study
from perfpilot.tune.units import Portable

# Ray workers cannot import this test module: send its functions by value (cloudpickle
# then drops their file names, which the executors restore from what was sent).
cloudpickle.register_pickle_by_value(sys.modules[__name__])

RESULT_WAIT_S = 60  # generous: the machine is shared; nothing here asserts a duration


def square(x):
    return x * x


def raise_value(message):
    raise ValueError(message)


class NeedsTwoArgs(Exception):
    def __init__(self, a, b):  # cannot be rebuilt from its args: comes back as RemoteError
        super().__init__(f"{a}/{b}")


def raise_unpicklable():
    raise NeedsTwoArgs("x", "y")


def sleep_long():
    time.sleep(120)


def kill_self():
    os.kill(os.getpid(), signal.SIGKILL)


def pid_and_env(name):
    return os.getpid(), os.environ.get(name)


def span(seconds):
    start = time.time()
    time.sleep(seconds)
    return start, time.time()


def hog_memory(megabytes):
    block = bytearray(megabytes * 2**20)
    block[:: 4096] = b"x" * len(block[:: 4096])  # touch every page: resident, not virtual
    time.sleep(120)


def full_traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module", params=["inline", "process", "ray"])
def executor(request):
    if request.param == "inline":
        ex = InlineExecutor()
    elif request.param == "process":
        ex = ProcessExecutor(2)
    else:
        request.getfixturevalue("ray_session")
        from perfpilot.execute import RayExecutor

        ex = RayExecutor()
    yield ex
    ex.close()


# ---- conformance: every executor -----------------------------------------------------

def test_results_come_back_in_order(executor):
    futures = [executor.submit(square, i) for i in range(8)]
    assert [f.result(RESULT_WAIT_S) for f in futures] == [i * i for i in range(8)]
    assert list(executor.map(square, range(5))) == [0, 1, 4, 9, 16]


def test_closures_and_kwargs_work(executor):
    k = 7
    assert executor.submit(lambda x, y=0: x * k + y, 2, y=1).result(RESULT_WAIT_S) == 15


def test_a_raising_trial_keeps_type_message_and_traceback(executor):
    message = "bad value ✗\nsecond line"
    exc = executor.submit(raise_value, message).exception(RESULT_WAIT_S)
    assert type(exc) is ValueError and str(exc) == message
    text = full_traceback(exc)
    assert "in raise_value" in text and "raise ValueError(message)" in text
    assert __file__ in text  # the original file, also for functions sent by value
    if executor.isolated:
        assert isinstance(exc.__cause__, RemoteTraceback)


def test_an_unpicklable_exception_comes_back_as_remote_error(executor):
    exc = executor.submit(raise_unpicklable).exception(RESULT_WAIT_S)
    if not executor.isolated:
        assert isinstance(exc, NeedsTwoArgs)
        return
    assert isinstance(exc, RemoteError) and exc.type_name == "NeedsTwoArgs"
    assert "x/y" in str(exc) and "raise NeedsTwoArgs" in exc.traceback


def test_a_trial_over_its_timeout_fails_and_the_executor_recovers(executor):
    exc = executor.submit(sleep_long, timeout_s=0.5).exception(RESULT_WAIT_S)
    assert isinstance(exc, TrialTimeout) and isinstance(exc, TimeoutError)
    assert "timeout of 0.5 s" in str(exc)
    assert executor.submit(square, 3).result(RESULT_WAIT_S) == 9


def test_a_worker_killed_with_sigkill_fails_its_trial_only(executor):
    if not executor.isolated:
        pytest.skip("inline runs in the caller: a SIGKILL would kill the test run")
    exc = executor.submit(kill_self).exception(RESULT_WAIT_S)
    assert isinstance(exc, WorkerDied)
    if executor.kind == "process":
        assert exc.signal == signal.SIGKILL and "SIGKILL" in str(exc)
    assert executor.submit(square, 4).result(RESULT_WAIT_S) == 16


def run_trial(executor, fn, timeout_s=None):
    """One trial through the tuner's runner (in memory), sent to ``executor``."""
    study = Study(executor=executor)
    trial = study.run("s", {"k": 1}, Portable(fn, timeout_s=timeout_s))
    assert study.placed == {executor.kind: 1}
    return trial


def test_trials_get_states_from_their_fate(executor):
    def run(fn, **kw):
        return run_trial(executor, fn, **kw)

    ok = run(lambda: Outcome("complete", {"samples_per_s": 12.5}))
    assert ok.state == "complete" and ok.measurements == {"samples_per_s": 12.5}
    failed = run(lambda: raise_value("boom"))
    assert failed.state == "failed" and "ValueError: boom" in failed.reason
    timed_out = run(sleep_long, timeout_s=0.5)
    assert timed_out.state == "timeout" and timed_out.finished_at >= timed_out.started_at
    if executor.isolated:
        killed = run(kill_self)
        assert killed.state == "failed" and "WorkerDied" in killed.reason


# ---- the process pool ---------------------------------------------------------------------

def _mark_initialized():
    os.environ["PP_TEST_INIT"] = str(os.getpid())


def test_process_workers_are_warm_and_replaced_in_their_slot():
    env = lambda slot: {"PP_TEST_SLOT": f"slot{slot}"}  # noqa: E731
    with ProcessExecutor(1, worker_env=env, initializer=_mark_initialized) as ex:
        first = [ex.submit(pid_and_env, "PP_TEST_INIT").result(RESULT_WAIT_S) for _ in range(5)]
        assert len(set(first)) == 1 and first[0][1] == str(first[0][0])  # one init, reused
        assert isinstance(ex.submit(kill_self).exception(RESULT_WAIT_S), WorkerDied)
        pid, slot = ex.submit(pid_and_env, "PP_TEST_SLOT").result(RESULT_WAIT_S)
        assert pid != first[0][0] and slot == "slot0"
        assert ex.submit(pid_and_env, "PP_TEST_INIT").result(RESULT_WAIT_S) == (pid, str(pid))


def _thread_env():
    return {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def test_process_workers_get_intra_op_thread_limits():
    # torch and BLAS size their pools from these at import (checked by hand: a worker's
    # torch.get_num_threads() is 1 here; importing torch in a test costs seconds)
    with ProcessExecutor(2, threads_per_worker=1) as ex:
        assert ex.submit(_thread_env).result(RESULT_WAIT_S) == {
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def test_process_worker_over_its_memory_limit_is_oom():
    with ProcessExecutor(1, memory_limit_bytes=150 * 2**20) as ex:
        exc = ex.submit(hog_memory, 300).exception(RESULT_WAIT_S)
        assert isinstance(exc, WorkerOOM) and isinstance(exc, MemoryError)
        trial = run_trial(ex, lambda: hog_memory(300))
        assert trial.state == "oom"


def test_close_with_wait_drains_the_queue_even_if_a_worker_dies():
    ex = ProcessExecutor(1)
    killed, queued = ex.submit(kill_self), ex.submit(square, 3)
    ex.close()
    assert isinstance(killed.exception(0), WorkerDied) and queued.result(0) == 9


def test_close_without_wait_cancels_and_kills():
    ex = ProcessExecutor(1)
    running = ex.submit(sleep_long)
    queued = ex.submit(square, 2)
    pids = ex.pids()
    ex.close(wait=False)
    for f in (running, queued):  # queued: cancelled; running: failed (or still queued)
        assert f.cancelled() or isinstance(f.exception(RESULT_WAIT_S), Exception)
    import psutil

    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                   for p in pids)


# ---- the timing rule ----------------------------------------------------------------------

def test_timing_trials_on_a_cpu_machine_run_one_at_a_time():
    with choose_executor("process", timing=True, gpus=0) as ex:
        assert ex.workers == 1
        spans = sorted(f.result(RESULT_WAIT_S) for f in [ex.submit(span, 0.05) for _ in range(3)])
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
    with pytest.raises(UserError, match="timing trials must not share"):
        choose_executor("process", timing=True, workers=2, gpus=0)


def test_timing_trials_get_one_gpu_each_on_a_multi_gpu_node():
    with choose_executor("process", timing=True, gpus=2) as ex:
        assert ex.workers == 2
        assert [ex._env(s)["CUDA_VISIBLE_DEVICES"] for s in (0, 1)] == ["0", "1"]
    with pytest.raises(UserError, match="at most 2"):
        choose_executor("process", timing=True, workers=3, gpus=2)


def test_non_timing_trials_may_share_cores():
    with choose_executor("process", timing=False, workers=2, gpus=0) as ex:
        assert ex.workers == 2
    assert choose_executor("inline", timing=True).workers == 1


def test_executor_trials_recall_repeated_keys():
    calls = []

    def fn():
        calls.append(1)
        return Outcome("complete", {"v": 1.0})

    runner = Study(executor=InlineExecutor())
    a = runner.run("s", {"k": 1}, Portable(fn))
    b = runner.run("s", {"k": 1}, Portable(fn))
    assert a is b and len(calls) == 1 and len(runner.trials()) == 1


def test_ray_timing_trials_run_one_per_node(ray_session):
    with choose_executor("ray", timing=True) as ex:
        assert ex.workers == 1  # one local node
        spans = sorted(f.result(RESULT_WAIT_S) for f in [ex.submit(span, 0.2) for _ in range(3)])
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
    with pytest.raises(UserError, match="resources"):
        choose_executor("ray", timing=True, workers=2)


def test_pmap_on_ray(ray_session):
    from perfpilot import pmap

    assert pmap(square, range(40), backend="ray", chunksize=3) == [i * i for i in range(40)]
    with pytest.raises(ValueError, match="boom") as info:
        pmap(lambda x: raise_value("boom") if x == 7 else x, range(20), backend="ray")
    assert info.value.pmap_index == 7


def test_missing_ray_says_how_to_install(monkeypatch):
    from perfpilot.execute.ray_executor import RayExecutor

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UserError, match=r"pip install 'perfpilot\[ray\]'"):
        RayExecutor()
