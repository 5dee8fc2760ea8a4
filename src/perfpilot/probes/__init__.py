"""perfpilot.probes."""
