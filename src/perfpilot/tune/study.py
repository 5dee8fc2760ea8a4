"""A durable TrialRunner: every finished trial lives in an Optuna journal on disk.

Why Optuna's journal storage: it is append-only JSON lines written under a file lock,
made for several processes sharing one study, and it skips a torn last line, so a
``kill -9`` at any moment loses at most the trial that was running. We reuse it rather
than write our own storage; each perfpilot trial is one Optuna trial whose user
attributes carry the trial identity (stage + key) and its outcome.

Resume contract: a finished trial (complete, failed, oom, nan, timeout, pruned) is never
run again: :meth:`Study.run` returns the stored Trial for a known identity. A trial that
was running when its process died is marked interrupted and runs again.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from perfpilot.errors import UserError
from perfpilot.record import Trial
from perfpilot.tune.stage import Outcome, execute_trial, trial_identity

STUDY_FILE = "study.journal"
STUDY_NAME = "perfpilot"


class Study:
    """TrialRunner over ``DIR/study.journal``.

    ``fingerprint`` identifies what is tuned (workload, baseline, perfpilot version...):
    opening a study with another fingerprint is refused, so a stale or foreign study is
    never mixed with this one. An existing study is only reopened with ``resume=True``.
    """

    def __init__(self, directory: str | Path, *, fingerprint: dict[str, Any], resume: bool):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.path = Path(directory) / STUDY_FILE
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

    def run(self, stage: str, key: dict[str, Any], fn: Callable[[], Outcome]) -> Trial:
        """Return the stored result for (stage, key), or run ``fn`` and store it."""
        import optuna

        ident = trial_identity(stage, key)
        self._refresh()
        if ident in self._known:
            return self._known[ident]
        ot = self._study.ask()
        for name, value in (("identity", ident), ("stage", stage), ("pid", os.getpid()),
                            ("host", socket.gethostname())):
            ot.set_user_attr(name, value)
        try:
            trial = execute_trial(ot.number, stage, key, fn)
        except BaseException:
            ot.set_user_attr("interrupted", True)
            self._study.tell(ot, state=optuna.trial.TrialState.FAIL)
            raise
        ot.set_user_attr("outcome", trial.to_dict())
        if trial.state == "complete":
            self._study.tell(ot, float(trial.measurements.get("objective", 0.0)))
        else:
            self._study.tell(ot, state=optuna.trial.TrialState.FAIL)
        self._known[ident] = trial
        return trial

    def trials(self) -> list[Trial]:
        """Every finished trial in this study (from all processes), in trial-number order."""
        self._refresh()
        return sorted(self._known.values(), key=lambda t: t.number)

    def set_note(self, name: str, value: Any) -> None:
        """Store a JSON-able study-level value (e.g. the final plan)."""
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
