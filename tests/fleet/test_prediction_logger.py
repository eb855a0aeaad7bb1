"""PredictionLogger without a reachable broker: it drops and counts, never blocks or raises.

The broker is a closed port here; tests/integration/test_fleet_broker_outage.py stops a
real broker under a running logger.
"""

from __future__ import annotations

import json
import time

from schemas.codec import decode_prediction
from schemas.contracts import Prediction
from streams.fleet import PredictionLogger
from streams.settings import Settings
from tests.schemas.conftest import examples

NOWHERE = Settings(kafka_bootstrap="127.0.0.1:1", topic_prefix="unit.")


def example_prediction() -> Prediction:
    prediction = decode_prediction(examples("prediction")["prediction.example.json"])
    assert isinstance(prediction, Prediction)
    return prediction


def test_a_full_buffer_drops_and_counts_and_every_prediction_is_accounted_for() -> None:
    prediction = example_prediction()
    logger = PredictionLogger(NOWHERE, max_buffered=100, delivery_timeout_s=0.5)
    try:
        started = time.monotonic()
        accepted = [logger.log(prediction) for _ in range(1_000)]
        # Generous bound: a logger that waited for the broker would take 0.5 s per call.
        assert time.monotonic() - started < 5.0
        assert accepted.count(True) == 100
        stats = logger.stats()
        assert stats.dropped == 900
        assert stats.offered == 1_000
        assert stats.last_loss == "the buffer is full"

        deadline = time.monotonic() + 10
        while logger.stats().failed < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = logger.stats()
        assert (stats.failed, stats.delivered, stats.in_flight) == (100, 0, 0)
        assert "timed out" in (stats.last_loss or "")
        assert stats.offered == 1_000
        # Failed deliveries freed the buffer.
        assert logger.log(prediction)
    finally:
        logger.close(timeout=1.0)


def test_bad_records_are_dropped_not_raised() -> None:
    logger = PredictionLogger(NOWHERE, delivery_timeout_s=0.5)
    try:
        not_a_prediction = json.loads(examples("prediction")["prediction.example.json"])
        assert logger.log(not_a_prediction) is False
        assert logger.stats().dropped == 1
        assert "AttributeError" in (logger.stats().last_loss or "")
    finally:
        logger.close(timeout=1.0)
