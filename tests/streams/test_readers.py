"""The ingest reader's pure parts: micro-batches by size and deadline, placing a table
write on a partition without a Faust event, and the lag it reports; and its read loop's
turns on the event loop."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from faust.streams import current_event

from streams.portfolio import parse_portfolio
from streams.settings import Settings
from streams.worker import readers
from streams.worker.ingest import INPUTS, PipelineCounters
from streams.worker.metrics import Histogram
from streams.worker.readers import (
    BATCH_SIZE_BUCKETS,
    EARLY_FEED_S,
    EFFECT_LATENCY_BUCKETS,
    FEED_SLICE_S,
    MICRO_BATCH,
    MICRO_BATCH_LINGER_S,
    Due,
    IngestReader,
    MicroBatches,
    TopicLag,
    _held,
    _on_partition,
    _Turns,
    _Uncovered,
    topic_lags,
)


def records(*names: str) -> list[Any]:
    """Stand-ins for records: micro-batches only hold them."""
    return list(names)


def test_a_batch_falls_due_when_full_or_when_its_first_record_waited_the_linger() -> None:
    batches = MicroBatches(size=4, linger=0.1)
    p0, p3 = TopicPartition("p", 0), TopicPartition("p", 3)
    batches.add("a", 0, p0, range(0, 1), records("a1"), now=10.0)
    batches.add("b", 3, p3, range(5, 7), records("b1", "b2"), now=10.02)
    batches.add("a", 0, p0, range(1, 2), records("a2"), now=10.05)
    assert batches.due(now=10.099) == []
    assert batches.next_deadline() == pytest.approx(10.1)
    # a waited the linger since its first record, b not yet.
    assert batches.due(now=10.1) == [("a", 0, records("a1", "a2"), 10.0, {p0: range(0, 2)})]
    assert batches.next_deadline() == pytest.approx(10.12)
    # a's next batch starts its own wait; b fills up before its deadline.
    batches.add("a", 0, p0, range(2, 3), records("a3"), now=10.11)
    batches.add("b", 3, p3, range(9, 12), records("b3", "b4", "b5"), now=10.11)
    assert batches.due(now=10.11) == [
        ("b", 3, records("b1", "b2", "b3", "b4", "b5"), 10.02, {p3: range(5, 12)})
    ]
    assert batches.next_deadline() == pytest.approx(10.21)
    assert batches.drain() == [("a", 0, records("a3"), 10.11, {p0: range(2, 3)})]
    assert len(batches) == 0 and batches.next_deadline() is None


def test_an_idle_caller_takes_the_batches_whose_first_record_waited_early() -> None:
    batches = MicroBatches(size=4, linger=0.1, early=0.02)
    p0, p3 = TopicPartition("p", 0), TopicPartition("p", 3)
    batches.add("a", 0, p0, range(0, 1), records("a1"), now=10.0)
    batches.add("b", 3, p3, range(5, 6), records("b1"), now=10.01)
    # The reader waits on Kafka until the oldest may go early, not until its linger.
    assert batches.next_deadline() == pytest.approx(10.02)
    # A read that found records: the linger holds.
    assert batches.due(now=10.025) == []
    # One that found nothing: a waited 25 ms, b 15 ms.
    assert batches.due(now=10.025, idle=True) == [("a", 0, records("a1"), 10.0, {p0: range(0, 1)})]
    assert batches.next_deadline() == pytest.approx(10.03)
    assert batches.due(now=10.03, idle=True) == [("b", 3, records("b1"), 10.01, {p3: range(5, 6)})]


def test_without_early_an_idle_caller_waits_out_the_linger() -> None:
    batches = MicroBatches(size=4, linger=0.1)
    batches.add("a", 0, TopicPartition("p", 0), range(0, 1), records("a1"), now=10.0)
    assert batches.next_deadline() == pytest.approx(10.1)
    assert batches.due(now=10.099, idle=True) == []
    assert [d.model_id for d in batches.due(now=10.1, idle=True)] == ["a"]


def test_the_default_linger_keeps_batching_within_a_tenth_of_a_second() -> None:
    assert 0 < EARLY_FEED_S < MICRO_BATCH_LINGER_S <= 0.1


async def test_a_read_that_finds_nothing_feeds_what_waited_early_feed_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue #12: the reader waited out every batch's linger (50 ms) even with nothing to
    read, so the p99 from a record's read to its effects was 242 ms at 80% of the
    maximum rate. Once a read finds nothing, a batch that waited ``EARLY_FEED_S`` goes,
    and the reader waits on Kafka only until the oldest one may go."""
    clock = 100.0
    monkeypatch.setattr(readers, "time", SimpleNamespace(monotonic=lambda: clock, time=time.time))
    reader = IngestReader.__new__(IngestReader)
    reader.app = SimpleNamespace(portfolio=SimpleNamespace(models=defaultdict(object)))  # type: ignore[assignment]
    reader.batch_sizes = Histogram(BATCH_SIZE_BUCKETS)
    reader.effect_latency = Histogram(EFFECT_LATENCY_BUCKETS)
    reader.partition_of, reader.uncovered = {}, {}
    reader.changelog_topic = "changelog"
    reader.generation, reader.lock, reader.last_commit = 0, asyncio.Lock(), clock
    fed: list[tuple[object, list[Any]]] = []

    async def feed(model: object, records: list[Any], read_to: object) -> None:
        fed.append((model, records))

    reader.monitors = SimpleNamespace(feed=feed, unsaved=set())  # type: ignore[assignment]
    reader.batches = MicroBatches(MICRO_BATCH, MICRO_BATCH_LINGER_S, EARLY_FEED_S)
    p0 = TopicPartition("p", 0)
    # Between the two waits: "old" waited more than EARLY_FEED_S, "new" less.
    old_since = clock - (EARLY_FEED_S + MICRO_BATCH_LINGER_S) / 2
    reader.batches.add("old", 0, p0, range(0, 1), records("o1", "o2"), now=old_since)
    reader.batches.add("new", 0, p0, range(1, 2), records("n1"), now=clock - EARLY_FEED_S / 2)
    waits: list[int] = []

    async def getmany(timeout_ms: int, max_records: int) -> dict[Any, Any]:
        waits.append(timeout_ms)
        return {}

    consumer = SimpleNamespace(getmany=getmany)
    reader.app.portfolio.models["old"] = "model old"  # type: ignore[attr-defined]
    await reader._read_batch(consumer)  # type: ignore[arg-type]
    assert fed == [("model old", records("o1", "o2"))]
    assert reader.effect_latency.total == 2
    assert reader.effect_latency.sum == pytest.approx(2 * (clock - old_since))
    await reader._read_batch(consumer)  # type: ignore[arg-type]
    # "new" may go in EARLY_FEED_S / 2 = 5 ms: the read waits that long, no more.
    assert waits == [0, int(EARLY_FEED_S / 2 * 1000)]
    assert len(fed) == 1 and len(reader.batches) == 1


