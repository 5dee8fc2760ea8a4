"""Fault injection: SIGINT, SIGTERM and SIGKILL at chosen points of a real, short
``perfpilot tune``, then ``--resume``.

Each interrupted run must: exit with 128 + the signal (130 for SIGINT, 143 for SIGTERM)
within a few seconds, leave no process behind (DataLoader workers, executor workers),
leave a study that opens with every finished trial, a record.json that is valid JSON with
status "interrupted", and say on stderr (not a terminal here) how to resume. SIGKILL
cannot be handled: the study must still open and ``--resume`` must finish.

Points are reached deterministically: the study journal says which trial is running
(baseline, hardware, final), the workload in fixtures/tune_faults.py signals from inside a
loader trial with DataLoader workers or from an executor worker, and a wrapper entry point
signals when the report is being written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "tune_faults.py"
SPEC = f"{FIXTURE}:workload"
ENTRY = "from perfpilot.cli import run_cli; run_cli()"
# Signals the tuner's own process when the report is written (before the real writer runs).
REPORT_ENTRY = """
import os, signal, sys
import perfpilot.render.tune_html as html
real = html.write_report
mark, sig = sys.argv[1:3]
def write_report(*a, **k):
    if not os.path.exists(mark):
        open(mark, "w").close()
        os.kill(os.getpid(), getattr(signal, "SIG" + sig))
    return real(*a, **k)
html.write_report = write_report
del sys.argv[1:3]
from perfpilot.cli import run_cli; run_cli()
"""
STOP_S = 10.0  # "within a few seconds", with room for a loaded CI machine
CODES = {"INT": 130, "TERM": 143}


class Tune:
    """One ``perfpilot tune`` process in its own session (so its group is its own)."""

    def __init__(self, out: Path, args: list[str], *, fault: str | None = None,
                 entry: list[str] | None = None) -> None:
        self.out, self.args = out, args
        self.log = out.parent / f"{out.name}.{len(list(out.parent.glob(out.name + '.*')))}"
        env = {**os.environ, "COLUMNS": "200"}
        for k in ("PERFPILOT_TEST_FAULT", "PERFPILOT_TEST_FAULT_MARK", "PERFPILOT_TEST_FAULT_PID"):
            env.pop(k, None)
        if fault is not None:
            env.update(PERFPILOT_TEST_FAULT=fault, PERFPILOT_TEST_FAULT_MARK=str(self.mark),
                       PERFPILOT_TEST_FAULT_PID="")
        cmd = [sys.executable, *(entry or ["-c", ENTRY]), "tune", SPEC, *args,
               "--out", str(out)]
        self.stdout, self.stderr = open(f"{self.log}.out", "w"), open(f"{self.log}.err", "w")
        # The pid must be known before the workload runs: a shell that execs the tuner.
        self.proc = subprocess.Popen(
            ["sh", "-c", 'PERFPILOT_TEST_FAULT_PID=$$ exec "$@"', "sh", *cmd],
            stdout=self.stdout, stderr=self.stderr, env=env, start_new_session=True)
        self.seen: set[psutil.Process] = set()

    @property
    def mark(self) -> Path:
        return self.out.parent / f"{self.out.name}.fired"

    def descendants(self) -> None:
        try:
            self.seen.update(psutil.Process(self.proc.pid).children(recursive=True))
        except psutil.Error:
            pass

    def wait_running(self, stage: str, timeout: float = 120.0) -> None:
        """Until a trial of ``stage`` is running (per the study journal)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, f"the tune ended first: {self.err()}"
            self.descendants()
            if stage in running(self.out):
                return
            time.sleep(0.02)
        raise AssertionError(f"no {stage} trial started in {timeout:.0f} s")

    def wait(self, timeout: float = 240.0) -> int:
        deadline = time.time() + timeout
        while self.proc.poll() is None and time.time() < deadline:
            self.descendants()
            time.sleep(0.05)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise AssertionError(f"the tune did not end in {timeout:.0f} s: {self.err()}")
        return self.proc.returncode

    def send(self, signum: int, group: bool) -> float:
        (os.killpg if group else os.kill)(self.proc.pid, signum)
        return time.time()

    def err(self) -> str:
        self.stderr.flush()
        return Path(f"{self.log}.err").read_text(errors="replace")

    def leftovers(self, grace_s: float = 8.0) -> list[psutil.Process]:
        """Processes started by the tune still alive ``grace_s`` after it ended."""
        deadline = time.time() + grace_s
        alive = list(self.seen)
        while time.time() < deadline:
            alive = [p for p in alive if _alive(p)]
            if not alive:
                break
            time.sleep(0.1)
        return alive


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def journal(out: Path) -> list[dict[str, Any]]:
    """The journal's operations (a torn last line, as after a kill, is skipped)."""
    path = out / "study.journal"
    ops = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                ops.append(json.loads(line))
            except ValueError:
                pass
    return ops


