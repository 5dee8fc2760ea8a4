"""The instrumented training loop used by ``run``, ``profile`` and the tuner.

* :class:`Trainer` (:mod:`perfpilot.engine.trainer`) trains one workload under one plan
  and times every optimizer step in phases; reusable for repeated measurement.
* :func:`run` (:mod:`perfpilot.engine.measured_run`) trains until a step/time/target limit and
  returns a :class:`~perfpilot.record.RunRecord`.
"""

from __future__ import annotations

from perfpilot.engine.measured_run import run
from perfpilot.engine.trainer import NonFiniteError, StepTiming, Trainer

__all__ = ["NonFiniteError", "StepTiming", "Trainer", "run"]
