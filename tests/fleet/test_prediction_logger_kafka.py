"""PredictionLogger against the real local Kafka: its batches arrive, keyed by model, and
decode to exactly the predictions logged, in order per model."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import pytest

from schemas.codec import DecodeError, decode_batch
from schemas.contracts import Prediction
from streams.fleet import PredictionLogger
from streams.settings import Settings
from streams.topics import PREDICTIONS
from tests.fleet.helpers import fleet_topics
from tests.fleet.test_prediction_logger import _predictions

pytestmark = pytest.mark.integration

MODELS = ("model-a", "model-b", "model-c")
PER_MODEL = 250
BATCH = 100


def _consume(settings: Settings, expected_records: int) -> list[tuple[bytes, list[Any]]]:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"{settings.topic_prefix}reader",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([PREDICTIONS.name(settings)])
    messages: list[tuple[bytes, list[Any]]] = []
    deadline = time.monotonic() + 60
    try:
        while sum(len(r) for _, r in messages) < expected_records and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=1000, timeout=1.0):
                assert message.error() is None, message.error()
                messages.append((message.key() or b"", decode_batch(Prediction, message.value())))
    finally:
        consumer.close()
    return messages


def test_batches_arrive_keyed_by_model_and_decode_to_what_was_logged(
    stack_settings: Settings, kafka_bootstrap: str, unique_name: str
) -> None:
    logged = {model: _predictions(model, PER_MODEL) for model in MODELS}
    with (
        fleet_topics(stack_settings, kafka_bootstrap, unique_name) as settings,
        PredictionLogger(settings, batch_size=BATCH, linger_ms=5) as logger,
    ):
        for i in range(PER_MODEL):
            for model in MODELS:
                assert logger.log(logged[model][i])
        assert logger.flush(10) == 0
        stats = logger.stats()
        assert (stats.delivered, stats.failed, stats.dropped, stats.in_flight) == (750, 0, 0, 0)
        messages = _consume(settings, len(MODELS) * PER_MODEL)
    assert len(messages) == stats.batches
    received: dict[str, list[Any]] = defaultdict(list)
    for key, records in messages:
        # One model per batch, and the batch keyed by it.
        assert not any(isinstance(r, DecodeError) for r in records), records
        assert {r.model_id for r in records} == {key.decode()}
        assert 1 <= len(records) <= BATCH
        received[key.decode()] += records
    # Every prediction, once, and in the order logged (a model's batches share a partition).
    assert received == logged
    # Batching did its work: far fewer messages than predictions.
    assert stats.batches < len(MODELS) * PER_MODEL / 10
