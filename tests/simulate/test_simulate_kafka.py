"""``failsoft simulate`` against the real local Kafka: every message arrives, decodes, and is
keyed and stamped as the contracts say."""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.codec import (
    BATCHES,
    DecodeError,
    decode_batch,
    decode_feature_write,
    decode_ground_truth,
    decode_prediction,
)
from schemas.contracts import FeatureWrite, GroundTruth, Prediction
from streams import topics
from streams.cli import main
from streams.settings import Settings, env_name
from streams.simulate.run import SimulationRun
from streams.simulate.scenario import SCENARIOS, load_scenario

pytestmark = pytest.mark.integration

START = "2026-11-28T12:00:00Z"
START_MS = int(datetime.fromisoformat(START).timestamp() * 1000)
DECODERS = {
    topics.PREDICTIONS.suffix: decode_prediction,
    topics.FEATURE_WRITES.suffix: decode_feature_write,
    topics.GROUND_TRUTH.suffix: decode_ground_truth,
}


@pytest.fixture
def settings(
    stack_settings: Settings, kafka_bootstrap: str, unique_name: str
) -> Iterator[Settings]:
    settings = dataclasses.replace(
        stack_settings, kafka_bootstrap=kafka_bootstrap, topic_prefix=f"{unique_name}."
    )
    admin = topics.admin_client(settings)
    topics.ensure_topics(settings, admin=admin)
    yield settings
    names = [spec.name(settings) for spec in topics.CATALOGUE]
    for future in admin.delete_topics(names).values():
        future.result(timeout=30)


def _consume(settings: Settings, group: str, expected: Counter[str]) -> dict[str, list[Any]]:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    names = {
        spec.name(settings): spec.suffix for spec in topics.CATALOGUE if spec.suffix in DECODERS
    }
    consumer.subscribe(list(names))
    received: dict[str, list[Any]] = {suffix: [] for suffix in DECODERS}
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and any(
            len(received[suffix]) < expected[suffix] for suffix in DECODERS
        ):
            for message in consumer.consume(num_messages=5000, timeout=1.0):
                assert message.error() is None, message.error()
                received[names[str(message.topic())]].append(message)
        # Nothing beyond what was expected trickles in.
        for message in consumer.consume(num_messages=5000, timeout=2.0):
            received[names[str(message.topic())]].append(message)
    finally:
        consumer.close()
    return received


def test_simulate_publishes_every_event_decodable_keyed_and_stamped(
    settings: Settings, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(env_name("kafka_bootstrap"), settings.kafka_bootstrap)
    monkeypatch.setenv(env_name("topic_prefix"), settings.topic_prefix)
    scenario = SCENARIOS / "short.toml"
    timeline = tmp_path / "timeline.jsonl"
    args = ["--duration", "4s", "--rate", "300", "--seed", "5", "--start", START]
    code = main(
        ["simulate", "--scenario", str(scenario), *args, "--timeline", str(timeline), "--fast"]
    )
    assert code == 0
    assert len(timeline.read_text().splitlines()) == len(load_scenario(scenario).incidents)

    run = SimulationRun.prepare(
        load_scenario(scenario),
        start_ms=START_MS,
        seed=5,
        rate=300,
        duration=timedelta(seconds=4),
    )
    events = list(run.events())
    expected = Counter(event.topic for event in events)
    assert all(expected[suffix] > 100 for suffix in DECODERS)

    received = _consume(settings, unique_name, expected)
    assert {suffix: len(messages) for suffix, messages in received.items()} == dict(expected)
    for suffix, messages in received.items():
        for message in messages:
            record = DECODERS[suffix](message.value())
            assert not isinstance(record, DecodeError), record
            if isinstance(record, Prediction):
                key, at = record.model_id, record.predicted_at
            elif isinstance(record, GroundTruth):
                key, at = record.model_id, record.label_at
            else:
                assert isinstance(record, FeatureWrite)
                key, at = record.entity_id, record.written_at
            assert (message.key(), message.timestamp()[1]) == (key.encode(), at)
    sent_ids = sorted(e.record.request_id for e in events if isinstance(e.record, Prediction))
    got_ids = sorted(
        decode_prediction(m.value()).request_id  # type: ignore[union-attr]
        for m in received["predictions"]
    )
    assert got_ids == sent_ids


def test_simulate_with_a_batch_size_publishes_batches_that_decode_to_every_event(
    settings: Settings, unique_name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(env_name("kafka_bootstrap"), settings.kafka_bootstrap)
    monkeypatch.setenv(env_name("topic_prefix"), settings.topic_prefix)
    scenario = SCENARIOS / "short.toml"
    args = ["--duration", "4s", "--rate", "300", "--seed", "5", "--start", START]
    summary = tmp_path / "summary.json"
    code = main(
        [
            "simulate",
            "--scenario",
            str(scenario),
            *args,
            "--fast",
            "--batch-size",
            "50",
            "--summary",
            str(summary),
        ]
    )
    assert code == 0
    written = json.loads(summary.read_text())
    # Unpaced, nothing is late: the delay is a real-time run's.
    assert written["records"] == written["delivered"] > 0 and written["behind"] == []
    assert 0 < written["messages"] < written["records"]
    run = SimulationRun.prepare(
        load_scenario(scenario), start_ms=START_MS, seed=5, rate=300, duration=timedelta(seconds=4)
    )
    events = list(run.events())
    expected = Counter(event.topic for event in events)
    contracts = {event.topic: type(event.record) for event in events}

    # Batches hold up to 50 records: at least this many messages per topic.
    least = Counter({topic: -(-n // 50) for topic, n in expected.items()})
    received = _consume(settings, unique_name, least)
    records: dict[str, list[Any]] = {suffix: [] for suffix in DECODERS}
    for suffix, messages in received.items():
        owner = BATCHES[contracts[suffix]].owner
        for message in messages:
            batch = decode_batch(contracts[suffix], message.value())
            assert 1 <= len(batch) <= 50
            assert not any(isinstance(record, DecodeError) for record in batch), batch
            assert {getattr(record, owner) for record in batch} == {message.key().decode()}
            records[suffix] += batch
    assert {suffix: len(batch) for suffix, batch in records.items()} == dict(expected)
    assert sum(map(len, received.values())) < len(events) / 10
    sent_ids = sorted(e.record.request_id for e in events if isinstance(e.record, Prediction))
    assert sorted(r.request_id for r in records["predictions"]) == sent_ids