def test_a_partition_is_current_only_inside_the_block() -> None:
    assert current_event() is None
    with _on_partition("changelog", 4):
        event = current_event()
        assert event is not None
        assert (event.message.topic, event.message.partition) == ("changelog", 4)
    assert current_event() is None


def test_lag_counts_messages_to_the_highwater_their_records_and_the_age_of_the_last_read() -> None:
    p0, p1, p2 = (TopicPartition("p", n) for n in range(3))
    lags = topic_lags(
        ["p", "g", "w"],
        {p0: 120, p1: 50, p2: None, TopicPartition("g", 0): 9, TopicPartition("w", 0): 4},
        {p0: 100, p1: 50, p2: 3, TopicPartition("g", 0): 9, TopicPartition("w", 0): 1},
        {p0: 58_000, p1: 1_000},
        now_ms=60_000,
        # Batch messages of 37.5 records on average so far; nothing read of "w" yet.
        records_per_message={"p": 37.5, "g": 1.0},
    )
    # p1 is caught up (its old record is no lag); p2's highwater is not known yet.
    assert lags == {
        "p": TopicLag(20, 750, 2.0),
        "g": TopicLag(0, 0, 0.0),
        "w": TopicLag(3, 3, 0.0),
    }


async def test_the_reader_lets_the_loop_turn_between_batches_read_from_the_fetch_buffer() -> None:
    """Chaos seed 6: through a backlog, every read is served from the consumer's fetch
    buffer without suspending, so without a yield of its own the reader held the loop
    and the sinks' deliveries, the timers and /metrics waited for its next wait on Kafka."""
    batches = 20
    reader = IngestReader.__new__(IngestReader)
    reader.ready = asyncio.Event()
    reader.ready.set()
    read = 0

    async def read_batch(consumer: object) -> None:  # as from the buffer: never suspends
        nonlocal read
        read += 1
        if read == batches:
            raise asyncio.CancelledError

    reader._read_batch = read_batch  # type: ignore[method-assign]
    turns = 0

    async def other_task() -> None:  # a sink's drain, a timer, a /metrics request
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    other = asyncio.create_task(other_task())
    await asyncio.sleep(0)  # it has started and waits for its next turn
    with pytest.raises(asyncio.CancelledError):
        await reader._read(consumer=None)  # type: ignore[arg-type]
    other.cancel()
    assert turns >= batches - 1


