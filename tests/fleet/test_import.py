"""The fleet client stays small: a serving node imports it without Faust or aiokafka."""

from __future__ import annotations

import subprocess
import sys


def test_fleet_client_imports_without_faust() -> None:
    probe = (
        "import sys, streams.fleet, streams.control;"
        "from streams.fleet import ControlListener, PredictionLogger, Router;"
        "heavy = sorted(m for m in ('faust', 'aiokafka', 'mode') if m in sys.modules);"
        "print(','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
