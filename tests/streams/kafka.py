"""Reading a topic back in the streams tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
READ_TIMEOUT_S = 120.0


def read_topic(
    config: dict[str, Any], topic: str, expected: int, decode: Callable[[bytes | None], T]
) -> list[T]:
    """Every message of ``topic`` from the start, decoded, once ``expected`` have arrived
    and a second passed without another (so a stray extra message is read too)."""
    from confluent_kafka import Consumer

    # A group of its own: a worker's group may have the test's name.
    consumer = Consumer(config | {"group.id": f"{config['group.id']}-{uuid.uuid4().hex[:6]}"})
    consumer.subscribe([topic])
    records: list[T] = []
    deadline = time.monotonic() + READ_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                if len(records) >= expected:
                    break
                continue
            assert message.error() is None, message.error()
            records.append(decode(message.value()))
    finally:
        consumer.close()
    return records
