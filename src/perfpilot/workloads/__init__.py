"""perfpilot.workloads."""
