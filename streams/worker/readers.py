"""The worker's ingest: one batch reader of every input topic, beside Faust.

``IngestReader`` reads predictions, ground truth, feature writes and the app's internal
topic of feature writes by model with one plain aiokafka consumer (``getmany``), in
batches: Faust's per-event stream costs more per record than the monitors do (README,
"Benchmarks: simulator and worker"). Each message is decoded in one pass
(``streams.worker.ingest.admit``: a single-record message is a batch of one), every record
is processed or dead-lettered with its reason (a bad record inside a batch alone, with its
index), and the books count records per topic and reason.

Which partitions: the ones whose state this worker holds. Faust still assigns them:
its consumer subscribes to the state table's changelog, whose partition count equals the
input topics' (``streams.topics``), so the changelog partitions Faust makes active here
are the partition numbers of this worker's models in every input topic. The reader
follows them after each rebalance, once Faust has restored the table
(``on_rebalance_complete``) and it has read the control topic (``streams.worker.control``),
and lets them go, flushed and committed, when Faust revokes them. Its offsets live in a
group of its own (``<app id>-ingest``) that it never joins.

Predictions and labels are keyed by model, so they are on their model's partition. Feature
writes are keyed by entity: a write goes straight to the micro-batch of each model held
here that monitors its feature, and through the app's internal topic, keyed by model, to
each one held elsewhere. A model fed its writes both ways skips neither: its checkpoint's
offsets are per partition read, of the feature writes and of the internal topic alike.
Before, every write went through the internal topic, and a worker behind on its inputs
read those last, a second encode, send, fetch and decode each (README, "Eighteenth
round").

Records of a model wait in a micro-batch (``MicroBatches``) until it holds
``MICRO_BATCH`` records or its first record has waited ``MICRO_BATCH_LINGER_S`` (or
``EARLY_FEED_S`` once a read finds nothing), then go to the model's monitor as one batch
(``Monitors.feed``), on the model's partition: a
monitor's checkpoint is written to the state table, and its changelog, for that
partition, although no Faust event is current (``_on_partition``).

Offsets are committed every ``COMMIT_INTERVAL_S``, on a revocation and at stop, only
after every record read has been fed and the producer has flushed (the commands, dead
letters and forwarded writes that cover them are in Kafka first), and never past a record
fed to a monitor that has not been written to the state table since: a partition's
commit stops at the first such record. A monitor's checkpoint carries the offsets it has
read to (``Monitor.read_to``), so a worker that restores it and reads those records again
skips them for that model: a crash loses none of a model's evidence and feeds none twice.
One exception: a feature write that reached its model through the internal topic before
a crash, or that reaches it that way after one, may reach it twice. The worker that reads
the write again after the crash forwards it again, as a new message of the internal
topic, when its model is on another worker by then; and a model's checkpoint counts
forwarded writes by their internal-topic offsets, so a write fed one way before the crash
and the other way after it (its feature-writes partition and the model's partition
parted or brought together by the rebalance) is not recognised.
A monitor fed and not written for ``Settings.worker_checkpoint_within`` is written, so the
commit follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import faust
import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from faust.streams import _current_event

from schemas.codec import dead_letters, encode
from schemas.contracts import DecodeError, FeatureWrite
from streams.kafka_security import aiokafka_security
from streams.monitor.batch import Record
from streams.worker.ingest import Input, admit
from streams.worker.metrics import Histogram
from streams.worker.shell import model_partition

if TYPE_CHECKING:
    from streams.worker.app import FailsoftApp
    from streams.worker.shell import Monitors

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "COMMIT_INTERVAL_S",
    "EARLY_FEED_S",
    "EFFECT_LATENCY_BUCKETS",
    "MICRO_BATCH",
    "MICRO_BATCH_LINGER_S",
    "Due",
    "IngestReader",
    "MicroBatches",
    "TopicLag",
    "topic_lags",
]

# At most this many messages per getmany.
FETCH_MAX_RECORDS = 2000
# The broker answers the reader's fetch once it holds this many bytes for it or has waited
# this long. Answering at the first byte (the client's default), a fetch at a few hundred
# records a second brought a record or two, and the consumer's fetch loop took a fifth of
# a 1,000-model worker's CPU; at a high rate the bytes are there at once. The wait is
# before a record reaches the worker, not part of its batching.
FETCH_MIN_BYTES = 16_384
FETCH_MAX_WAIT_MS = 25
# A model's micro-batch goes to its monitor at this many records, or once its first record
# has waited this long: batching adds at most the linger plus one read's handling, within
# the 100 ms the worker allows it.
MICRO_BATCH = 500
MICRO_BATCH_LINGER_S = 0.05
# A read that finds nothing (the reader has caught up) feeds early the batches whose first
# record has waited this long: waiting out the linger with nothing to read only adds
# latency, and once one long read gives every model's batch one deadline they fall due
# in one turn, back to back (p99 242 ms at 80% of the maximum; README, "Effect
# latency"). Feeding everything waiting on such a read cut that but fed nearly every
# message alone, at 2.6 times the CPU per record: a model's batch fed early holds at
# least this much of its traffic, so a model costs at most one batch per this many
# seconds. The reader's loop model (``bench_effect_latency --model``: 20 models at 80%
# utilisation, 1 ms a batch) had 10 ms take the p99 from 224 to 163 ms with messages of
# one record, from 411 to 156 ms with messages of 10, for 1.4 and 2.3 times the
# batches; feeding everything, to 111 and 112 ms for 1.9 and 2.9 times.
EARLY_FEED_S = 0.01
COMMIT_INTERVAL_S = 1.0
# Long runs of synchronous work (a read's messages decoded, its due micro-batches fed,
# every model's at a commit, every monitor written at a handover) go in slices of about
# this many seconds, with a turn of the event loop between them (``_Turns``): with 1,000
# models one run fed them all without suspending, for seconds at a quarter of a core,
# and Faust's consumer thread, the timers, the sinks and /metrics waited (the soak's
# "Thread keepalive is not responding"). Small beside the linger, so batching holds.
FEED_SLICE_S = 0.02
# Upper bounds of the histograms in /metrics: micro-batch sizes, and seconds from a
# record's read to its effects (issue #12's goal is a p99 of 150 ms).
BATCH_SIZE_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096)
EFFECT_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# A batch of feature writes on the internal topic: a JSON array of them, written by this
# app, so one that does not decode is a bug and raises.
_WRITE_BATCH = msgspec.json.Decoder(list[FeatureWrite])


@dataclasses.dataclass
class _Pending:
    partition: int
    since: float
    records: list[Record]
    read: dict[TopicPartition, range]


class Due(NamedTuple):
    """A micro-batch taken out: its model, partition, records, when its first record was
    read, and per partition read the offsets its records came from (first to last)."""

    model_id: str
    partition: int
    records: list[Record]
    since: float
    read: dict[TopicPartition, range]


class MicroBatches:
    """Records waiting for their model's monitor, a micro-batch per model.

    A model's batch is due when it holds ``size`` records, or when its first record has
    waited ``linger`` seconds, or ``early`` seconds if the caller is idle (its read found
    nothing). Pure: the caller passes the clock.

    >>> p0, p1, g1 = TopicPartition("p", 0), TopicPartition("p", 1), TopicPartition("g", 1)
    >>> batches = MicroBatches(size=3, linger=0.1, early=0.02)
    >>> batches.add("a", 0, p0, range(7, 9), ["r1", "r2"], now=0.0)
    >>> batches.add("b", 1, p1, range(4, 5), ["s1"], now=0.05)
    >>> batches.due(now=0.06), batches.next_deadline()
    ([], 0.02)
    >>> batches.add("b", 1, g1, range(2, 3), ["s2"], now=0.07)
    >>> batches.add("b", 1, p1, range(6, 7), ["s3"], now=0.07)
    >>> due, = batches.due(now=0.07)
    >>> due.model_id, due.partition, due.records, due.since
    ('b', 1, ['s1', 's2', 's3'], 0.05)
    >>> [(tp.topic, offsets) for tp, offsets in due.read.items()]
    [('p', range(4, 7)), ('g', range(2, 3))]
    >>> [(d.model_id, d.records) for d in batches.due(now=0.1)], len(batches)
    ([('a', ['r1', 'r2'])], 0)
    >>> batches.add("a", 0, p0, range(9, 10), ["r3"], now=0.2)
    >>> batches.add("b", 1, p1, range(7, 8), ["s4"], now=0.21)
    >>> batches.due(now=0.225), batches.next_deadline()
    ([], 0.22)
    >>> [(d.model_id, d.records) for d in batches.due(now=0.225, idle=True)], len(batches)
    ([('a', ['r3'])], 1)
    """

    def __init__(self, size: int, linger: float, early: float | None = None) -> None:
        self.size = size
        self.linger = linger
        # None: never early.
        self.early = linger if early is None else early
        # In order of each batch's first record, so the oldest is first.
        self._pending: dict[str, _Pending] = {}
        self._full: list[str] = []

    def __len__(self) -> int:
        return sum(len(pending.records) for pending in self._pending.values())

    def add(
        self,
        model_id: str,
        partition: int,
        source: TopicPartition,
        offsets: range,
        records: Sequence[Record],
        now: float,
    ) -> None:
        """Records of ``model_id``, whose monitor is on ``partition``, read from ``source``
        at ``offsets`` (first to last). A feature write's partition is its entity's, not
        its model's."""
        pending = self._pending.get(model_id)
        if pending is None:
            pending = self._pending[model_id] = _Pending(partition, now, [], {})
        before = len(pending.records)
        pending.records.extend(records)
        read = pending.read.get(source)
        pending.read[source] = offsets if read is None else range(read.start, offsets.stop)
        if before < self.size <= len(pending.records):
            self._full.append(model_id)

    def next_deadline(self) -> float | None:
        """When the oldest batch may be fed early, if any waits: a reader waits on Kafka
        until then, then feeds it if nothing came."""
        for pending in self._pending.values():
            return pending.since + self.early
        return None

    def due(self, now: float, idle: bool = False) -> list[Due]:
        """The batches that are full or waited long enough (``early`` if ``idle``, else
        ``linger``), taken out, oldest first."""
        due = [self._take(model_id) for model_id in self._full]
        self._full.clear()
        full = len(due)
        expired = now - (self.early if idle else self.linger)
        for model_id, pending in self._pending.items():
            if pending.since > expired:
                break
            due.append(self._due(model_id, pending))
        for taken in due[full:]:
            del self._pending[taken.model_id]
        return due

    def drain(self) -> list[Due]:
        """Every waiting batch, taken out."""
        drained = [self._due(m, p) for m, p in self._pending.items()]
        self._pending.clear()
        self._full.clear()
        return drained

    def _take(self, model_id: str) -> Due:
        return self._due(model_id, self._pending.pop(model_id))

    @staticmethod
    def _due(model_id: str, pending: _Pending) -> Due:
        return Due(model_id, pending.partition, pending.records, pending.since, pending.read)


