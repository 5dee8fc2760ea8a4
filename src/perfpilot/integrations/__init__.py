"""Bridges from a Plan to other training frameworks (optional dependencies)."""
