"""PredictionLogger without a reachable broker: it batches, drops and counts, never blocks or
raises. Batches sent are counted once handed to librdkafka, which holds them here.

The broker is a closed port here; tests/integration/test_fleet_broker_outage.py stops a
real broker under a running logger.
"""

from __future__ import annotations

import json
import time
from typing import Any

import msgspec
import pytest

from schemas.codec import decode_prediction, encode
from schemas.contracts import FeatureSeen, Prediction
from streams.fleet import PredictionLogger
from streams.settings import Settings
from tests.fleet.helpers import wait_for
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
        # No broker answered, so none refused: a timeout is librdkafka's own failure.
        assert stats.refused == {}
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


def _predictions(model_id: str, n: int) -> list[Prediction]:
    prediction = example_prediction()
    return [
        msgspec.structs.replace(prediction, model_id=model_id, request_id=f"req-{i}")
        for i in range(n)
    ]


def test_a_full_batch_goes_at_once_and_a_partial_one_after_the_linger() -> None:
    logger = PredictionLogger(NOWHERE, batch_size=100, linger_ms=10_000, delivery_timeout_s=60)
    try:
        predictions = _predictions("recs", 150)
        assert all(logger.log(p) for p in predictions[:100])
        assert wait_for(lambda: logger.stats().batches == 1, timeout=5)
        assert all(logger.log(p) for p in predictions[100:])
        time.sleep(0.3)
        assert logger.stats().batches == 1
        assert logger.flush(timeout=0) == 150
        assert logger.stats().batches == 2
    finally:
        logger.close(timeout=0.5)

    logger = PredictionLogger(NOWHERE, linger_ms=200, delivery_timeout_s=60)
    try:
        started = time.monotonic()
        assert all(logger.log(p) for p in _predictions("recs", 10))
        assert wait_for(lambda: logger.stats().batches == 1, timeout=5)
        assert time.monotonic() - started >= 0.2
        stats = logger.stats()
        assert (stats.in_flight, stats.dropped, stats.offered) == (10, 0, 10)
    finally:
        logger.close(timeout=0.5)


def test_one_batch_per_model_per_flush() -> None:
    logger = PredictionLogger(NOWHERE, linger_ms=50, delivery_timeout_s=60)
    try:
        for i in range(30):
            assert logger.log(_predictions(f"model-{i % 3}", 1)[0])
        assert wait_for(lambda: logger.stats().batches == 3, timeout=5)
        time.sleep(0.2)
        assert logger.stats().batches == 3
    finally:
        logger.close(timeout=0.5)


def test_a_batch_larger_than_max_batch_bytes_is_split() -> None:
    one = len(encode(example_prediction()))
    logger = PredictionLogger(
        NOWHERE, batch_size=20, max_batch_bytes=5 * one, delivery_timeout_s=60
    )
    try:
        for prediction in _predictions("recs", 20):
            logger.log(prediction)
        assert logger.flush(timeout=0) == 20
        # Columnar batches take fewer bytes than the records alone: 5 records' worth of
        # bytes hold 5 to 8 of them, so 20 need 3 or 4 messages.
        assert logger.stats().batches in (3, 4)
    finally:
        logger.close(timeout=0.5)


def test_a_prediction_that_cannot_be_encoded_is_dropped_and_its_batch_goes() -> None:
    logger = PredictionLogger(NOWHERE, delivery_timeout_s=60)
    try:
        good = _predictions("recs", 3)
        bad = msgspec.structs.replace(
            good[0],
            features={"f": FeatureSeen(object(), 1)},  # type: ignore[arg-type]
        )
        assert all(logger.log(p) for p in [good[0], bad, *good[1:]])
        assert logger.flush(timeout=0) == 3
        stats = logger.stats()
        assert (stats.batches, stats.dropped, stats.offered) == (1, 1, 4)
        assert "TypeError" in (stats.last_loss or "")
    finally:
        logger.close(timeout=0.5)


def test_after_close_every_prediction_is_dropped_and_counted() -> None:
    logger = PredictionLogger(NOWHERE, delivery_timeout_s=0.5)
    logger.close(timeout=0.5)
    assert logger.log(example_prediction()) is False
    assert (logger.stats().dropped, logger.stats().last_loss) == (1, "the logger is closed")


@pytest.mark.parametrize(
    ("option", "message"),
    [({"batch_size": 0}, "batch_size: expected 1 or more"), ({"linger_ms": -1}, "linger_ms")],
)
def test_bad_batching_options_are_refused(option: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PredictionLogger(NOWHERE, **option)