@dataclasses.dataclass
class _Uncovered:
    """A model's records fed to its monitor since it was last written to the table: when
    the first was read, and per partition the offset of the first."""

    since: float
    first: dict[TopicPartition, int]


class _Turns:
    """Lets the event loop turn once the work since the last turn has held it for
    ``FEED_SLICE_S``; ``turn`` is awaited between items of a long run."""

    def __init__(self) -> None:
        self._at = time.monotonic() + FEED_SLICE_S

    async def turn(self) -> None:
        if time.monotonic() >= self._at:
            await asyncio.sleep(0)
            self._at = time.monotonic() + FEED_SLICE_S


class _Message:
    """What Faust reads of the current event to place a table write: its message's topic
    and partition."""

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition


class _Event:
    def __init__(self, topic: str, partition: int) -> None:
        self.message = _Message(topic, partition)


@contextlib.contextmanager
def _on_partition(topic: str, partition: int) -> Iterator[None]:
    """Table reads and writes inside go to ``partition`` of the table, as in an agent
    reading that partition of ``topic``.

    Faust places a table's write (its store's partition, and its changelog record's) by
    the current event's message (``faust.streams.current_event``), which a batch read
    outside Faust's stream does not have; this makes one current for the block. The
    changelog record is sent as in an agent, so a restore (after SIGKILL too) reads it.
    """
    event = _Event(topic, partition)
    token = _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    try:
        yield
    finally:
        _current_event.reset(token)


