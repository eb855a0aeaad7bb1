"""Round trips through the real broker with both Kafka clients failsoft uses."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

pytestmark = pytest.mark.integration

MESSAGES = [(f"model-{i}".encode(), f'{{"seq": {i}}}'.encode()) for i in range(5)]
RECEIVE_TIMEOUT_S = 30.0


def consume_with_confluent(config: dict[str, Any], topic: str, count: int) -> list[Any]:
    from confluent_kafka import Consumer

    consumer = Consumer(config)
    consumer.subscribe([topic])
    received: list[Any] = []
    deadline = time.monotonic() + RECEIVE_TIMEOUT_S
    try:
        while len(received) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            received.append((message.key(), message.value()))
    finally:
        consumer.close()
    return received


def test_confluent_kafka_produces_and_consumes(
    kafka_topic: str,
    confluent_producer_config: dict[str, Any],
    confluent_consumer_config: dict[str, Any],
) -> None:
    from confluent_kafka import Producer

    producer = Producer(confluent_producer_config)
    for key, value in MESSAGES:
        producer.produce(kafka_topic, key=key, value=value)
    assert producer.flush(RECEIVE_TIMEOUT_S) == 0

    assert consume_with_confluent(confluent_consumer_config, kafka_topic, len(MESSAGES)) == MESSAGES


async def test_aiokafka_produces_and_consumes(
    kafka_bootstrap: str, kafka_topic: str, unique_name: str
) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in MESSAGES:
            await producer.send_and_wait(kafka_topic, value=value, key=key)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        kafka_topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=unique_name,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    received: list[tuple[bytes | None, bytes | None]] = []
    try:
        deadline = time.monotonic() + RECEIVE_TIMEOUT_S
        while len(received) < len(MESSAGES) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                received.extend((record.key, record.value) for record in records)
    finally:
        await consumer.stop()
    assert received == MESSAGES


async def test_aiokafka_reads_what_confluent_kafka_wrote(
    kafka_bootstrap: str,
    kafka_topic: str,
    unique_name: str,
    confluent_producer_config: dict[str, Any],
) -> None:
    """The fleet client (confluent-kafka) and the workers (aiokafka) share topics."""
    from aiokafka import AIOKafkaConsumer
    from confluent_kafka import Producer

    producer = Producer(confluent_producer_config)
    producer.produce(kafka_topic, key=b"model-a", value=b"prediction")
    assert producer.flush(RECEIVE_TIMEOUT_S) == 0

    consumer = AIOKafkaConsumer(
        kafka_topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=unique_name,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), RECEIVE_TIMEOUT_S)
    finally:
        await consumer.stop()
    assert (record.key, record.value) == (b"model-a", b"prediction")
