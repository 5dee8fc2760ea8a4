"""The plain training scripts in ``examples/scripts`` (inputs for ``perfpilot tune --``
and ``benchmarks/tune_scripts.py``) run as a user runs them and learn: exit 0, a loss
line every ``--log-every`` steps, the loss falling."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "scripts"


def test_loader_bound_runs_and_learns():
    # 128 samples: 4 steps an epoch, so 20 steps see every sample five times and the
    # loss of a learning model falls well below ln(10) = 2.30 (chance for 10 classes).
    res = subprocess.run([sys.executable, str(EXAMPLES / "loader_bound.py"), "--steps", "20",
                          "--samples", "128", "--log-every", "4"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    losses = [float(x) for x in re.findall(r"step \d+ loss ([\d.]+)", res.stdout)]
    assert len(losses) == 5, res.stdout
    assert min(losses[-2:]) < 0.75 * max(losses[:2]), losses


def test_loader_bound_keeps_the_defaults_a_tuner_should_find():
    # What the script is for: a DataLoader at its defaults and no thread setting. A
    # "tidied" version that sets either would leave nothing for a tuner to find.
    src = (EXAMPLES / "loader_bound.py").read_text()
    assert "num_workers" not in src.split("def main", 1)[1]
    assert "set_num_threads" not in src
    assert re.search(r"DataLoader\(ChirpDataset\([^)]*\), batch_size=32, shuffle=True\)", src)