async def test_a_long_run_of_micro_batches_lets_the_loop_turn_while_it_is_fed() -> None:
    """The soak (1,000 models): a commit fed every model's waiting batch in one run that
    never suspended, seconds at a quarter of a core, and Faust's consumer thread logged
    "Thread keepalive is not responding". Each feed here holds the loop for longer than
    a slice (``FEED_SLICE_S``), so the loop must turn between any two of them."""
    models = 12
    reader = IngestReader.__new__(IngestReader)
    reader.app = SimpleNamespace(portfolio=SimpleNamespace(models=defaultdict(object)))  # type: ignore[assignment]
    reader.batch_sizes = Histogram(BATCH_SIZE_BUCKETS)
    reader.effect_latency = Histogram(EFFECT_LATENCY_BUCKETS)
    reader.partition_of = {}
    reader.changelog_topic = "changelog"
    turns = 0
    seen: list[int] = []

    async def feed(model: object, records: list[Any], read_to: object) -> None:  # never suspends
        seen.append(turns)
        time.sleep(FEED_SLICE_S)

    reader.monitors = SimpleNamespace(feed=feed, unsaved=set())  # type: ignore[assignment]
    reader.uncovered = {}

    async def other_task() -> None:  # Faust's keepalive, a timer, a sink, /metrics
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    other = asyncio.create_task(other_task())
    await asyncio.sleep(0)
    read_at = time.monotonic()
    due = [Due(f"m{n}", n % 3, records("r", "s"), read_at, {}) for n in range(models)]
    await reader._feed(due, _Turns())
    other.cancel()
    assert seen == list(range(models))
    assert (reader.batch_sizes.total, reader.batch_sizes.sum) == (models, 2 * models)
    # Each record is timed from the read to its batch's effects: the n-th batch's two
    # records waited for n + 1 feeds of at least a slice each.
    assert reader.effect_latency.total == 2 * models
    assert reader.effect_latency.sum >= 2 * FEED_SLICE_S * sum(range(1, models + 1))


@pytest.mark.parametrize(("within", "written"), [("5s", ["old"]), ("2", ["new", "old"])])
async def test_a_monitor_fed_and_not_written_for_checkpoint_within_is_written_at_a_commit(
    within: str, written: list[str]
) -> None:
    """``FAILSOFT_WORKER_CHECKPOINT_WITHIN`` bounds what a crash rereads: a monitor whose
    oldest record not in the table waited that long is written at the next commit (and
    the commit then covers its records); one fed more recently waits."""
    reader = IngestReader.__new__(IngestReader)
    reader.app = SimpleNamespace(portfolio=SimpleNamespace(models={}))  # type: ignore[assignment]
    settings = Settings.from_env({"FAILSOFT_WORKER_CHECKPOINT_WITHIN": within})
    reader.checkpoint_within = settings.worker_checkpoint_within
    reader.batches = MicroBatches(size=4, linger=0.1)
    reader.partition_of = {"old": 0, "new": 1}
    reader.changelog_topic = "changelog"
    reader.consumer = None
    saved: list[str] = []
    reader.monitors = SimpleNamespace(unsaved={"old", "new"}, save=saved.append)  # type: ignore[assignment]
    now = time.monotonic()
    reader.uncovered = {"old": _Uncovered(now - 10.0, {}), "new": _Uncovered(now - 3.0, {})}
    await reader._flush_and_commit()
    assert sorted(saved) == written
    assert sorted(reader.uncovered) == sorted({"old", "new"} - set(written))


async def test_a_handover_writes_a_model_told_of_its_level_not_fed_on_its_keys_partition() -> None:
    """A dependent restored for the web view and told that its ladder's level fell back
    (``Monitors._tell_ladders``) is due at the handover, though this reader never fed it:
    it has no partition of its records, and its checkpoint goes to its key's (a
    ``KeyError`` was raised there)."""
    reader = IngestReader.__new__(IngestReader)
    consumer = SimpleNamespace(topic_partitions={"changelog": 6}.get)
    reader.app = SimpleNamespace(portfolio=SimpleNamespace(models={}), consumer=consumer)  # type: ignore[assignment]
    reader.checkpoint_within = Settings.from_env({}).worker_checkpoint_within
    reader.batches = MicroBatches(size=4, linger=0.1)
    reader.partition_of = {"fed": 1}
    reader.changelog_topic = "changelog"
    reader.consumer = None
    reader.uncovered = {"fed": _Uncovered(time.monotonic(), {})}
    saved: list[tuple[str, int]] = []

    def save(model_id: str) -> None:
        event = current_event()
        assert event is not None
        saved.append((model_id, event.message.partition))

    reader.monitors = SimpleNamespace(unsaved={"fed", "told"}, save=save)  # type: ignore[assignment]
    await reader._flush_and_commit(save=True)
    # murmur2 of "told" modulo 6, as aiokafka's producer places its records.
    told = DefaultPartitioner()(b"told", list(range(6)), [])
    assert sorted(saved) == [("fed", 1), ("told", told)]
    assert told != 1  # the partition of the model fed is not the one taken


