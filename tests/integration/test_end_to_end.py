"""End to end on the real stack: simulator -> worker -> control topic -> example serving node.

A short scenario (every incident kind, 90 s of wall-clock time) is played through the
demo's own orchestration (``DemoRun``: topics of the test's own, a ``failsoft worker``
child process, the example recommender node in this process, ``failsoft simulate`` as a
child process), and the report is checked against the scenario's timeline.

Every incident kind is in the scenario, and each must be found within its kind's bound by
a detector that fits it, with an Alerta alert. The kinds that break what the model serves
(``FALLBACK_KINDS``) must also bring a fallback command, the node's switch, and a restore
when the incident ends. For the others the health policy decides from the evidence: a
shadow's verdict is news for a human, and a leak or a late upstream falls back only when
its alarms are confirmed (the late upstream here does not end, so it has no restore).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from streams.demo.report import DEFAULT_BOUND_S, DETECTORS_BY_KIND, Report, detects
from streams.demo.run import DETECTION_BOUNDS_S, DemoOptions, DemoRun
from streams.settings import Settings

pytestmark = pytest.mark.integration

KEYS = "k1=" + "e2" * 32  # the worker's Ed25519 private key
# Alerta tells alerts apart by environment and resource (the model id) only, and other
# tests play the same synthetic portfolio into the default environment at the same time;
# this test's alerts go to the stack's other allowed environment.
ALERTA_ENVIRONMENT = "Production"

# 90 s of wall-clock time, one nominal day per minute; 8 models, of which churn-005 stays
# healthy (ctr-002 and fraud-006 run a shadow). A leak is seen as labels arrive, so it is
# on ctr-007, whose labels come 30 nominal minutes (1.25 s) after its predictions. The
# drifts and the broken model start after each model's references (its first 600
# predictions for drift, 400 for its output) and end at least 30 s before the run does,
# so that the restore (10 s without alarm on fallback, 10 s more in probing) falls
# within it.
SCENARIO = """
schema_version = 1
name = "end-to-end"
description = "Every incident kind, in 90 seconds"

[run]
models = 8
seed = 11
time_scale = 1440
duration = "90s"
rate = 400

[[incidents]]
kind = "drift_abrupt"
model = "fraud-001"
feature = "fraud-001.amount"
at = "10h"
until = "20h"
shift = 3.0

[[incidents]]
kind = "drift_gradual"
model = "ltv-003"
feature = "ltv-003.basket_value"
at = "10h"
ramp = "3h"
until = "24h"
shift = 3.0

[[incidents]]
kind = "availability_gap"
model = "credit-004"
feature = "credit-004.utilization"
at = "10h"
write_lag = "3h"

[[incidents]]
kind = "label_leak"
model = "ctr-007"
feature = "ctr-007.dwell_time_s"
at = "10h"

[[incidents]]
kind = "broken_model"
model = "churn-000"
mode = "constant"
output = 0.0
at = "10h"
until = "20h"

[[incidents]]
kind = "shadow_better"
model = "ctr-002"
at = "0s"

[[incidents]]
kind = "shadow_worse"
model = "fraud-006"
at = "0s"
"""

WORKER_LOG_LINES = 100

FALLBACK_KINDS = frozenset({"drift_abrupt", "drift_gradual", "broken_model"})


@pytest.fixture
def report(
    stack_settings: Settings,
    kafka_bootstrap: str,
    alerta_client: object,
    influxdb_client: object,
    unique_name: str,
    tmp_path: Path,
) -> Report:
    scenario = tmp_path / "end-to-end.toml"
    scenario.write_text(SCENARIO)
    settings = dataclasses.replace(
        stack_settings,
        kafka_bootstrap=kafka_bootstrap,
        control_private_key=KEYS,
        control_private_key_file="",
        alerta_environment=ALERTA_ENVIRONMENT,
    )
    options = DemoOptions(scenario=scenario, run_id=unique_name, run_dir=tmp_path / "run")
    run = DemoRun(settings, options, say=print)
    try:
        run.prepare()
        assert run.started_servers == []  # the fixtures started the stack; the run adds none
        run.start_worker()
        run.wait_worker_ready()
        run.start_node()
        run.start_taps(None, None)
        run.start_simulator()
        run.play()
        result = run.finish()
    finally:
        run.close()
        # Shown when the test fails: the worker logs warnings and errors only.
        worker_log = options.run_dir / "worker.log"
        if worker_log.exists():
            print(*worker_log.read_text().splitlines()[:WORKER_LOG_LINES], sep="\n")
    print(result.to_markdown())
    return result


def test_every_incident_is_caught_in_time_and_the_fleet_falls_back_where_it_should(
    report: Report,
) -> None:
    # The short scenario's eight models declare no SLO, so it has no latency jump (the
    # default scenario does; its offline replay is tests/demo/test_demo_portfolio.py).
    assert {row.kind for row in report.incidents} == set(DETECTORS_BY_KIND) - {"latency_jump"}
    for row in report.incidents:
        bound_ms = DETECTION_BOUNDS_S.get(row.kind, DEFAULT_BOUND_S) * 1000
        assert row.detected_at is not None, f"{row.kind} on {row.model} was missed"
        assert 0 <= row.detected_at - row.injected_at <= bound_ms, row
        assert detects(row.kind, row.detector), row
        assert row.alert_id is not None, row
        if row.kind not in FALLBACK_KINDS:
            continue
        assert row.command_at is not None and row.switched_at is not None, row
        assert row.command_at <= row.switched_at <= row.command_at + bound_ms, row
        assert row.recovered, f"{row.kind} on {row.model} did not recover"
    assert report.false_fallbacks == ()
