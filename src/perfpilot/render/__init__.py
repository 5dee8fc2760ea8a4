"""perfpilot.render."""