async def test_the_lag_in_records_counts_the_records_of_the_messages_it_decoded() -> None:
    """The lag in records is the messages behind times the records per message read so
    far: dead-lettered records count (they were consumed), and a routed write message
    that a monitor's checkpoint covers, skipped undecoded, is not a message of none."""
    portfolio = parse_portfolio(
        '[models.ranker]\nowner = "a"\ntier = "cpu"\nfallback = "x"\nlabel_delay = 60'
    )
    reader = IngestReader.__new__(IngestReader)
    reader.app = SimpleNamespace(portfolio=portfolio, counters=PipelineCounters())  # type: ignore[assignment]
    reader.messages, reader.records, reader.decoded = Counter(), Counter(), Counter()
    reader.batches = MicroBatches(MICRO_BATCH, MICRO_BATCH_LINGER_S, EARLY_FEED_S)
    reader.writes_topic_name = "w"
    # The model's restored monitor has read the routed writes to offset 11.
    monitor = SimpleNamespace(read_to={("w", 0): 11})
    reader.monitors = SimpleNamespace(peek=lambda model: monitor)  # type: ignore[assignment]
    dead: list[object] = []

    async def dead_letter(message: object, errors: list[object]) -> None:
        dead.extend(errors)

    reader._dead_letter = dead_letter  # type: ignore[method-assign,assignment]
    truth, writes = TopicPartition("g", 0), TopicPartition("w", 0)

    def message(offset: int, value: bytes, key: bytes = b"ranker") -> Any:
        return SimpleNamespace(offset=offset, value=value, key=key)

    label = b'"schema_version":1,"model_id":"ranker","entity_id":%s,"label":%s,"label_at":%s'
    write = {
        "schema_version": 1,
        "entity_id": "u",
        "feature": "f",
        "value": 1.0,
        "event_at": 1,
        "written_at": 2,
        "source": "s",
    }
    await reader._admit(
        INPUTS["ground-truth"],
        truth,
        [
            message(0, b"{" + label % (b'["u","v","w"]', b"[1,0,1]", b"[5,6,7]") + b"}"),
            message(1, b"{" + label % (b'"u"', b"1", b"8") + b"}"),
            # One record of two malformed: dead-lettered alone, and still a record read.
            message(2, b"{" + label % (b'["u","v"]', b"[1,0]", b'[9,"x"]') + b"}"),
        ],
        read_at=0.0,
        turns=_Turns(),
    )
    await reader._routed(
        writes,
        [
            message(10, json.dumps([write] * 5).encode()),
            message(11, json.dumps([write] * 2).encode()),
        ],
        read_at=0.0,
        turns=_Turns(),
    )
    assert len(dead) == 1
    assert reader.app.counters.consumed["g"] == 6
    assert (reader.messages, reader.records, reader.decoded) == (
        Counter({"g": 3, "w": 2}),
        Counter({"g": 6, "w": 2}),
        Counter({"g": 3, "w": 1}),
    )
    reader.consumer = SimpleNamespace(
        assignment=lambda: {truth, writes}, highwater={truth: 13, writes: 17}.get
    )
    reader.topics = ["g", "w"]
    reader.positions, reader.last_timestamps = {}, {}
    reader.next_offsets = {truth: 3, writes: 12}
    lags = reader.lag()
    assert (lags["g"].messages, lags["g"].records) == (10, 20)
    assert (lags["w"].messages, lags["w"].records) == (5, 10)


def test_the_models_held_are_those_on_the_partitions_assigned_with_their_partition() -> None:
    """Feature writes go straight to these models' micro-batches, on these partitions."""
    models = [f"m{n}" for n in range(40)]
    held = _held(models, frozenset({1, 4}), 6)
    partitioner = DefaultPartitioner()
    everywhere = {model: partitioner(model.encode(), list(range(6)), []) for model in models}
    assert held == {model: p for model, p in everywhere.items() if p in {1, 4}}
    assert 0 < len(held) < len(models)
    assert _held(models, frozenset(), 6) == {}


def test_a_new_assignment_forgets_the_models_held() -> None:
    """They are worked out again for the new partitions, at the next feature writes read."""
    reader = IngestReader.__new__(IngestReader)
    reader.generation, reader.consumer = 0, None
    reader.next_offsets, reader.positions, reader.last_timestamps = {}, {}, {}
    reader.held = {"ranker": 1}
    reader._assign()
    assert reader.held is None
    assert reader._held_models() is None  # no consumer to tell the partition count
