"""perfpilot.diagnose."""