@dataclasses.dataclass(frozen=True)
class TopicLag:
    """How far this worker's reader is behind on one topic: the messages after its position
    in its partitions; the records they hold, estimated from the records per message read
    on the topic so far (exact for single-record messages: a batch message's size is only
    known once read); and the age of the last record it read while messages remain (0
    when it has read every message)."""

    messages: int
    records: int
    seconds: float


class IngestReader:
    """Reads the input topics in batches and feeds each model's monitor micro-batches."""

    def __init__(
        self,
        app: FailsoftApp,
        sources: Sequence[Input],
        writes_by_model: faust.TopicT,
        dead_letter_topic: faust.TopicT,
        monitors: Monitors,
        changelog_topic: str,
    ) -> None:
        self.app = app
        self.sources = {source.spec.name(app.settings): source for source in sources}
        self.writes_topic_name = writes_by_model.get_topic_name()
        self.dead_letter_topic = dead_letter_topic
        self.monitors = monitors
        # The partition of each model fed, for writing its monitor to the table.
        self.partition_of: dict[str, int] = {}
        # Per model fed since its monitor was last written: what holds the commit back.
        self.uncovered: dict[str, _Uncovered] = {}
        self.checkpoint_within = app.settings.worker_checkpoint_within
        self.changelog_topic = changelog_topic
        self.topics = [*self.sources, self.writes_topic_name]
        self.batches = MicroBatches(MICRO_BATCH, MICRO_BATCH_LINGER_S, EARLY_FEED_S)
        self.consumer: AIOKafkaConsumer | None = None
        self.task: asyncio.Task[None] | None = None
        self.partitions: frozenset[int] = frozenset()
        # The models on those partitions, and each one's partition: their feature writes
        # go straight to their micro-batches, the others' through the internal topic.
        # None until worked out for the current assignment (``_held_models``).
        self.held: dict[str, int] | None = None
        # A model-keyed input, whose partition count places the models.
        self.keyed_topic = next(name for name, source in self.sources.items() if source.by_model)
        # Bumped whenever the assignment changes: a read begun before is dropped.
        self.generation = 0
        self.ready = asyncio.Event()
        self.lock = asyncio.Lock()
        # Per partition: the offset after the last message read, and its timestamp (ms).
        self.next_offsets: dict[TopicPartition, int] = {}
        # For the lag only, per partition with nothing read yet: the consumer's position.
        self.positions: dict[TopicPartition, int] = {}
        self.last_timestamps: dict[TopicPartition, int] = {}
        self.last_commit = time.monotonic()
        # What /metrics shows beside the books.
        self.messages: Counter[str] = Counter()
        # For the lag in records: the records of the messages decoded, and those messages
        # (a routed write message a checkpoint covers is skipped undecoded).
        self.records: Counter[str] = Counter()
        self.decoded: Counter[str] = Counter()
        self.batch_sizes = Histogram(BATCH_SIZE_BUCKETS)
        self.effect_latency = Histogram(EFFECT_LATENCY_BUCKETS)
        app.on_partitions_revoked.connect(self._revoked)
        app.on_rebalance_complete.connect(self._rebalanced)

    async def start(self) -> None:
        settings = self.app.settings
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            **aiokafka_security(settings),
            group_id=f"{settings.worker_app_id}-ingest",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_min_bytes=FETCH_MIN_BYTES,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        await self.consumer.start()
        # Before the first records: what their monitors send must not repeat the topic.
        await self.monitors.sent.catch_up()
        self._assign()
        self.task = asyncio.create_task(self._read(self.consumer))

    async def stop(self) -> None:
        if self.task is not None:
            # Not while a read is handled: its records are fed and committed first.
            async with self.lock:
                self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None
        if self.consumer is not None:
            async with self.lock:
                await self._flush_and_commit(save=True)
            await self.consumer.stop()
            self.consumer = None

    async def _rebalanced(self, *args: Any, **kwargs: Any) -> None:
        # Sent once Faust has restored the state table for its new assignment.
        actives = self.app.assignor.assigned_actives()
        partitions = frozenset(tp.partition for tp in actives if tp.topic == self.changelog_topic)
        # The changelog's partitions are the input topics' (``streams.topics``).
        self.monitors.restored(partitions, self.app.consumer.topic_partitions(self.changelog_topic))
        if partitions != self.partitions:
            # Unchanged (no revocation came between), it reads on from where it is:
            # assigning again would reread what it fed since its last commit.
            async with self.lock:
                if partitions and self.consumer is not None:
                    # The monitors restored for these partitions may predate commands
                    # already sent for them, here or by the worker that held them.
                    await self.monitors.sent.catch_up()
                self.partitions = partitions
                self._assign()

    async def _revoked(self, *args: Any, **kwargs: Any) -> None:
        async with self.lock:
            await self._flush_and_commit(save=True)
            self.partitions = frozenset()
            self._assign()
            # What this worker held may now be another's: reread it from the table.
            self.monitors.forget()
            self.uncovered.clear()

    def _assign(self) -> None:
        self.generation += 1
        self.held = None
        self.next_offsets.clear()
        self.positions.clear()
        self.last_timestamps.clear()
        if self.consumer is None:
            return
        self.consumer.assign(
            [
                TopicPartition(topic, number)
                for topic in self.topics
                for number in sorted(self.partitions)
            ]
        )
        if self.partitions:
            self.ready.set()
        else:
            self.ready.clear()

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                await self.ready.wait()
                await self._read_batch(consumer)
                # A batch served from the consumer's fetch buffer never suspends: through a
                # backlog the reader would hold the loop until it next waits on Kafka, and
                # the sinks' requests, the timers and /metrics wait with it (chaos seed 6:
                # a worker SIGKILLed 9 s after its first assignment had delivered none of
                # its 741 points and 5 alerts).
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            # A bug of ours: the worker stops rather than silently losing its inputs.
            await self.app.crash(error)
            raise

    async def _read_batch(self, consumer: AIOKafkaConsumer) -> None:
        generation = self.generation
        deadline = self.batches.next_deadline()
        wait = 1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        wait = min(wait, max(0.0, self.last_commit + COMMIT_INTERVAL_S - time.monotonic()))
        batches = await consumer.getmany(timeout_ms=int(wait * 1000), max_records=FETCH_MAX_RECORDS)
        # When these records reached the worker: their micro-batches' linger, and their
        # effects' latency, count from here, decoding and waiting for the lock included.
        read_at = time.monotonic()
        async with self.lock:
            if generation != self.generation:
                # Read for an assignment that has changed: not fed, not committed.
                _unread(consumer, batches)
                return
            turns = _Turns()
            for tp, messages in batches.items():
                if tp.topic == self.writes_topic_name:
                    await self._routed(tp, messages, read_at, turns)
                elif not self.sources[tp.topic].by_model and self._held_models() is None:
                    # Which models are held here is not known yet: these writes are read
                    # again once it is, rather than forwarded, which could feed a model
                    # some writes through the internal topic and the later ones straight.
                    consumer.seek(tp, messages[0].offset)
                    continue
                else:
                    await self._admit(self.sources[tp.topic], tp, messages, read_at, turns)
                last = messages[-1]
                self.next_offsets[tp] = last.offset + 1
                self.last_timestamps[tp] = last.timestamp
            now = time.monotonic()
            # Nothing read: the reader has caught up, and what waited EARLY_FEED_S goes.
            await self._feed(self.batches.due(now, idle=not batches), turns)
            if now - self.last_commit >= COMMIT_INTERVAL_S:
                await self._flush_and_commit()

    async def _admit(
        self,
        source: Input,
        tp: TopicPartition,
        messages: Sequence[ConsumerRecord[bytes, bytes]],
        read_at: float,
        turns: _Turns,
    ) -> None:
        """Decode, dead-letter and book one partition's messages; route their records."""
        portfolio = self.app.portfolio
        monitoring = portfolio.models_monitoring
        held = {} if source.by_model else self.held
        assert held is not None, "feature writes admitted before the models held are known"
        topic = tp.topic
        processed = 0
        dead: list[DecodeError] = []
        # Per model held here: its records, and the offsets of the first and last message
        # with one. Per model held elsewhere: the feature writes to forward to it.
        by_model: dict[str, tuple[list[Record], list[int]]] = {}
        elsewhere: dict[str, list[FeatureWrite]] = {}
        for message in messages:
            admitted, errors = admit(source, message.value, portfolio)
            processed += len(admitted)
            if errors:
                await self._dead_letter(message, errors)
                dead += errors
            if admitted and source.by_model:
                # A message names one model (a batch message is one model's).
                model_id = admitted[0].model_id  # type: ignore[union-attr]
                self._take(by_model, model_id, tp, message.offset, admitted)
            elif admitted:
                monitored = _by_monitoring_model(admitted, monitoring)  # type: ignore[arg-type]
                for model_id, writes in monitored.items():
                    if model_id in held:
                        self._take(by_model, model_id, tp, message.offset, writes)
                    else:
                        elsewhere.setdefault(model_id, []).extend(writes)
            await turns.turn()
        self.app.counters.count(topic, processed, dead)
        self.messages[topic] += len(messages)
        self.records[topic] += processed + len(dead)
        self.decoded[topic] += len(messages)
        for model_id, (batch, (first, last)) in by_model.items():
            partition = tp.partition if source.by_model else held[model_id]
            self.batches.add(model_id, partition, tp, range(first, last + 1), batch, read_at)
        if elsewhere:
            await self._forward(elsewhere)

    def _held_models(self) -> dict[str, int] | None:
        """The models on this worker's partitions (``_held``), worked out once its consumer
        knows the partition count (Faust's may not yet at a rebalance's end; this one has
        it once it has fetched, since it asks for every assigned topic's at once), else
        None."""
        if self.held is None and self.consumer is not None:
            count = len(self.consumer.partitions_for_topic(self.keyed_topic) or ())
            if count:
                self.held = _held(self.app.portfolio.models, self.partitions, count)
        return self.held

    def _take(
        self,
        by_model: dict[str, tuple[list[Record], list[int]]],
        model_id: str,
        tp: TopicPartition,
        offset: int,
        records: Sequence[Record],
    ) -> None:
        """A message's records of a model held here join the model's share of the read,
        unless its monitor's checkpoint holds the message (until one is taken, since the
        read goes forward)."""
        taken = by_model.get(model_id)
        if taken is None and offset >= self._read_to(model_id, tp):
            taken = by_model[model_id] = ([], [offset, offset])
        if taken is not None:
            taken[0].extend(records)
            taken[1][1] = offset

    def _read_to(self, model_id: str, tp: TopicPartition) -> int:
        """The offset of ``tp`` that the model's monitor has read to (0 if none): a worker
        that restored it reads again the records after the commit, some of them in it."""
        monitor = self.monitors.peek(self.app.portfolio.models[model_id])
        return 0 if monitor is None else monitor.read_to.get((tp.topic, tp.partition), 0)

    async def _dead_letter(
        self, message: ConsumerRecord[bytes, bytes], errors: Sequence[DecodeError]
    ) -> None:
        letters = dead_letters(
            errors,
            raw=message.value,
            source_topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            seen_at=int(time.time() * 1000),
            key=message.key,
        )
        # Straight to the app's producer, which runs while the reader does: a Faust
        # ``Topic.send`` first awaits ``maybe_start_producer``, which turns the event loop
        # three times, so with 10% of a backlog malformed the reader gave up the loop
        # three times per bad record and the producer sent a request for every few
        # letters (bench_poison, a message per record: healthy records at 0.64 of the
        # clean rate per CPU-second, 1.00 since). Queued, like every send here, and in
        # Kafka before the offsets are committed (the flush).
        topic = self.dead_letter_topic.get_topic_name()
        key = message.topic.encode()
        for letter in letters:
            await self.app.producer.send(topic, key, encode(letter), None, None, None)

    async def _forward(self, writes: Mapping[str, Sequence[FeatureWrite]]) -> None:
        """Feature writes of models another worker holds go to each model's partition of the
        internal topic, one message per model and read."""
        # Straight to the app's producer, as the dead letters (``_dead_letter``): through a
        # Faust ``Topic.send`` a read of writes for 1,000 models took 0.18 to 0.26 CPU
        # seconds to forward them, 0.04 to 0.05 s so (bench_pipeline_throughput).
        producer = self.app.producer
        for model_id, batch in writes.items():
            value = msgspec.json.encode(batch)
            await producer.send(self.writes_topic_name, model_id.encode(), value, None, None, None)

    async def _routed(
        self,
        tp: TopicPartition,
        messages: Sequence[ConsumerRecord[bytes, bytes]],
        read_at: float,
        turns: _Turns,
    ) -> None:
        for message in messages:
            assert message.key is not None and message.value is not None
            model_id = message.key.decode()
            if message.offset >= self._read_to(model_id, tp):
                writes = _WRITE_BATCH.decode(message.value)
                self.batches.add(
                    model_id,
                    tp.partition,
                    tp,
                    range(message.offset, message.offset + 1),
                    writes,
                    read_at,
                )
                self.records[self.writes_topic_name] += len(writes)
                self.decoded[self.writes_topic_name] += 1
            await turns.turn()
        self.messages[self.writes_topic_name] += len(messages)

    async def _feed(self, due: Sequence[Due], turns: _Turns) -> None:
        models = self.app.portfolio.models
        for model_id, partition, records, since, read in due:
            size = len(records)
            self.batch_sizes.observe(size)
            self.partition_of[model_id] = partition
            read_to = {(tp.topic, tp.partition): offsets.stop for tp, offsets in read.items()}
            with _on_partition(self.changelog_topic, partition):
                await self.monitors.feed(models[model_id], records, read_to)
            self.effect_latency.observe(time.monotonic() - since, count=size)
            if model_id in self.monitors.unsaved:
                uncovered = self.uncovered.setdefault(model_id, _Uncovered(since, {}))
                for tp, offsets in read.items():
                    uncovered.first.setdefault(tp, offsets.start)
            else:
                self.uncovered.pop(model_id, None)
            await turns.turn()

    async def _flush_and_commit(self, save: bool = False) -> None:
        """Feed every waiting record, write every monitor fed since its last checkpoint if
        ``save`` (a handover or a stop) or for ``checkpoint_within``, flush what that sent,
        then commit what was read up to the first record of a monitor not written since.

        Between handovers a monitor is written when its effects ask (a transition, an
        alert, ``streams.monitor.CHECKPOINT_EVERY`` records) or after ``checkpoint_within``.
        """
        turns = _Turns()
        await self._feed(self.batches.drain(), turns)
        now = time.monotonic()
        for model_id in sorted(self.monitors.unsaved):
            uncovered = self.uncovered.get(model_id)
            if save or (uncovered is not None and now - uncovered.since >= self.checkpoint_within):
                with _on_partition(self.changelog_topic, self._partition(model_id)):
                    self.monitors.save(model_id)
                self.uncovered.pop(model_id, None)
                await turns.turn()
        self.last_commit = time.monotonic()
        consumer = self.consumer
        if consumer is None:
            return
        # A partition with nothing read yet: its position, for the lag, never committed: a
        # read waiting for the lock while this runs (a revocation, a stop) has moved it
        # past records that read will drop.
        for tp in consumer.assignment() - self.next_offsets.keys() - self.positions.keys():
            self.positions[tp] = await consumer.position(tp)
        if self.next_offsets:
            await self.app.producer.flush()
            await consumer.commit(committable(self.next_offsets, self.uncovered.values()))

    def _partition(self, model_id: str) -> int:
        """The partition of the model's monitor in the table: that of its records fed, or,
        for a model told of its ladder's level and not fed since this worker started
        (restored for the web view), its key's."""
        partition = self.partition_of.get(model_id)
        if partition is None:
            count = self.app.consumer.topic_partitions(self.changelog_topic)
            assert count, f"{self.changelog_topic}: no partition count while its table is held"
            partition = model_partition(model_id, count)
        return partition

    def lag(self) -> Mapping[str, TopicLag]:
        """Per topic read, how far this worker is behind (see ``TopicLag``)."""
        consumer = self.consumer
        highwaters: dict[TopicPartition, int | None] = {}
        if consumer is not None:
            highwaters = {tp: consumer.highwater(tp) for tp in consumer.assignment()}
        return topic_lags(
            self.topics,
            highwaters,
            self.positions | self.next_offsets,
            self.last_timestamps,
            time.time() * 1000,
            {topic: self.records[topic] / read for topic, read in self.decoded.items() if read},
        )


