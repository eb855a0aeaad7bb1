"""``FleetProducer``: the fleet's confluent-kafka producer, which counts what the broker refuses.

A node's credentials decide what it may write: the broker answers a produce to a topic
its principal may not write with ``TOPIC_AUTHORIZATION_FAILED`` in the message's delivery
report, whoever asked for the produce. Counting those refusals per topic and cause, on
the producer itself rather than in one caller's callback, makes a node that was given the
wrong credentials, or that tries to write where it must not (the control topic), visible
in its stats whichever code path produced.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

DeliveryCallback = Callable[[KafkaError | None, Message], None]


class FleetProducer(Producer):
    """A ``confluent_kafka.Producer`` whose ``refused()`` counts, per topic and cause
    (the broker's error name), every message the broker refused.

    Only the broker's own answers count; librdkafka's local failures (a message that
    timed out, a queue purged at close) are no refusal. ``produce`` takes the
    partition, the delivery callback, the timestamp and the headers by keyword only.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        # Delivery reports are served by whichever thread polls or flushes.
        self._refused_lock = threading.Lock()
        self._refused: dict[str, dict[str, int]] = {}

    def produce(  # type: ignore[override]
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        on_delivery: DeliveryCallback | None = None,
        **kwargs: Any,
    ) -> None:
        def report(error: KafkaError | None, message: Message) -> None:
            if error is not None and _is_broker_error(error):
                self._count(topic, error.name())
            if on_delivery is not None:
                on_delivery(error, message)

        super().produce(topic, value, key, on_delivery=report, **kwargs)

    def refused(self) -> dict[str, dict[str, int]]:
        """``topic -> cause -> messages`` the broker refused since start."""
        with self._refused_lock:
            return {topic: dict(causes) for topic, causes in self._refused.items()}

    def _count(self, topic: str, cause: str) -> None:
        with self._refused_lock:
            causes = self._refused.setdefault(topic, {})
            causes[cause] = causes.get(cause, 0) + 1


def _is_broker_error(error: KafkaError) -> bool:
    # librdkafka numbers its local errors below zero (their names begin with "_"); the
    # broker's answers, from Kafka's protocol, from one up.
    return bool(error.code() > 0)