def running(out: Path) -> set[str]:
    """Stages of the trials running now (asked for, with no outcome yet)."""
    stage: dict[int, str] = {}
    ended: set[int] = set()
    for op in journal(out):
        attrs = op.get("user_attr") or {}
        if "stage" in attrs and "trial_id" in op:
            stage[op["trial_id"]] = attrs["stage"]
        if "outcome" in attrs or "state" in op:
            ended.add(op.get("trial_id", -1))
    return {s for t, s in stage.items() if t not in ended}


def finished(out: Path) -> dict[str, int]:
    """identity -> trial number of every finished trial, read through Optuna (integrity)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = str(out / "study.journal")
    storage = JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    study = optuna.load_study(study_name="perfpilot", storage=storage)
    return {t.user_attrs["identity"]: t.number for t in study.get_trials(deepcopy=False)
            if "outcome" in t.user_attrs}


def check_stopped(t: Tune, sent_at: float, sig: str) -> dict[str, int]:
    """The interrupted run stopped cleanly; returns its finished trials."""
    rc = t.wait()
    err = t.err()
    assert rc == CODES[sig], f"exit code {rc}, expected {CODES[sig]}: {err[-2000:]}"
    assert time.time() - sent_at < STOP_S + 2.0, "the tune did not stop within seconds"
    assert "Traceback" not in err, err
    assert f"--resume --out {t.out}" in err, f"stderr says nothing about --resume: {err!r}"
    rec = json.loads((t.out / "record.json").read_text())
    assert rec["status"] == "interrupted", rec["status"]
    assert not (t.out / "plan.json").exists()
    assert t.leftovers() == [], "processes of the tune outlived it"
    done = finished(t.out)
    assert sorted(x["number"] for x in rec["trials"]) == sorted(done.values())
    return done


def check_resumes(t: Tune, before: dict[str, int]) -> None:
    """``--resume`` finishes, recalling every trial finished before (none run again)."""
    again = Tune(t.out, [*t.args, "--resume"])
    rc = again.wait()
    assert rc == 0, again.err()[-3000:]
    after = finished(t.out)
    assert all(after.get(ident) == n for ident, n in before.items()), "a trial was lost"
    assert len(after) == len(set(after.values()))
    rec = json.loads((t.out / "record.json").read_text())
    assert rec["status"] == "complete" and rec["resumed"] is True
    assert (t.out / "plan.json").exists()
    assert again.leftovers() == []


LOADER = ["--only", "loader", "--budget", "24s"]


def test_ctrl_c_in_the_baseline_stops_and_says_how_to_resume(tmp_path: Path) -> None:
    t = Tune(tmp_path / "out", LOADER)
    t.wait_running("baseline")
    sent = t.send(signal.SIGINT, group=True)
    check_stopped(t, sent, "INT")  # (resuming after the baseline: the SIGKILL test)


def test_sigterm_in_the_hardware_stage(tmp_path: Path) -> None:
    t = Tune(tmp_path / "out", ["--only", "hardware", "--budget", "24s"])
    t.wait_running("hardware")
    sent = t.send(signal.SIGTERM, group=False)
    check_resumes(t, check_stopped(t, sent, "TERM"))


@pytest.mark.parametrize("whom", ["group", "main"])
def test_ctrl_c_in_a_loader_trial_with_workers(tmp_path: Path, whom: str) -> None:
    t = Tune(tmp_path / "out", LOADER, fault=f"workers:INT:{whom}")
    sent = _fired(t)
    done = check_stopped(t, sent, "INT")
    assert not any('"num_workers": 1' in i or '"num_workers": 2' in i
                   for i in done if i.startswith("loader:") and '"candidate"' in i), \
        "the interrupted trial with workers was recorded as finished"
    assert done  # the baseline and the probe (resuming: the swallow and SIGKILL tests)


def test_an_interrupt_swallowed_inside_a_trial_still_stops_the_tune(tmp_path: Path) -> None:
    """The reported bug: the KeyboardInterrupt turns into a DataLoader "worker exited
    unexpectedly" inside the trial; it was recorded as a failed trial and the tune went on
    to exit 0 with status "complete"."""
    t = Tune(tmp_path / "out", LOADER, fault="swallow:INT:main")
    sent = _fired(t)
    done = check_stopped(t, sent, "INT")
    rec = json.loads((t.out / "record.json").read_text())
    assert not [x for x in rec["trials"] if "exited unexpectedly" in x["reason"]]
    check_resumes(t, done)


def test_sigterm_from_an_executor_worker_ends_the_pool(tmp_path: Path) -> None:
    """SIGTERM while the baseline runs in a ``--executor process`` worker: the pool's
    workers (in process groups of their own) are ended too. (A resume would repeat the
    whole baseline in a fresh pool, more than this budget holds; the others resume.)"""
    t = Tune(tmp_path / "out", [*LOADER, "--executor", "process"], fault="executor:TERM:main")
    sent = _fired(t)
    check_stopped(t, sent, "TERM")


def test_sigterm_in_the_final_check(tmp_path: Path) -> None:
    t = Tune(tmp_path / "out", ["--only", "loader", "--budget", "24s"])
    t.wait_running("final")
    sent = t.send(signal.SIGTERM, group=True)
    check_resumes(t, check_stopped(t, sent, "TERM"))


def test_ctrl_c_while_the_report_is_written(tmp_path: Path) -> None:
    out = tmp_path / "out"
    entry = ["-c", REPORT_ENTRY, str(tmp_path / "report.fired"), "INT"]
    t = Tune(out, ["--only", "loader", "--budget", "24s"], entry=entry)
    rc = t.wait()
    assert (tmp_path / "report.fired").exists(), "the report writer was not reached"
    assert rc == 130, t.err()[-2000:]
    assert f"--resume --out {out}" in t.err()
    rec = json.loads((out / "record.json").read_text())
    # tune() had returned its record (the tuning is complete); only the report, which the
    # command writes afterwards, was cut short: the resume recalls every trial and writes it.
    assert rec["status"] == "complete"
    check_resumes(t, finished(out))
    assert (out / "report.html").is_file()


def test_sigkill_in_a_loader_trial_keeps_the_study(tmp_path: Path) -> None:
    t = Tune(tmp_path / "out", LOADER, fault="workers:KILL:main")
    _fired(t)
    assert t.wait() == -signal.SIGKILL
    before = finished(t.out)  # the journal opens after a kill mid-trial
    assert "baseline" in " ".join(before)
    if (t.out / "record.json").exists():
        json.loads((t.out / "record.json").read_text())  # never a torn file
    assert t.leftovers() == [], "DataLoader workers outlived their killed parent"
    check_resumes(t, before)


def _fired(t: Tune, timeout: float = 120.0) -> float:
    """Wait until the workload sent its signal; returns when."""
    deadline = time.time() + timeout
    while not t.mark.exists():
        t.descendants()
        if t.proc.poll() is not None:
            raise AssertionError(f"the tune ended before the fault fired: {t.err()[-2000:]}")
        assert time.time() < deadline, "the fault never fired"
        time.sleep(0.02)
    return time.time()


# ------------------------------------------------------------ the stop flag, in process


def test_a_trial_that_swallows_the_interrupt_is_not_recorded() -> None:
    from perfpilot import interrupt
    from perfpilot.trial import Outcome
    from perfpilot.tune.study import Study

    def swallows() -> Outcome:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            raise RuntimeError("DataLoader worker (pid(s) 1) exited unexpectedly") from None
        return Outcome("complete")

    trials, ran = Study(), []
    with interrupt.handling():
        with pytest.raises(interrupt.Interrupted) as e:
            trials.run("loader", {"n": 1}, swallows)
        assert e.value.signum == signal.SIGINT and e.value.exit_code == 130
        with pytest.raises(interrupt.Interrupted):  # no trial starts after a stop
            trials.run("loader", {"n": 2}, lambda: ran.append(1) or Outcome("complete"))
    assert trials.trials() == [] and ran == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    interrupt.check()  # the flag ends with handling()


def test_later_signals_do_not_interrupt_the_clean_up() -> None:
    from perfpilot import interrupt

    with interrupt.handling():
        with pytest.raises(interrupt.Interrupted) as e:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        assert e.value.exit_code == 143
        os.kill(os.getpid(), signal.SIGINT)  # a second signal while writing the record
        time.sleep(0.05)
        assert interrupt.requested() == signal.SIGTERM


# ------------------------------------------------------------ the exit after a stop

# An exit that would hang (as a half-shut-down DataLoader's queue feeder can), with a child
# process left behind; main() is replaced so that run_cli() exits as a stopped tune does.
HANGING_EXIT = """
import atexit, subprocess, sys, threading
import perfpilot.cli as cli
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(child.pid, flush=True)
atexit.register(lambda: threading.Event().wait())
cli.main = lambda argv=None: int(sys.argv[1])
cli.run_cli()
"""


@pytest.mark.parametrize("code", [130, 143])
def test_the_exit_after_a_stop_is_bounded_and_ends_the_children(code: int) -> None:
    from perfpilot import interrupt

    started = time.time()
    proc = subprocess.run([sys.executable, "-c", HANGING_EXIT, str(code)],
                          capture_output=True, text=True, timeout=60)
    took = time.time() - started
    assert proc.returncode == code, proc.stderr
    assert took < interrupt.EXIT_WITHIN_S + 10, took
    child = int(proc.stdout.split()[0])
    assert not _alive_pid(child), "the stopped tune's child outlived it"


# A hang still inside the command, after it reported the stop (freeing the interrupted
# trial's frames runs a DataLoader iterator's shutdown, which joins threads and workers).
HANGING_STOP = """
import sys, threading
from pathlib import Path
import typer
import perfpilot.cli as cli
from perfpilot.commands.tune import stop_on_signals

