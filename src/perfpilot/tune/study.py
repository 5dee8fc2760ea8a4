"""The tuner's one TrialRunner: a study that recalls finished trials and runs new ones.

:class:`Study` is the only trial runner stages, the pipeline and the final check use. It

- **recalls** a finished trial by its identity (stage + key,
  :func:`~perfpilot.trial.trial_identity`) instead of measuring it again;
- **runs** a new one inline, or, when it is a :class:`~perfpilot.tune.units.Portable`
  unit and an executor is given, on that :class:`~perfpilot.execute.Executor` (a warm
  worker process, Ray); ``placed`` counts where trials ran;
- **stamps** it with the tuning's :class:`ReplayClock` (when given) and moves that clock
  over recalled ones, so a resumed tuning replays the same budget decisions;
- **records the machine's load** while it ran (``Trial.load``: other processes' CPU use,
  the load average; :mod:`perfpilot.tune.trial_load`), so a decision can say at what load
  it was measured (:mod:`perfpilot.tune.load_label`);
- **tells its observers** (:class:`~perfpilot.trial.TrialObserver`: the progress display,
  a stage collecting its own trials) about each trial as it starts and ends.

Storage: an Optuna journal in a directory (``Study(directory, fingerprint=...)``), or in
memory (``Study()``: nothing survives the process; tests, benchmarks and stages run alone).

Why Optuna's journal storage: it is append-only JSON lines written under a file lock,
made for several processes sharing one study, and it skips a torn last line, so a
``kill -9`` at any moment loses at most the trial that was running. Each perfpilot trial
is one Optuna trial whose user attributes carry the trial identity and its outcome.

Resume contract: a finished trial (complete, failed, oom, nan, timeout, pruned) is never
run again: :meth:`Study.run` returns the stored Trial for a known identity. A trial that
was running when its process died is marked interrupted and runs again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfpilot.errors import UserError
from perfpilot.trial import Outcome, Trial, TrialObserver, execute_trial, trial_identity
from perfpilot.tune.trial_load import LoadWatch
from perfpilot.tune.units import Portable

if TYPE_CHECKING:
    from perfpilot.execute import Executor

STUDY_FILE = "study.journal"
STUDY_NAME = "perfpilot"
CLOCK_KEY = "tuner_clock_s"  # in a trial's measurements: the tuner's clock when it ended


class Study:
    """The TrialRunner over ``DIR/study.journal`` (or memory, without ``directory``).

    ``fingerprint`` identifies what is tuned (workload, baseline, perfpilot version...):
    opening a study with another fingerprint is refused, so a stale or foreign study is
    never mixed with this one. An existing study is only reopened with ``resume=True``.
    ``executor`` and ``clock`` may be set later (the pipeline starts its executor after
    it has checked the study).
    """

    def __init__(self, directory: str | Path | None = None, *,
                 fingerprint: dict[str, Any] | None = None, resume: bool = False,
                 executor: Executor | None = None, clock: ReplayClock | None = None) -> None:
        self._store: _MemoryStore | _JournalStore = _MemoryStore() if directory is None \
            else _JournalStore(Path(directory), fingerprint or {}, resume)
        self.resumed = self._store.resumed
        self.executor, self.clock = executor, clock
        self.placed: dict[str, int] = {}
        self._observers: list[TrialObserver] = []

    @property
    def path(self) -> Path | None:
        """The journal file, None in memory."""
        return getattr(self._store, "path", None)

    def run(self, stage: str, key: dict[str, Any], fn: Callable[[], Outcome]) -> Trial:
        """Return the stored result for (stage, key), or run ``fn`` and store it."""
        ident = trial_identity(stage, key)
        known = self._store.recall(ident)
        if known is not None:
            if self.clock is not None:
                self.clock.replayed(known)
            self._tell(known, recalled=True)
            return known
        for o in list(self._observers):
            o.trial_started(stage, key)
        number, handle = self._store.begin(ident, stage)
        try:
            # A Ray worker may run on another machine, whose load this one cannot read.
            remote = self._where(fn) == "ray"
            watch = None if remote else LoadWatch()
            trial = self._stamped(execute_trial(number, stage, key, self._placed(fn)))
            if watch is not None:
                trial = dataclasses.replace(trial, load=watch.stop())
        except BaseException:
            self._store.abort(handle)
            raise
        self._store.finish(handle, ident, trial)
        self._tell(trial, recalled=False)
        return trial

    def trials(self) -> list[Trial]:
        """Every finished trial in this study (from all processes), in trial-number order."""
        return self._store.trials()

    @contextlib.contextmanager
    def observe(self, observer: TrialObserver) -> Iterator[TrialObserver]:
        """Tell ``observer`` about every trial asked for inside the block."""
        self._observers.append(observer)
        try:
            yield observer
        finally:
            self._observers.remove(observer)

    def set_note(self, name: str, value: Any) -> None:
        """Store a JSON-able study-level value (e.g. the final plan)."""
        self._store.set_note(name, value)

    def note(self, name: str, default: Any = None) -> Any:
        return self._store.note(name, default)

    # ---------------------------------------------------------------- inside run()

    def _tell(self, trial: Trial, *, recalled: bool) -> None:
        for o in list(self._observers):
            o.trial_finished(trial, recalled)

    def _stamped(self, trial: Trial) -> Trial:
        if self.clock is None:
            return trial
        stamped = {**trial.measurements, CLOCK_KEY: self.clock.elapsed()}
        return dataclasses.replace(trial, measurements=stamped)

    def _where(self, fn: Callable[[], Outcome]) -> str:
        """Where ``fn`` runs: ``inline``, or the executor's kind when it may leave."""
        ex = self.executor
        return ex.kind if ex is not None and isinstance(fn, Portable) and fn.can_leave \
            else "inline"

    def _placed(self, fn: Callable[[], Outcome]) -> Callable[[], Outcome]:
        """``fn`` on the executor when it may leave this process, else inline; counted."""
        ex = self.executor
        where, call = self._where(fn), fn
        if ex is not None and isinstance(fn, Portable) and fn.can_leave:

            def call() -> Outcome:
                return ex.submit(fn.fn, *fn.args, timeout_s=fn.timeout_s).result()

        def counted() -> Outcome:
            self.placed[where] = self.placed.get(where, 0) + 1
            return call()

        return counted


