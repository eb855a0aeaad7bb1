"""Encoding, pacing and producing simulated events: the simulator's only side effects.

Events are encoded with the contracts' codec and produced with confluent-kafka (the
producer lingers a little and compresses), keyed as the topic catalogue says, with the
Kafka timestamp set to the event's time. ``Pacer`` plays the compressed clock in real
time, or not at all (as fast as possible).

With ``batch_size`` above 1, the events of one topic and owner (a model; a writer for
feature writes) go as batch messages (``schemas.codec.encode_batch``) of up to that many
records, keyed by the owner and stamped with the time of their latest record. A batch
waits for no event that is not due yet: when pacing is about to wait, every pending batch
goes first. Pacing in real time, nor does it wait more than ``linger_ms`` of event time
after its first record, as the fleet client's ``PredictionLogger`` lingers: a simulator
behind its clock never waits, and a model's batch would then fill for seconds, a delay
that a fleet would not add and that the demo would count as the worker's. Unpaced
(``--fast``, a bulk load), batches fill up.

``PublishStats.behind`` is how far behind its clock the simulator handed records to the
producer, at most, per second of event time: the share of a record's delay that is the
simulator's, not the worker's.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from schemas.codec import BATCHES, encode, encode_batch
from streams.kafka_security import librdkafka_security, quiet_logger
from streams.settings import Settings
from streams.topics import KEY_PARTITIONER

if TYPE_CHECKING:
    from streams.simulate.deliveries import DeliveryWatch

    # Not at run time: ``failsoft simulate``'s options read ``LINGER_MS`` from here, and
    # the command line must load in a fleet-only install, which has no numpy.
    from streams.simulate.traffic import SimEvent

__all__ = ["LINGER_MS", "Pacer", "ProducerLike", "PublishStats", "producer_config", "publish"]

# The simulator stands in for a whole fleet, so its batches are longer than one serving
# node's (``PredictionLogger`` lingers 5 ms): 50 ms holds about ten records of a model at
# ten times the demo's rate, and is half the delay the worker's own micro-batches may add.
LINGER_MS = 50.0

# Serve delivery reports at least this often while producing flat out.
_POLL_EVERY = 1000
_FULL_QUEUE_WAIT_S = 0.05
_FLUSH_SLICE_S = 5.0
# An event less than this far ahead of the wall clock goes at once.
_AHEAD_S = 0.001


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


def producer_config(settings: Settings) -> dict[str, Any]:
    """Throughput over latency: the simulator stands in for many serving nodes at once."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        **librdkafka_security(settings),
        "logger": quiet_logger("failsoft.simulate.kafka"),
        "linger.ms": 20,
        "batch.num.messages": 10_000,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
        "client.id": "failsoft-simulate",
        "partitioner": KEY_PARTITIONER,
    }


@dataclasses.dataclass
class PublishStats:
    """Records per topic: handed to the producer, acknowledged by the broker, and failed;
    and the messages that carried them (``undelivered``: messages left at the end)."""

    produced: Counter[str] = dataclasses.field(default_factory=Counter)
    delivered: Counter[str] = dataclasses.field(default_factory=Counter)
    failed: Counter[str] = dataclasses.field(default_factory=Counter)
    messages: Counter[str] = dataclasses.field(default_factory=Counter)
    errors: Counter[str] = dataclasses.field(default_factory=Counter)
    undelivered: int = 0
    # Delivery reports served, of messages (a batch message is one).
    reports: int = 0
    # Pacing in real time, per second of event time (its first millisecond): the most a
    # message's first record went behind its time on the wall clock, in seconds.
    behind: dict[int, float] = dataclasses.field(default_factory=dict)

    @property
    def behind_s(self) -> float:
        return max(self.behind.values(), default=0.0)

    def note_sent(self, first_at: int, behind_s: float) -> None:
        second = first_at - first_at % 1000
        if behind_s > self.behind.get(second, 0.0):
            self.behind[second] = behind_s

    def summary(self) -> dict[str, Any]:
        """Totals for a report: records and messages handed over, records delivered, and
        ``behind`` as ``[second, seconds behind]`` pairs in time order."""
        return {
            "records": sum(self.produced.values()),
            "messages": sum(self.messages.values()),
            "delivered": sum(self.delivered.values()),
            "behind": sorted(self.behind.items()),
        }

    @property
    def outstanding(self) -> int:
        """Messages handed to the producer and not reported yet."""
        return sum(self.messages.values()) - self.reports

    def on_delivery(self, records: int, error: Any, message: Any) -> None:
        """The delivery report of a message of ``records`` records."""
        self.reports += 1
        if error is None:
            self.delivered[message.topic()] += records
        else:
            self.failed[message.topic()] += records
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

    def would_wait(self, at_ms: int) -> bool:
        return self.realtime and self.lag_s(at_ms) > _AHEAD_S

    def wait(self, at_ms: int, sleep: Callable[[float], object]) -> None:
        while self.would_wait(at_ms):
            sleep(self.lag_s(at_ms))


