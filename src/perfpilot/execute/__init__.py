"""perfpilot.execute."""