class ReplayClock:
    """A clock for budgets that replays the past, so that a resumed tuning sees, at each
    point of its replay, the time the original run had spent there, and budget decisions
    ("is there time for one more candidate?") come out the same.

    Every trial run now is stamped with this clock's reading (seconds since the tuning
    began, :data:`CLOCK_KEY` in its measurements). When a trial is recalled, the clock
    jumps forward to its stamp; that includes whatever the original run did between
    trials (storage writes, building things), which a sum of trial durations would miss.
    A trial without a stamp moves the clock by its duration. Intervals inside a trial that
    runs now are real time: the clock only jumps between trials."""

    def __init__(self, base: Callable[[], float], origin: float | None = None) -> None:
        """``origin``: the ``base()`` reading elapsed time counts from (default: now); the
        command passes its own start so that the budget is the command's wall time."""
        self.base, self.offset = base, 0.0
        self.origin = base() if origin is None else min(origin, base())

    def __call__(self) -> float:
        return self.base() + self.offset

    def elapsed(self) -> float:
        return self() - self.origin

    def replayed(self, trial: Trial) -> None:
        stamp = trial.measurements.get(CLOCK_KEY)
        if isinstance(stamp, (int, float)):
            self.offset += max(0.0, stamp - self.elapsed())
        else:
            self.offset += max(trial.finished_at - trial.started_at, 0.0)


# ---------------------------------------------------------------- storage


class _MemoryStore:
    """Finished trials in a dict: the same recall, nothing on disk."""

    resumed = False

    def __init__(self) -> None:
        self._done: dict[str, Trial] = {}
        self._notes: dict[str, Any] = {}
        self._next = 0

    def recall(self, ident: str) -> Trial | None:
        return self._done.get(ident)

    def begin(self, ident: str, stage: str) -> tuple[int, Any]:
        self._next += 1
        return self._next - 1, None

    def finish(self, handle: Any, ident: str, trial: Trial) -> None:
        self._done[ident] = trial

    def abort(self, handle: Any) -> None:
        pass

    def trials(self) -> list[Trial]:
        return sorted(self._done.values(), key=lambda t: t.number)

    def set_note(self, name: str, value: Any) -> None:
        self._notes[name] = value

    def note(self, name: str, default: Any = None) -> Any:
        return self._notes.get(name, default)