def main(argv=None):
    try:
        with stop_on_signals(Path(sys.argv[1]), "perfpilot tune ... --resume"):
            raise KeyboardInterrupt
    except typer.Exit:
        threading.Event().wait()

cli.main = main
cli.run_cli()
"""


def test_a_hang_inside_the_command_after_the_stop_is_bounded_too(tmp_path: Path) -> None:
    from perfpilot import interrupt

    started = time.time()
    proc = subprocess.run([sys.executable, "-c", HANGING_STOP, str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130, proc.stderr
    assert "interrupted (SIGINT); nothing was measured yet" in proc.stderr
    assert time.time() - started < interrupt.EXIT_WITHIN_S + 10


def test_an_ordinary_exit_is_not_cut_short() -> None:
    # Exit code 0: the entry does not arm the bound; atexit work longer than it completes.
    from perfpilot import interrupt

    wait = f"threading.Event().wait({interrupt.EXIT_WITHIN_S + 1}) or print('done', flush=True)"
    script = HANGING_EXIT.replace("threading.Event().wait()", wait)
    proc = subprocess.run([sys.executable, "-c", script, "0"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.split()[-1] == "done", proc.stderr
    os.kill(int(proc.stdout.split()[0]), signal.SIGKILL)


def _alive_pid(pid: int) -> bool:
    deadline = time.time() + 3.0  # reaped by init a moment after it was killed
    while time.time() < deadline:
        try:
            if not _alive(psutil.Process(pid)):
                return False
        except psutil.Error:
            return False
        time.sleep(0.05)
    return True