def _held(models: Iterable[str], partitions: frozenset[int], count: int) -> dict[str, int]:
    """Of ``models``, those whose records are on ``partitions`` of ``count``, with each
    one's partition."""
    placed = ((model_id, model_partition(model_id, count)) for model_id in models)
    return {model_id: partition for model_id, partition in placed if partition in partitions}


def _by_monitoring_model(
    writes: Iterable[FeatureWrite], monitoring: Callable[[str], Sequence[str]]
) -> dict[str, list[FeatureWrite]]:
    """Feature writes grouped by each model that monitors their feature (a write goes to
    every such model)."""
    by_model: dict[str, list[FeatureWrite]] = {}
    for write in writes:
        for model_id in monitoring(write.feature):
            by_model.setdefault(model_id, []).append(write)
    return by_model


def _unread(
    consumer: AIOKafkaConsumer,
    batches: Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]],
) -> None:
    """Put back the positions of a read that is dropped, for the partitions still assigned.

    aiokafka's ``getmany`` goes on waiting across an ``assign`` and returns what it then
    fetched for the new assignment, its positions already past those records: dropped
    without this, they were never read, and the next commit went past them. Chaos seed
    13 points here: 308 bad predictions never dead-lettered, though every letter counted
    was on its topic and every offset was committed.
    """
    assigned = consumer.assignment()
    for tp, messages in batches.items():
        if tp in assigned:
            consumer.seek(tp, messages[0].offset)


