"""Encoding, pacing and producing simulated events: the simulator's only side effects.

Events are encoded with the contracts' codec and produced with confluent-kafka in batches
(the producer lingers a little and compresses), keyed as the topic catalogue says, with
the Kafka timestamp set to the event's time. ``Pacer`` plays the compressed clock in real
time, or not at all (as fast as possible).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from schemas.codec import encode
from streams.simulate.traffic import SimEvent
from streams.topics import KEY_PARTITIONER

__all__ = ["Pacer", "ProducerLike", "PublishStats", "producer_config", "publish"]

# Serve delivery reports at least this often while producing flat out.
_POLL_EVERY = 1000
_FULL_QUEUE_WAIT_S = 0.05


class ProducerLike(Protocol):
    """The part of ``confluent_kafka.Producer`` the simulator uses."""

    def produce(
        self,
        topic: str,
        *,
        value: bytes,
        key: bytes,
        timestamp: int,
        on_delivery: Callable[[Any, Any], None],
    ) -> None: ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...


def producer_config(bootstrap: str) -> dict[str, Any]:
    """Throughput over latency: the simulator stands in for many serving nodes at once."""
    return {
        "bootstrap.servers": bootstrap,
        "linger.ms": 20,
        "batch.num.messages": 10_000,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
        "client.id": "failsoft-simulate",
        "partitioner": KEY_PARTITIONER,
    }


@dataclasses.dataclass
class PublishStats:
    """Counts per topic: handed to the producer, acknowledged by the broker, and failed."""

    produced: Counter[str] = dataclasses.field(default_factory=Counter)
    delivered: Counter[str] = dataclasses.field(default_factory=Counter)
    failed: Counter[str] = dataclasses.field(default_factory=Counter)
    errors: Counter[str] = dataclasses.field(default_factory=Counter)
    undelivered: int = 0

    def on_delivery(self, error: Any, message: Any) -> None:
        if error is None:
            self.delivered[message.topic()] += 1
        else:
            self.failed[message.topic()] += 1
            self.errors[str(error)] += 1


class Pacer:
    """Waits until an event's time has come on the wall clock, when pacing in real time.

    The compressed clock starts at ``start_ms`` when the pacer is created; events earlier
    than that (feature writes before the first request) go at once. ``wait`` gets the
    producer's ``poll`` as its way to sleep, so delivery reports are served meanwhile.
    """

    def __init__(
        self, start_ms: int, *, realtime: bool, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.start_ms = start_ms
        self.realtime = realtime
        self._clock = clock
        self._wall_start = clock()

    def lag_s(self, at_ms: int) -> float:
        """How far the event's time is ahead of the wall clock (negative: behind)."""
        return (at_ms - self.start_ms) / 1000 - (self._clock() - self._wall_start)

    def wait(self, at_ms: int, sleep: Callable[[float], object]) -> None:
        if not self.realtime:
            return
        ahead = self.lag_s(at_ms)
        while ahead > 0.001:
            sleep(ahead)
            ahead = self.lag_s(at_ms)


def publish(
    events: Iterable[SimEvent],
    producer: ProducerLike,
    topic_names: Mapping[str, str],
    pacer: Pacer,
    *,
    stats: PublishStats | None = None,
    progress: Callable[[PublishStats, SimEvent], None] | None = None,
    flush_timeout_s: float = 60.0,
) -> PublishStats:
    """Produce every event to its topic (``topic_names`` maps the event's topic to a name).

    ``stats`` may be passed in so that a caller interrupted mid-way (Ctrl-C) still has the
    counts; the producer is flushed whatever happens. ``progress`` is called now and then.
    """
    stats = stats if stats is not None else PublishStats()

    def sleep(seconds: float) -> None:
        producer.poll(seconds)

    try:
        for count, event in enumerate(events, start=1):
            pacer.wait(event.at, sleep)
            topic = topic_names[event.topic]
            value = encode(event.record)
            while True:
                try:
                    producer.produce(
                        topic,
                        value=value,
                        key=event.key.encode(),
                        timestamp=event.at,
                        on_delivery=stats.on_delivery,
                    )
                    break
                except BufferError:
                    # The local queue is full: let the broker catch up rather than drop.
                    producer.poll(_FULL_QUEUE_WAIT_S)
            stats.produced[topic] += 1
            if count % _POLL_EVERY == 0:
                producer.poll(0)
                if progress is not None:
                    progress(stats, event)
    finally:
        stats.undelivered = producer.flush(flush_timeout_s)
    return stats
