"""Tuning an unmodified script: ``perfpilot tune -- python train.py``.

The script runs as the user wrote it; every trial is a run of the script in its own
process with the candidate's changes injected by perfpilot's runner
(:mod:`perfpilot.probes.inject`). See :mod:`perfpilot.tune.script.run` for the steps and
docs/tune-scripts.md for the user's view.
"""

from perfpilot.tune.script.run import tune_script

__all__ = ["tune_script"]