def committable(
    next_offsets: Mapping[TopicPartition, int], uncovered: Iterable[_Uncovered]
) -> dict[TopicPartition, int]:
    """Per partition read, the offset to commit: after the last record read, unless a
    monitor not written since holds a record from it, then that record's.

    >>> p0, p1 = TopicPartition("p", 0), TopicPartition("p", 1)
    >>> committable({p0: 90, p1: 40}, [_Uncovered(1.0, {p0: 70}), _Uncovered(2.0, {p0: 80})])
    {TopicPartition(topic='p', partition=0): 70, TopicPartition(topic='p', partition=1): 40}
    """
    offsets = dict(next_offsets)
    for model in uncovered:
        for tp, first in model.first.items():
            if tp in offsets:
                offsets[tp] = min(offsets[tp], first)
    return offsets


def topic_lags(
    topics: Sequence[str],
    highwaters: Mapping[TopicPartition, int | None],
    next_offsets: Mapping[TopicPartition, int],
    last_timestamps: Mapping[TopicPartition, int],
    now_ms: float,
    records_per_message: Mapping[str, float],
) -> dict[str, TopicLag]:
    """Each topic's lag over its partitions: the messages from the next offset to read up
    to the highwater (none for a partition whose highwater or position is not known yet),
    the records they hold at the topic's ``records_per_message`` so far (1 before any was
    read), and the age of the last record read in a partition that still has messages to
    read (the oldest such).

    >>> a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    >>> lags = topic_lags(
    ...     ["t", "u"], {a: 100, b: 7}, {a: 90, b: 7}, {a: 1_000, b: 5_000}, 3_500, {"t": 2.5}
    ... )
    >>> lags["t"]
    TopicLag(messages=10, records=25, seconds=2.5)
    >>> lags["u"]
    TopicLag(messages=0, records=0, seconds=0.0)
    """
    behind: Counter[str] = Counter()
    ages: dict[str, float] = {}
    for tp, highwater in highwaters.items():
        position = next_offsets.get(tp)
        if highwater is None or position is None:
            continue
        waiting = max(0, highwater - position)
        behind[tp.topic] += waiting
        stamp = last_timestamps.get(tp)
        if waiting and stamp is not None:
            ages[tp.topic] = max(ages.get(tp.topic, 0.0), max(0.0, (now_ms - stamp) / 1000))
    return {
        topic: TopicLag(
            behind[topic],
            round(behind[topic] * records_per_message.get(topic, 1.0)),
            ages.get(topic, 0.0),
        )
        for topic in topics
    }
