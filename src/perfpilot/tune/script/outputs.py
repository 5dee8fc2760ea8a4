"""What a script tuning leaves: ``plan.json``, ``train.patch`` and the launcher line.

* ``DIR/plan.json``: the chosen changes as a :class:`~perfpilot.script_plan.ScriptPlan`
  (empty ``changes`` when nothing was proven faster: running the script with it changes
  nothing).
* ``DIR/train.patch``: a unified diff of the user's files that makes the script do what
  the plan does where that is a clean edit (:func:`perfpilot.script_patch.make_patch`);
  written only when there is something to edit. ``git apply DIR/train.patch``.
* The launcher, ``perfpilot run-script --plan DIR/plan.json -- <command>``, for the
  changes a patch cannot carry (``record.patch.launcher`` says which and why).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from perfpilot.script_plan import ScriptPlan
from perfpilot.script_tune_record import PatchInfo, ScriptTuneRecord

if TYPE_CHECKING:
    from perfpilot.probes.launch import Target

PLAN_FILE = "plan.json"
PATCH_FILE = "train.patch"


def launcher_command(out: Path, command: tuple[str, ...]) -> str:
    return shlex.join(["perfpilot", "run-script", "--plan", str(out / PLAN_FILE), "--",
                       *command])


def write_outputs(rec: ScriptTuneRecord, target: Target, out: Path) -> ScriptTuneRecord:
    """Write plan.json and train.patch; the record with its patch part filled in."""
    changes = dict(rec.result.changes)
    ScriptPlan(changes=changes, command=rec.command,
               load=rec.machine.get("load_label")).save(out / PLAN_FILE)
    patch_file = out / PATCH_FILE
    if patch_file.exists():
        patch_file.unlink()  # a stale patch from an earlier tuning must not be applied
    if not changes:
        return rec.replace(patch=PatchInfo())
    script = _script_path(target)
    if script is None:
        return rec.replace(patch=PatchInfo(
            launcher={k: "the script is run with -m/-c: no file to patch" for k in changes},
            launcher_command=launcher_command(out, rec.command)))
    held = {}
    if changes.get("lr_scale", 1) != 1 and "batch_size" in changes:
        # The batch and its learning rate go together, and only the launcher scales the
        # learning rate: a patch that changed the batch alone would train differently.
        held["batch_size"] = ("changed together with lr_scale, which only run-script "
                              "applies (a new batch without its learning rate trains "
                              "differently)")
    try:
        from perfpilot.script_patch import make_patch

        patch = make_patch({k: v for k, v in changes.items() if k not in held},
                           script=script, loader_sites=rec.baseline.loader_sites)
    except Exception as e:  # noqa: BLE001 - the plan and the launcher still work
        return rec.replace(patch=PatchInfo(
            error=f"{type(e).__name__}: {e}", launcher={k: "no patch" for k in changes},
            launcher_command=launcher_command(out, rec.command)))
    if patch.diff:
        patch_file.write_text(patch.diff)
    launcher = {**dict(patch.launcher), **held}
    return rec.replace(patch=PatchInfo(
        file=str(patch_file) if patch.diff else None, edits=tuple(patch.edits),
        launcher=launcher,
        launcher_command=launcher_command(out, rec.command) if launcher else None))


def _script_path(target: Target) -> Path | None:
    if not target.args or target.args[0] in ("-m", "-c"):
        return None
    p = Path(target.args[0])
    return p if p.is_file() else None
