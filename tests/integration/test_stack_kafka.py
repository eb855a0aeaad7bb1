"""Round trips through the real broker with both Kafka clients failsoft uses."""

from __future__ import annotations

import time
from typing import Any

import pytest

pytestmark = pytest.mark.integration

MESSAGES = [(f"model-{i}".encode(), f'{{"seq": {i}}}'.encode()) for i in range(5)]
RECEIVE_TIMEOUT_S = 30.0

Message = tuple[bytes | None, bytes | None]


def produce_with_confluent(config: dict[str, Any], topic: str, messages: list[Message]) -> None:
    from confluent_kafka import Producer

    producer = Producer(config)
    for key, value in messages:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(RECEIVE_TIMEOUT_S) == 0


def consume_with_confluent(config: dict[str, Any], topic: str, count: int) -> list[Message]:
    from confluent_kafka import Consumer

    consumer = Consumer(config)
    consumer.subscribe([topic])
    received: list[Message] = []
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


async def consume_with_aiokafka(
    bootstrap: str, topic: str, group: str, count: int
) -> list[Message]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest"
    )
    await consumer.start()
    received: list[Message] = []
    try:
        deadline = time.monotonic() + RECEIVE_TIMEOUT_S
        while len(received) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                received.extend((record.key, record.value) for record in records)
    finally:
        await consumer.stop()
    return received


def test_confluent_kafka_produces_and_consumes(
    kafka_topic: str,
    confluent_producer_config: dict[str, Any],
    confluent_consumer_config: dict[str, Any],
) -> None:
    produce_with_confluent(confluent_producer_config, kafka_topic, MESSAGES)

    assert consume_with_confluent(confluent_consumer_config, kafka_topic, len(MESSAGES)) == MESSAGES


async def test_aiokafka_produces_and_consumes(
    kafka_bootstrap: str, kafka_topic: str, unique_name: str
) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in MESSAGES:
            await producer.send_and_wait(kafka_topic, value=value, key=key)
    finally:
        await producer.stop()

    received = await consume_with_aiokafka(kafka_bootstrap, kafka_topic, unique_name, len(MESSAGES))
    assert received == MESSAGES


async def test_aiokafka_reads_what_confluent_kafka_wrote(
    kafka_bootstrap: str,
    kafka_topic: str,
    unique_name: str,
    confluent_producer_config: dict[str, Any],
) -> None:
    """The fleet client (confluent-kafka) and the workers (aiokafka) share topics."""
    produce_with_confluent(confluent_producer_config, kafka_topic, MESSAGES)

    received = await consume_with_aiokafka(kafka_bootstrap, kafka_topic, unique_name, len(MESSAGES))
    assert received == MESSAGES
