"""One seeded chaos run on the stack the settings name (``tests/chaos/run.py``).

It kills, pauses and restarts the stack's Kafka, InfluxDB and Alerta, so it must run
against a stack no one else uses at the same time: CI's (a fresh state folder) or a
private one. On the default state folder, the development stack people share, it is
skipped. It leaves every server up and healthy for the tests that follow. Ten to twenty
minutes, and no seed passes yet (README, "Faults"), so it runs only when asked for with
``FAILSOFT_TEST_CHAOS=1``: CI leaves it out until it passes. Other seeds:
``python -m tests.chaos.run --seed N --report F``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from streams.settings import Settings
from streams.stack import SERVERS
from tests.chaos.run import run

pytestmark = pytest.mark.integration

CI_SEED = 1
OPT_IN = "FAILSOFT_TEST_CHAOS"


def test_a_seeded_chaos_run_keeps_every_invariant(
    stack_settings: Settings,
    kafka_bootstrap: str,
    alerta_client: object,
    influxdb_client: object,
    tmp_path: Path,
) -> None:
    if os.environ.get(OPT_IN) != "1":
        pytest.skip(f"the chaos run is asked for with {OPT_IN}=1 (10 to 20 minutes)")
    if stack_settings.state_dir == Settings().state_dir:
        pytest.skip("the chaos run restarts servers: not on the shared default stack")
    report = run(stack_settings, CI_SEED, tmp_path / "run")
    (tmp_path / "report.json").write_text(json.dumps(report, indent=2))
    for fault in report["faults"]:
        print(fault)
    failed = [invariant for invariant in report["invariants"] if not invariant["passed"]]
    assert all(server.status(stack_settings).healthy for server in SERVERS.values())
    assert failed == [], json.dumps(failed, indent=2)
    assert report["passed"]
