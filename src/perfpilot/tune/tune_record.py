"""The TuneRecord: everything one ``perfpilot tune`` measured and decided, as JSON.

It is to tuning what a :class:`~perfpilot.record.RunRecord` is to one run: the boundary
between measuring and rendering. ``DIR/record.json`` holds one; ``perfpilot report DIR``
re-renders the HTML from it, offline. The pipeline rewrites it (atomically) after the
baseline and after each stage, so a run that dies keeps what it measured (``status``
says how far it got).

Keys (all JSON): ``schema``, ``status`` (``running|complete|stopped|failed|interrupted``),
``error``, ``workload`` (name, spec, metric, direction, target), ``budget_s``,
``elapsed_s``, ``settings`` (stages, executor, options), ``horizon``, ``baseline_plan``,
``tuned_plan`` (what the stages chose), ``plan`` (what ``plan.json`` holds), ``decision``
(which of the two and why), ``baseline`` / ``tuned`` (RunRecord dicts: the baseline run
before the stages, the tuned plan's first run in the final check), ``baseline_check`` (the
baseline's first run in the final check, interleaved with the tuned one), ``stages`` (one
dict per stage: name, summary, budget, elapsed, plan, trial numbers, evidence, error),
``final`` (the final check), ``trials`` (every trial of the study, with state and
reason), ``placement`` (where trials ran), ``machine``, ``versions``, ``notes``,
``started_at``, ``finished_at``, ``resumed``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from perfpilot.errors import UserError

TUNE_SCHEMA = "perfpilot.tunerecord/1"
RECORD_FILE = "record.json"
PLAN_FILE = "plan.json"
REPORT_FILE = "report.html"
STATUSES = ("running", "complete", "stopped", "failed", "interrupted")


def empty_record() -> dict[str, Any]:
    """A record with every key present (values filled in as the tuning goes)."""
    return {"schema": TUNE_SCHEMA, "status": "running", "error": None, "workload": {},
            "budget_s": None, "elapsed_s": 0.0, "settings": {}, "horizon": {},
            "baseline_plan": None, "tuned_plan": None, "plan": None, "decision": None,
            "baseline": None, "tuned": None, "baseline_check": None, "stages": [],
            "final": None, "trials": [],
            "placement": {}, "machine": {}, "versions": {}, "notes": [], "started_at": None,
            "finished_at": None, "resumed": False}


def check_record(data: Any, where: str) -> dict[str, Any]:
    """``data`` if it is a tune record, else a UserError naming ``where``."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: not a perfpilot tune record (a JSON "
                        f"{type(data).__name__}, expected an object)")
    if data.get("schema") != TUNE_SCHEMA:
        raise UserError(f"{where}: not a perfpilot tune record (schema "
                        f"{data.get('schema')!r}, expected {TUNE_SCHEMA!r})")
    if data.get("status") not in STATUSES:
        raise UserError(f"{where}: tune record key 'status' is {data.get('status')!r}")
    for key, value in empty_record().items():
        data.setdefault(key, value)
    return data


def load_record(path: str | Path) -> dict[str, Any]:
    """Read a tune record; errors name the file."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise UserError(f"no tune record at {p}") from None
    except OSError as e:
        raise UserError(f"cannot read {p}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{p}: not a text file (records are UTF-8 JSON)") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from None
    return check_record(data, str(p))


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, indent=2, default=_json_default, allow_nan=False) + "\n"


def atomic_write(path: Path, text: str) -> None:
    """Temp file + rename, so a crash never leaves half a file; OSError -> UserError."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None


def _json_default(o: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot serialize {type(o).__name__}")


def sanitize(value: Any) -> Any:
    """A copy where non-finite floats become strings ("inf", "nan"): strict JSON."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, dict):
        return {str(k): sanitize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [sanitize(v) for v in value]
    return value


def study_trials(directory: Path) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
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
    return fp, sorted((sanitize(t) for t in trials), key=lambda t: t["number"])


def record_for_report(directory: Path) -> dict[str, Any]:
    """DIR's record with every trial of its study (a killed run's record may lag the
    study; a run killed before its first record has only the study)."""
    path = directory / RECORD_FILE
    stored = study_trials(directory)
    if path.exists():
        rec = load_record(path)
    elif stored is None:
        raise UserError(f"{directory} holds no tuning (no {RECORD_FILE} and no study); "
                        "run `perfpilot tune WORKLOAD --out DIR` first")
    else:
        fp = stored[0]
        rec = empty_record()
        rec.update(workload={"name": fp.get("workload"), "target": fp.get("target")},
                   budget_s=fp.get("budget_s"), baseline_plan=fp.get("baseline"),
                   settings={"stages": fp.get("stages")},
                   error="this tuning stopped before it wrote its record; the trials below "
                         "come from its study")
    if stored is not None and len(stored[1]) > len(rec.get("trials") or []):
        rec["trials"] = stored[1]
    return rec