def publish(
    events: Iterable[SimEvent],
    producer: ProducerLike,
    topic_names: Mapping[str, str],
    pacer: Pacer,
    *,
    batch_size: int = 1,
    linger_ms: float = LINGER_MS,
    stats: PublishStats | None = None,
    progress: Callable[[PublishStats, SimEvent], None] | None = None,
    flush_timeout_s: float = 60.0,
    watch: DeliveryWatch | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> PublishStats:
    """Produce every event to its topic (``topic_names`` maps the event's topic to a name),
    one message per event, or in batches of up to ``batch_size`` records that, pacing in
    real time, wait at most ``linger_ms`` of event time after their first.

    ``stats`` may be passed in so that a caller interrupted mid-way (Ctrl-C) still has the
    counts; pending batches are sent and the producer is flushed whatever happens.
    ``progress`` is called now and then; so is ``watch``, which notices deliveries that
    stop while messages are outstanding (also during the final flush).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected 1 or more, got {batch_size}")
    if not linger_ms >= 0:
        raise ValueError(f"linger_ms: expected 0 or more, got {linger_ms}")
    stats = stats if stats is not None else PublishStats()
    pending: dict[tuple[str, str], list[SimEvent]] = {}
    # The delivery report callback of each message size: single-record messages share one.
    reports: dict[int, Callable[[Any, Any], None]] = {}

    def check() -> None:
        if watch is not None:
            watch.check(stats.outstanding, stats.reports)

    def sleep(seconds: float) -> None:
        producer.poll(seconds)
        check()

    def send(
        topic: str, key: str, value: bytes, first_at: int, timestamp: int, records: int
    ) -> None:
        # Records from before the clock started (writes before the first request) go at
        # once, and are not late.
        if pacer.realtime and first_at >= pacer.start_ms:
            stats.note_sent(first_at, -pacer.lag_s(first_at))
        on_delivery = reports.get(records)
        if on_delivery is None:
            on_delivery = reports[records] = functools.partial(stats.on_delivery, records)
        while True:
            try:
                producer.produce(
                    topic,
                    value=value,
                    key=key.encode(),
                    timestamp=timestamp,
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                # The local queue is full: let the broker catch up rather than drop.
                producer.poll(_FULL_QUEUE_WAIT_S)
        stats.produced[topic] += records
        stats.messages[topic] += 1

    def send_batch(topic: str, owner: str, batch: list[SimEvent]) -> None:
        contract = type(batch[0].record)
        value = encode_batch(contract, owner, [event.record for event in batch])
        send(topic, owner, value, batch[0].at, max(event.at for event in batch), len(batch))

    def send_pending() -> None:
        for (topic, owner), batch in pending.items():
            send_batch(topic, owner, batch)
        pending.clear()

    try:
        for count, event in enumerate(events, start=1):
            topic = topic_names[event.topic]
            if batch_size == 1:
                pacer.wait(event.at, sleep)
                send(topic, event.key, encode(event.record), event.at, event.at, 1)
            else:
                if pacer.would_wait(event.at):
                    send_pending()
                    pacer.wait(event.at, sleep)
                # Batches in the order of their first record, which events come in.
                while pacer.realtime and pending:
                    oldest = next(iter(pending))
                    if event.at - pending[oldest][0].at < linger_ms:
                        break
                    send_batch(*oldest, pending.pop(oldest))
                owner = getattr(event.record, BATCHES[type(event.record)].owner)
                batch = pending.setdefault((topic, owner), [])
                batch.append(event)
                if len(batch) == batch_size:
                    send_batch(topic, owner, pending.pop((topic, owner)))
            if count % _POLL_EVERY == 0:
                producer.poll(0)
                check()
                if progress is not None:
                    progress(stats, event)
    finally:
        send_pending()
        stats.undelivered = _flush(producer, flush_timeout_s, check, clock)
    return stats


def _flush(
    producer: ProducerLike,
    timeout_s: float,
    check: Callable[[], None],
    clock: Callable[[], float],
) -> int:
    """``producer.flush`` in slices of at most ``_FLUSH_SLICE_S``, checking deliveries
    between them; the messages left at the end."""
    deadline = clock() + timeout_s
    while True:
        left = producer.flush(max(0.0, min(_FLUSH_SLICE_S, deadline - clock())))
        check()
        if left == 0 or clock() >= deadline:
            return left
