"""The tuner's stages: each a module or folder that plugs into :mod:`perfpilot.tune.stage`."""