class _JournalStore:
    """Finished trials in ``DIR/study.journal`` (Optuna journal storage)."""

    def __init__(self, directory: Path, fingerprint: dict[str, Any], resume: bool) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.path = directory / STUDY_FILE
        existed = self.path.exists() and self.path.stat().st_size > 0
        if existed and not resume:
            raise UserError(
                f"{self.path.parent} already holds a tuning study ({STUDY_FILE}); pass --resume "
                "to continue it, or choose another --out"
            )
        self._study = optuna.create_study(
            storage=_storage(self.path), study_name=STUDY_NAME, load_if_exists=True
        )
        self._check_fingerprint(fingerprint)
        self.resumed = existed
        self._known: dict[str, Trial] = {}
        if existed:
            self._mark_interrupted()

    def _check_fingerprint(self, fingerprint: dict[str, Any]) -> None:
        stored = self._study.user_attrs.get("fingerprint")
        if stored is None:
            self._study.set_user_attr("fingerprint", fingerprint)
            return
        keys = set(stored) | set(fingerprint)
        diff = sorted(k for k in keys if stored.get(k) != fingerprint.get(k))
        if diff:
            k = diff[0]
            raise UserError(
                f"{self.path} is a study of another tuning ({k}: {stored.get(k)!r} there, "
                f"{fingerprint.get(k)!r} now); remove it or choose another --out"
            )

    def _mark_interrupted(self) -> None:
        """Trials left RUNNING by a dead process on this host will never finish: fail them."""
        import optuna
        import psutil

        host = socket.gethostname()
        storage = self._study._storage
        for ft in self._study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            pid, where = ft.user_attrs.get("pid"), ft.user_attrs.get("host")
            if where == host and pid is not None and not psutil.pid_exists(pid):
                storage.set_trial_user_attr(ft._trial_id, "interrupted", True)
                storage.set_trial_state_values(ft._trial_id, optuna.trial.TrialState.FAIL)

    def _refresh(self) -> None:
        # Reread each time: another tuner may share the storage (reads are incremental).
        for ft in self._study.get_trials(deepcopy=False):
            outcome = ft.user_attrs.get("outcome")
            ident = ft.user_attrs.get("identity")
            if outcome is not None and ident is not None and ident not in self._known:
                self._known[ident] = Trial.from_dict(outcome)

    def recall(self, ident: str) -> Trial | None:
        self._refresh()
        return self._known.get(ident)

    def begin(self, ident: str, stage: str) -> tuple[int, Any]:
        ot = self._study.ask()
        for name, value in (("identity", ident), ("stage", stage), ("pid", os.getpid()),
                            ("host", socket.gethostname())):
            ot.set_user_attr(name, value)
        return ot.number, ot

    def finish(self, ot: Any, ident: str, trial: Trial) -> None:
        import optuna

        ot.set_user_attr("outcome", trial.to_dict())
        if trial.state == "complete":
            self._study.tell(ot, float(trial.measurements.get("objective", 0.0)))
        else:
            self._study.tell(ot, state=optuna.trial.TrialState.FAIL)
        self._known[ident] = trial

    def abort(self, ot: Any) -> None:
        import optuna

        ot.set_user_attr("interrupted", True)
        self._study.tell(ot, state=optuna.trial.TrialState.FAIL)

    def trials(self) -> list[Trial]:
        self._refresh()
        return sorted(self._known.values(), key=lambda t: t.number)

    def set_note(self, name: str, value: Any) -> None:
        self._study.set_user_attr(name, value)

    def note(self, name: str, default: Any = None) -> Any:
        return self._study.user_attrs.get(name, default)


def _storage(path: Path) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path.parent.mkdir(parents=True, exist_ok=True)
    # The open-lock's grace period frees a lock left behind by a process killed mid-write.
    lock = JournalFileOpenLock(str(path), grace_period=30)
    return JournalStorage(JournalFileBackend(str(path), lock_obj=lock))
