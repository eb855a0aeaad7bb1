"""The label join, leak watch and shadow join wired into the worker, on the real stack.

Each test replays a stream of the pure module's own tests (re-stamped to now, under a
model of its own) through Kafka, and reads the effects back from Alerta, InfluxDB and the
control topic. Predictions go first and labels after they are consumed: the worker reads
the topics concurrently, so this is the order a late label has in production.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest

from schemas.codec import encode
from schemas.contracts import FeatureWrite, GroundTruth, Prediction
from streams.portfolio import parse_portfolio
from streams.settings import Settings
from streams.topics import FEATURE_WRITES, GROUND_TRUTH
from streams.worker.app import FailsoftApp, create_app
from tests.streams.test_app_drift import consumed_all, produce
from tests.streams.test_label_join import classifier_stream
from tests.streams.test_leak_watch import churn_stream
from tests.streams.test_shadow_join import trial

pytestmark = pytest.mark.integration

WAIT_S = 60.0
Record = Prediction | GroundTruth | FeatureWrite


def restamped(records: Sequence[Record], model: str, end_ms: int) -> list[Record]:
    """``records`` under ``model``, shifted in time so that the last one is at ``end_ms``."""
    last = max(_time(r) for r in records)
    shift = end_ms - last
    moved: list[Record] = []
    for record in records:
        if isinstance(record, Prediction):
            moved.append(
                msgspec.structs.replace(
                    record, model_id=model, predicted_at=record.predicted_at + shift
                )
            )
        elif isinstance(record, GroundTruth):
            moved.append(
                msgspec.structs.replace(record, model_id=model, label_at=record.label_at + shift)
            )
        else:
            moved.append(
                msgspec.structs.replace(
                    record, event_at=record.event_at + shift, written_at=record.written_at + shift
                )
            )
    return moved


def _time(record: Record) -> int:
    if isinstance(record, Prediction):
        return record.predicted_at
    return record.label_at if isinstance(record, GroundTruth) else record.written_at


def send(config: dict[str, Any], settings: Settings, records: Sequence[Record]) -> None:
    """Labels and feature writes to their topics, keyed as on the wire; predictions through
    the drift tests' ``produce``."""
    from confluent_kafka import Producer

    produce(config, settings, [r for r in records if isinstance(r, Prediction)])
    producer = Producer(config)
    for record in records:
        if isinstance(record, GroundTruth):
            producer.produce(GROUND_TRUTH.name(settings), key=record.model_id, value=encode(record))
        elif isinstance(record, FeatureWrite):
            producer.produce(
                FEATURE_WRITES.name(settings), key=record.entity_id, value=encode(record)
            )
    assert producer.flush(30) == 0


