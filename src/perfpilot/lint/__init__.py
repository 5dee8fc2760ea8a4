"""perfpilot.lint."""
