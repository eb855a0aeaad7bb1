"""librdkafka settings of the fleet's clients, chosen for latency and for never blocking."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from streams.kafka_security import librdkafka_security
from streams.settings import Settings
from streams.topics import KEY_PARTITIONER

# Shared by every client: no Nagle delay on small messages, and a quick reconnect once the
# broker is back (the default backoff grows to 10 s, which would delay catching up).
# librdkafka's own log lines go to Python logging rather than straight to stderr; as in
# any library, they are shown only if the application configures logging. The errors that
# matter are counted in the clients' stats as well.
_kafka_log = logging.getLogger("streams.fleet.kafka")
_kafka_log.addHandler(logging.NullHandler())
_COMMON: dict[str, Any] = {
    "logger": _kafka_log,
    "socket.nagle.disable": True,
    "reconnect.backoff.ms": 50,
    "reconnect.backoff.max.ms": 1000,
}
# Producers only: consumers warn about a producer property.
_PRODUCER: dict[str, Any] = {**_COMMON, "partitioner": KEY_PARTITIONER}


def listener_consumer_config(settings: Settings) -> dict[str, Any]:
    """A consumer that reads the control topic from the start and waits little per fetch.

    The listener assigns partitions itself and never commits, so the group id is private
    and no group is ever joined. The broker answers a waiting fetch as soon as a message
    arrives; ``fetch.wait.max.ms`` only bounds the wait when nothing does, and a short
    one keeps a fetch from being parked on a connection that went away.
    """
    return {
        **_COMMON,
        "bootstrap.servers": settings.kafka_bootstrap,
        **librdkafka_security(settings),
        "group.id": f"failsoft-fleet-listener-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 10,
        "fetch.min.bytes": 1,
        "fetch.error.backoff.ms": 10,
    }


def command_producer_config(settings: Settings) -> dict[str, Any]:
    """A producer of control commands: sent at once (no linger), durably, in order."""
    return {
        **_PRODUCER,
        "bootstrap.servers": settings.kafka_bootstrap,
        **librdkafka_security(settings),
        "linger.ms": 0,
        "acks": "all",
        # One request in flight keeps commands in order across retries, without needing the
        # idempotent producer (whose PID handshake adds start-up latency); seq guards replays.
        "max.in.flight.requests.per.connection": 1,
    }


def prediction_producer_config(
    settings: Settings, max_buffered: int, delivery_timeout_s: float
) -> dict[str, Any]:
    """A producer whose ``produce`` never waits: a full queue raises at once, and a message
    the broker cannot take within ``delivery_timeout_s`` is failed, freeing its slot.

    Its messages are batches of predictions that the logger has already lingered over,
    so librdkafka sends them at once (it still groups what queues up meanwhile)."""
    return {
        **_PRODUCER,
        "bootstrap.servers": settings.kafka_bootstrap,
        **librdkafka_security(settings),
        "queue.buffering.max.messages": max_buffered,
        "queue.buffering.max.kbytes": 256 * 1024,
        "linger.ms": 0,
        "acks": 1,
        "message.timeout.ms": int(delivery_timeout_s * 1000),
    }
