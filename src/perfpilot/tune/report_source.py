"""The record ``perfpilot report DIR`` renders: DIR's record.json, completed from its study.

A killed run's record may lag its study (it is rewritten after each stage), and a run
killed before its first record has only the study; both are reported with every finished
trial the study holds. This opens the study (read only), so it lives in ``tune/``, not in
the record's contracts module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perfpilot.errors import UserError
from perfpilot.plan import Plan
from perfpilot.trial import Trial
from perfpilot.tune_record import (
    RECORD_FILE,
    TuneRecord,
    TuneSettings,
    WorkloadInfo,
    sanitize,
)


def study_trials(directory: Path) -> tuple[dict[str, Any], list[Trial]] | None:
    """The fingerprint and every finished trial stored in ``directory``'s study, read
    without opening it for tuning (no fingerprint check, nothing marked); None if there is
    no study. Used to report on a tuning that died before it wrote its record."""
    from perfpilot.tune.study import STUDY_FILE, STUDY_NAME

    path = directory / STUDY_FILE
    if not path.is_file() or path.stat().st_size == 0:
        return None
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        lock = JournalFileOpenLock(str(path), grace_period=30)
        study = optuna.load_study(study_name=STUDY_NAME, storage=JournalStorage(
            JournalFileBackend(str(path), lock_obj=lock)))
        trials = [t.user_attrs["outcome"] for t in study.get_trials(deepcopy=False)
                  if "outcome" in t.user_attrs]
        fp = study.user_attrs.get("fingerprint") or {}
    except Exception as e:  # noqa: BLE001 - any unreadable journal is the same to the user
        raise UserError(f"{path} cannot be read as a perfpilot study ({type(e).__name__}: "
                        f"{e})") from None
    return fp, sorted((Trial.from_dict(sanitize(t)) for t in trials), key=lambda t: t.number)


def record_for_report(directory: Path) -> TuneRecord:
    """DIR's record with every trial of its study (a killed run's record may lag the
    study; a run killed before its first record has only the study)."""
    path = directory / RECORD_FILE
    stored = study_trials(directory)
    if path.exists():
        rec = TuneRecord.load(path)
    elif stored is None:
        raise UserError(f"{directory} holds no tuning (no {RECORD_FILE} and no study); "
                        "run `perfpilot tune WORKLOAD --out DIR` first")
    else:
        fp = stored[0]
        base = fp.get("baseline")
        rec = TuneRecord(
            workload=WorkloadInfo(name=fp.get("workload"), target=fp.get("target")),
            budget_s=fp.get("budget_s"), baseline_plan=Plan.from_dict(base) if base else None,
            settings=TuneSettings(stages=tuple(fp.get("stages") or ())),
            error="this tuning stopped before it wrote its record; the trials below come "
                  "from its study")
    if stored is not None and len(stored[1]) > len(rec.trials):
        rec = rec.replace(trials=tuple(stored[1]))
    return rec
