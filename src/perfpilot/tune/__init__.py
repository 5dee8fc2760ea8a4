"""perfpilot.tune."""