async def alerts_of(alerta_client: Any, model: str, event: str) -> list[Any]:
    """The model's Alerta alerts of ``event``, once there is one (or after ``WAIT_S``)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        found = await asyncio.to_thread(
            alerta_client.get_alerts, query=[("resource", model), ("event", event)]
        )
        if found or time.monotonic() > deadline:
            return list(found)
        await asyncio.sleep(0.5)


def influx_records(influxdb_client: Any, settings: Settings, model: str, measurement: str) -> list:
    flux = f"""
        from(bucket: "{settings.influxdb_bucket}")
          |> range(start: -10d)
          |> filter(fn: (r) => r.model == "{model}" and r._measurement == "{measurement}")
    """
    tables = influxdb_client.query_api().query(flux, org=settings.influxdb_org)
    return [record for table in tables for record in table.records]


async def run_app(
    settings: Settings, portfolio_text: str, config: dict[str, Any], *phases: Sequence[Record]
) -> FailsoftApp:
    """Start a worker, send each phase once the previous one is consumed; returns the
    running app (the caller stops it)."""
    app = create_app(settings, parse_portfolio(portfolio_text))
    await app.start()
    sent = 0
    for phase in phases:
        send(config, settings, phase)
        sent += len(phase)
        await consumed_all(app, sent)
    return app


LEAK_PORTFOLIO = """
[models.{model}]
owner = "team-test"
tier = "cpu"
fallback = "keep_all"
label_delay = "1h"
[models.{model}.features]
last_login_date = "numeric"
plan = "categorical"
[models.{model}.detectors.leaks]
# Labels and writes come from two topics read at once: a label waits for writes the
# whole stream long (the replay spans about 50 h of event time).
coincidence_lateness = 250_000_000
"""


async def test_a_feature_nulled_at_label_time_raises_a_leak_alert_and_leak_points(
    worker_settings: Settings,
    unique_name: str,
    confluent_producer_config: dict[str, Any],
    alerta_client: Any,
    influxdb_client: Any,
) -> None:
    settings, model = worker_settings, unique_name
    now_ms = int(time.time() * 1000)
    # The last write comes after the lateness, so that every label is judged.
    stream = restamped(churn_stream(3, 3_000), model, now_ms - 250_000_000 - 120_000)
    a_write = next(r for r in stream if isinstance(r, FeatureWrite))
    last = msgspec.structs.replace(
        a_write, entity_id="another", event_at=now_ms - 2_000, written_at=now_ms - 1_000
    )
    app = await run_app(
        settings, LEAK_PORTFOLIO.format(model=model), confluent_producer_config, stream, [last]
    )
    try:
        [alert] = await alerts_of(alerta_client, model, "label_leak")
    finally:
        await app.stop()

    assert (alert.severity, alert.attributes["feature"]) == ("major", "last_login_date")
    assert "last_login_date" in alert.text and "plan" not in alert.text
    flagged = {
        (r.values["feature"], r.values["detector"])
        for r in influx_records(influxdb_client, settings, model, "leak")
        if r.get_field() == "flagged" and r.get_value() == 1
    }
    assert flagged == {("last_login_date", "label_leak")}


SHADOW_PORTFOLIO = """
[models.{model}]
owner = "team-test"
tier = "cpu"
fallback = "top_n_popular"
# Labels are sent after every prediction is consumed: pairs wait for them 3 h (three
# label delays), longer than the trial.
label_delay = "1h"
shadow = {{ version = "cand", min_stable_period = "10m" }}
"""


async def test_a_better_shadow_is_promoted_and_a_worse_one_rejected_as_alerts(
    worker_settings: Settings,
    unique_name: str,
    confluent_producer_config: dict[str, Any],
    alerta_client: Any,
    influxdb_client: Any,
) -> None:
    settings = worker_settings
    better, worse = f"{unique_name}-better", f"{unique_name}-worse"
    end_ms = int(time.time() * 1000)
    stream = [
        *restamped(trial(1, 300, shadow_noise=0.3), better, end_ms),
        *restamped(trial(2, 300, shadow_noise=4.0), worse, end_ms),
    ]
    predictions = [r for r in stream if isinstance(r, Prediction)]
    labels = [r for r in stream if isinstance(r, GroundTruth)]
    portfolio = SHADOW_PORTFOLIO.format(model=better) + SHADOW_PORTFOLIO.format(model=worse)
    app = await run_app(settings, portfolio, confluent_producer_config, predictions, labels)
    try:
        [promoted] = await alerts_of(alerta_client, better, "shadow_verdict")
        [rejected] = await alerts_of(alerta_client, worse, "shadow_verdict")
    finally:
        await app.stop()

    assert (promoted.value, promoted.severity) == ("promote", "informational")
    assert (rejected.value, rejected.severity) == ("reject", "warning")
    assert "cand" in promoted.text and "cand" in rejected.text
    verdicts = {
        r.values["model"]: r.get_value()
        for model in (better, worse)
        for r in influx_records(influxdb_client, settings, model, "shadow")
        if r.get_field() == "verdict"
    }
    assert verdicts == {better: "promote", worse: "reject"}


PERFORMANCE_PORTFOLIO = """
[models.{model}]
owner = "team-test"
tier = "cpu"
fallback = "base_rate"
label_delay = "1d"
[models.{model}.detectors.performance]
window = 500
reference_size = 500
labels_per_day = 2000
report_interval = 600
"""


async def test_a_rising_error_rate_on_delayed_labels_is_performance_evidence_and_points(
    worker_settings: Settings,
    unique_name: str,
    confluent_producer_config: dict[str, Any],
    influxdb_client: Any,
) -> None:
    settings, model = worker_settings, unique_name
    stream = classifier_stream(seed=1, n=3000, shift_at=2000)
    # Labels come an hour later than in the pure test, after the last prediction, so
    # that they move the join's clock and its points come on their cadence.
    now_ms = int(time.time() * 1000)
    predictions = restamped(
        [r for r in stream if isinstance(r, Prediction)], model, now_ms - 3_600_000
    )
    labels = restamped([r for r in stream if isinstance(r, GroundTruth)], model, now_ms)
    text = PERFORMANCE_PORTFOLIO.format(model=model)
    app = await run_app(settings, text, confluent_producer_config, predictions, labels)
    await app.stop()

    # The drop alarm is evidence the model's health policy acted on.
    health = [
        (r.values["detector"], r.get_value())
        for r in influx_records(influxdb_client, settings, model, "health")
        if r.get_field() == "state"
    ]
    assert health[0] == ("performance_drop", "degraded")
    points = influx_records(influxdb_client, settings, model, "performance")
    alarms = [
        r.get_value()
        for r in sorted(points, key=lambda r: r.get_time())
        if r.values.get("detector") == "accuracy" and r.get_field() == "alarms"
    ]
    assert alarms[0] == 0 and alarms[-1] >= 1
