"""Pipeline throughput: one worker with every detector on, against a bare consumer.

On the local Kafka, in one run, for each portfolio size ``--models`` (synthetic
portfolios of ``streams.simulate.population``: three numeric features and one categorical
feature per model, every fourth model from the third paired with a shadow; drift windows
and references of ``--window`` values, see ``bench_portfolio``) and each message layout
``--batch-sizes`` (1: a message per record; above 1: batch messages of up to that many
records of one topic and owner, ``schemas.codec.encode_batch``, keyed by the owner as the
fleet's logger and the simulator send them):

1. ``--events`` healthy events are produced once to the three input topics of a prefix
   of their own, by a producer with the fleet's murmur2 partitioner
   (``streams.simulate.publish.producer_config``). Models take turns on requests; each
   request gives (see ``traffic``): a write of one of the model's features in rotation
   (keyed by entity_id, or by its writer in batches, written before the prediction), the
   live prediction and, for a model with a shadow, the shadow's with the same request_id
   (keyed by model_id), and, for every other round of the models, the live request's
   ground truth with its request_id and entity_id (keyed by model_id). Each model cycles
   through ``ENTITIES_PER_MODEL`` entities. Nothing alarms: the numbers are those of
   steady state. Requests are ``REQUEST_STEP_MS`` of event time apart whatever the
   portfolio's size, so each model of a larger portfolio gets fewer a minute and its
   per-minute work (reports, TTLs) weighs more per record; with ``--model-requests-per-s``
   each model gets that many a second of event time at every size instead.
2. Rounds alternate, for every portfolio and layout:

   - ``bare``: an aiokafka consumer (``getmany``) in a group of its own drains the three
     topics from the beginning and decodes each message with a msgspec decoder of its
     contract (the batch contract in batches, whose columns it does not turn into
     records), counting records;
   - ``count`` and ``take`` (with ``--faust``): a Faust app with one agent per input
     topic that only counts messages (``stream.events()``), or counts batches of
     ``stream.take(TAKE_MAX, within=TAKE_WITHIN_S)``: the ceiling of any Faust agent
     that handles events one by one;
   - ``ingest``: the worker below with monitors that take their batches and observe
     nothing: its reading, decoding, dead-lettering, books, forwarding of feature writes
     and micro-batches, without the detectors' work;
   - ``worker``: ``create_app(settings)`` of ``streams.worker.app``, started in this
     process with a fresh app id (so it also reads from the beginning), the portfolio,
     the real Alerta and InfluxDB sinks and ``--store`` tables: drift tests, output
     monitoring and the health policy, the label join, the shadow join and the leak
     watch, with feature writes fed straight to their models (it holds them all, so it
     forwards none through its internal topic). It is done
     when its ingest books over the three input topics reach the record count and the
     leak watch has been fed every write (each synthetic feature is monitored by one
     model).

3. One more worker run per portfolio and layout under cProfile (``--profile``), after the
   timed rounds so that the profiler's overhead is not in the rates; the top functions by
   own time and by cumulative time are printed.

A rate is the input records after the first one seen over the time from then to the last
move (polled every ``POLL_S``), so group joins and Faust's start-up are not counted; the
worker's last move is its last input ingested or its last record fed to a join or the
leak watch. Rates are per second of wall-clock time and per second of this process's CPU
time (the machine is shared: the CPU rate is what a side would do with a core of its
own). Reported: medians of each side, the ratio worker/bare per portfolio and layout,
worker(N largest)/worker(N smallest), which stays near 1 when per-event work does not
grow with the number of models, the worker's books per topic, the records it fed to its
joins and leak watch (their ``observe`` calls, counted), what these counted (their newest
points, tapped from its InfluxDB queue), and the sizes of the micro-batches it fed.

Every topic and consumer group the run creates carries its unique token and is deleted at
the end. Run::

    .venv/bin/python -m tests.benchmarks.bench_pipeline_throughput
    .venv/bin/python -m tests.benchmarks.bench_pipeline_throughput --events 30000 --rounds 1
    .venv/bin/python -m tests.benchmarks.bench_pipeline_throughput --models 20 1000 \
        --model-requests-per-s 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import io
import itertools
import math
import operator
import pstats
import site
import statistics
import sysconfig
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

import msgspec
import numpy as np
from aiokafka import AIOKafkaConsumer

from schemas.codec import BATCHES, encode, encode_batch
from schemas.contracts import (
    SCHEMA_VERSION,
    FeatureSeen,
    FeatureWrite,
    GroundTruth,
    Prediction,
    Role,
    Scalar,
    Score,
)
from streams.monitor import Batch, Effects, Monitor, leak_watch, shadow_join
from streams.portfolio import Model, Portfolio
from streams.settings import Settings
from streams.simulate.population import synthetic_portfolio
from streams.simulate.publish import producer_config
from streams.sinks.influx import Point
from streams.topics import (
    FEATURE_WRITES,
    GROUND_TRUTH,
    PREDICTIONS,
    admin_client,
    ensure_topics,
)
from streams.worker.app import FailsoftApp, create_app, writes_by_model_topic
from streams.worker.readers import IngestReader

POLL_S = 0.02
# A side that has not moved for this long has lost events.
STALL_S = 60.0
TIMEOUT_S = 900.0
INPUTS = (PREDICTIONS, FEATURE_WRITES, GROUND_TRUTH)
# Event time between two requests, so that the joins' and the leak watch's reports (every
# 60 s of event time by default) and their TTLs come round within a run.
REQUEST_STEP_MS = 10
# Serving nodes write feature values shortly before they are read.
WRITE_AGE_MS = 50
LABEL_DELAY_MS = 30_000
ENTITIES_PER_MODEL = 5
CATEGORIES = ("a", "b", "c", "d")
TAKE_MAX = 500
TAKE_WITHIN_S = 0.2
PROFILE_TOP = 25
REPO = Path(__file__).resolve().parents[2]
# The counts the worker's newest points carry, by (measurement, detector tag).
TAPPED: dict[tuple[str, str | None], tuple[str, ...]] = {
    ("performance", "label_join"): ("labels", "joined", "unmatched", "held", "expired"),
    ("shadow", None): ("n_pairs", "labelled_pairs", "labels_unmatched"),
    ("write_lag", None): ("writes",),
    ("leak", "label_leak"): ("labels", "unjudged"),
}


def bench_portfolio(models: int, window: int) -> Portfolio:
    """The synthetic portfolio of ``models`` models, drift windows of ``window`` values.

    Smaller windows than the default let every model of a large portfolio fill its
    reference and run its tests within the benchmark's events, so both sizes are measured
    in steady state rather than N=200 still collecting references.
    """
    drift = (("drift", (("window_size", window),)),)
    return Portfolio(
        {m.model_id: dataclasses.replace(m, detectors=drift) for m in synthetic_portfolio(models)}
    )


Record = Prediction | FeatureWrite | GroundTruth
CONTRACTS: tuple[type[Record], ...] = (Prediction, FeatureWrite, GroundTruth)  # as INPUTS


def traffic(
    portfolio: Portfolio, events: int, start_ms: int, step_ms: float = REQUEST_STEP_MS
) -> Iterator[tuple[str, str, Record]]:
    """``events`` healthy (topic suffix, key, record), the models taking turns on requests
    ``step_ms`` of event time apart.

    A request writes one of its model's features (in rotation), then the live and shadow
    predictions follow, and in every other round of the models the live one's label.
    """
    models = list(portfolio)
    width = max(len(model.features) for model in models)
    draws = np.random.default_rng(5)
    normals = draws.normal(0.0, 1.0, (events, width + 1)).tolist()
    uniforms = draws.uniform(0.0, 1.0, events).tolist()
    produced, request = 0, 0
    while True:
        model = models[request % len(models)]
        round_ = request // len(models)
        at = start_ms + int(request * step_ms)
        entity_id = f"u{request % (len(models) * ENTITIES_PER_MODEL)}"
        written_at = at - WRITE_AGE_MS
        features: dict[str, FeatureSeen] = {}
        for index, feature in enumerate(model.features):
            value: Scalar = normals[request][index]
            if feature.kind == "categorical":
                value = CATEGORIES[round_ % len(CATEGORIES)]
            features[feature.name] = FeatureSeen(value, written_at)
        written = model.features[round_ % len(model.features)].name
        write = FeatureWrite(
            SCHEMA_VERSION,
            entity_id,
            written,
            features[written].value,
            written_at - 5,
            written_at,
            "bench",
        )
        score = 1.0 / (1.0 + math.exp(-normals[request][width]))
        records: list[tuple[str, str, Record]] = [(FEATURE_WRITES.suffix, entity_id, write)]
        for role, version in _roles(model):
            prediction = Prediction(
                schema_version=SCHEMA_VERSION,
                request_id=f"r{request}",
                model_id=model.model_id,
                model_version=version,
                role=role,
                entity_id=entity_id,
                predicted_at=at,
                output=Score(score=score if role == "live" else 0.9 * score + 0.05),
                features=features,
                latency_ms=2.0,
            )
            records.append((PREDICTIONS.suffix, model.model_id, prediction))
        if round_ % 2 == 0:
            label = GroundTruth(
                schema_version=SCHEMA_VERSION,
                model_id=model.model_id,
                label=int(uniforms[request] < score),
                label_at=at + LABEL_DELAY_MS,
                request_id=f"r{request}",
                entity_id=entity_id,
            )
            records.append((GROUND_TRUTH.suffix, model.model_id, label))
        for record in records:
            if produced == events:
                return
            yield record
            produced += 1
        request += 1


def _roles(model: Model) -> list[tuple[Role, str]]:
    live: list[tuple[Role, str]] = [("live", "v1")]
    return live if model.shadow is None else [*live, ("shadow", model.shadow.version)]


def request_step_ms(models: int, model_requests_per_s: float | None) -> float:
    """Event time between two requests: ``REQUEST_STEP_MS`` whatever the portfolio's size,
    or what gives each model ``model_requests_per_s`` requests a second of event time.

    >>> request_step_ms(1000, None), request_step_ms(20, 5.0), request_step_ms(1000, 5.0)
    (10, 10.0, 0.2)
    """
    if model_requests_per_s is None:
        return REQUEST_STEP_MS
    return 1000.0 / (model_requests_per_s * models)


def produce(
    settings: Settings, portfolio: Portfolio, events: int, batch_size: int, step_ms: float
) -> Counter[str]:
    """Produces the traffic, a message per record or in batches of up to ``batch_size``
    records of one topic and owner; the count of records per topic suffix."""
    produced: Counter[str] = Counter()

    def counted(records: Iterator[tuple[str, str, Record]]) -> Iterator[tuple[str, str, Record]]:
        for suffix, key, record in records:
            produced[suffix] += 1
            yield suffix, key, record

    start_ms = int(time.time() * 1000 - events * step_ms)
    publish(
        settings,
        (
            (
                suffix,
                key,
                encode(group[0]) if batch_size == 1 else encode_batch(type(group[0]), key, group),
                None,
            )
            for suffix, key, group in messages_of(
                counted(traffic(portfolio, events, start_ms, step_ms)), batch_size, owner_of
            )
        ),
    )
    return produced


def owner_of(record: Record) -> str:
    """What a batch of ``record``'s contract shares: its model, or its writer."""
    return str(getattr(record, BATCHES[type(record)].owner))


Item = TypeVar("Item")


def messages_of(
    records: Iterable[tuple[str, str, Item]],
    batch_size: int,
    owner: Callable[[Item], str],
    alone: Callable[[Item], bool] = lambda item: False,
) -> Iterator[tuple[str, str, list[Item]]]:
    """(topic suffix, key, items) of each message: an item alone (with its key) when
    ``batch_size`` is 1 or ``alone(item)``, else up to ``batch_size`` items of one topic
    and ``owner``, keyed by it, sent when full and at the end."""
    pending: dict[tuple[str, str], list[Item]] = {}
    for suffix, key, item in records:
        if batch_size == 1 or alone(item):
            yield suffix, key, [item]
            continue
        batch = pending.setdefault((suffix, owner(item)), [])
        batch.append(item)
        if len(batch) == batch_size:
            yield suffix, owner(item), pending.pop((suffix, owner(item)))
    for (suffix, key), batch in pending.items():
        yield suffix, key, batch


Delivered = Callable[[Any, Any], None]


def publish(
    settings: Settings, messages: Iterable[tuple[str, str, bytes, Delivered | None]]
) -> None:
    """Produces (topic suffix, key, value, delivery callback) with the fleet's partitioner,
    and waits until every message is delivered."""
    from confluent_kafka import Producer

    producer = Producer(producer_config(settings))
    for suffix, key, value, delivered in messages:
        while True:
            try:
                producer.produce(
                    settings.topic_prefix + suffix,
                    key=key.encode(),
                    value=value,
                    on_delivery=delivered,
                )
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    undelivered = producer.flush(120)
    if undelivered:
        raise RuntimeError(f"{undelivered} records were not delivered to {settings.topic_prefix}*")


@dataclasses.dataclass(frozen=True)
class Rate:
    """Events per second of wall-clock time, and per second of this process's CPU time.

    The machine is shared: the CPU rate is what the side would do with a core of its own.
    """

    wall: float
    cpu: float


@dataclasses.dataclass(frozen=True)
class Instant:
    wall: float
    cpu: float

    @classmethod
    def now(cls) -> Instant:
        return cls(time.perf_counter(), time.process_time())


class Stopwatch:
    """Started at the first event seen; ``rate`` counts the events after that one."""

    def __init__(self, seen: int, start: Instant | None = None) -> None:
        self.seen = seen
        self.start = start if start is not None else Instant.now()

    def rate(self, events: int, end: Instant | None = None) -> Rate:
        end = end if end is not None else Instant.now()
        after = events - self.seen
        return Rate(after / (end.wall - self.start.wall), after / (end.cpu - self.start.cpu))


async def drained(
    consumed: Callable[[], int],
    events: int,
    busy: Callable[[], int] = lambda: 0,
    settled: Callable[[], bool] = lambda: True,
    first_read: Callable[[], Instant | None] = lambda: None,
) -> Rate:
    """The rate once ``consumed()`` reaches ``events`` and ``settled()`` holds, polling them;
    the clock stops when ``consumed()`` or ``busy()`` (the side's count of internal work)
    last moved. It starts at ``first_read()`` when the side tells it (its first read that
    returned records: a side that reads in big batches may not let a poll run before it
    has handled many), else at the first poll that sees an event."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_S
    stopwatch = None
    last, moved = (0, busy()), Instant.now()
    while True:
        seen, now = consumed(), Instant.now()
        if (seen, busy()) != last:
            last, moved = (seen, busy()), now
        if stopwatch is None and seen:
            start = first_read()
            stopwatch = Stopwatch(seen) if start is None else Stopwatch(0, start)
        if seen >= events and settled():
            break
        if loop.time() > deadline or now.wall - moved.wall > STALL_S:
            raise TimeoutError(f"{seen} of {events} events, {busy()} internal, stalled")
        await asyncio.sleep(POLL_S)
    assert stopwatch is not None and stopwatch.seen < events, "the first poll saw every event"
    return stopwatch.rate(events, moved)


def input_topics(settings: Settings) -> list[str]:
    return [spec.name(settings) for spec in INPUTS]


def record_counter(contract: type[Record], batched: bool) -> Callable[[bytes], int]:
    """Decodes a message with msgspec; the records it holds."""
    if not batched:
        single = msgspec.json.Decoder(contract)

        def one(raw: bytes) -> int:
            single.decode(raw)
            return 1

        return one
    spec = BATCHES[contract]
    columns = msgspec.json.Decoder(spec.batch)
    first = spec.columns[0]

    def many(raw: bytes) -> int:
        return len(getattr(columns.decode(raw), first))

    return many


async def bare_rate(settings: Settings, group: str, events: int, batched: bool) -> Rate:
    """Drains and decodes the topics with msgspec alone: each message as its record's
    contract, or as its batch contract (columns, not records) when ``batched``."""
    decoders = {
        spec.name(settings): record_counter(contract, batched)
        for spec, contract in zip(INPUTS, CONTRACTS, strict=True)
    }
    consumer = AIOKafkaConsumer(
        *input_topics(settings),
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        # Timed in the loop itself: a drain can be shorter than a few polls of a counter.
        seen, stopwatch = 0, None
        while seen < events:
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            for tp, messages in batches.items():
                decode = decoders[tp.topic]
                for message in messages:
                    seen += decode(message.value)
                if stopwatch is None and seen:
                    stopwatch = Stopwatch(seen)
        assert stopwatch is not None
        return stopwatch.rate(events)
    finally:
        await consumer.stop()


async def counting_rate(settings: Settings, app_id: str, events: int, take: bool) -> Rate:
    """A Faust app whose agents only count their input topic's events, one by one or in
    ``take`` batches."""
    import faust

    app = faust.App(
        app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=tempfile.mkdtemp(prefix="failsoft-bench-"),
        web_enabled=False,
        topic_partitions=PREDICTIONS.partitions,
        key_serializer="raw",
        value_serializer="raw",
    )
    counted = [0]

    async def count_events(stream: faust.StreamT[bytes]) -> None:
        async for _ in stream.events():
            counted[0] += 1

    async def count_batches(stream: faust.StreamT[bytes]) -> None:
        async for batch in stream.take(TAKE_MAX, within=TAKE_WITHIN_S):
            counted[0] += len(batch)

    for topic in input_topics(settings):
        app.agent(app.topic(topic), name=f"count-{topic}")(count_batches if take else count_events)
    await app.start()
    try:
        return await drained(lambda: counted[0], events)
    finally:
        await app.stop()


_ROLE = operator.attrgetter("role")


class Taps:
    """What the worker feeds its joins and leak watch, and the newest counts of their
    points (``TAPPED``), seen by wrapping their ways in (a monitor feeds them a batch at
    a time: the label join the batch's predictions and labels, some of which its label
    wait holds back, the shadow join and the leak watch a list at once) and the InfluxDB
    sink's queue. A join's points are made when its stream time passes a report time: the
    newest are those of the last report, before the labels read after the last prediction
    (when the topics are read one after the other) were joined."""

    def __init__(self) -> None:
        self.fed: Counter[str] = Counter()
        self.newest: dict[tuple[str, str | None, tuple[tuple[str, str], ...]], Point] = {}

    def install(self, app: FailsoftApp) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        # Each way in, and the position of its record (or list of them) among its
        # arguments: the ids' hashes of the batch may follow it.
        ways_in: tuple[tuple[str, Any, str, int], ...] = (
            ("label_join", Monitor, "_join_results", 1),
            ("shadow_join", shadow_join, "observe_many", 2),
            ("leak_watch", leak_watch, "observe_batch", 2),
        )
        for kind, owner, name, at in ways_in:
            observe = getattr(owner, name)
            many = name.endswith("_many")
            fed = self._feed(kind, observe, at, many)
            stack.enter_context(mock.patch.object(owner, name, fed))
        stack.enter_context(mock.patch.object(app.influx, "enqueue", self._tap(app.influx.enqueue)))
        return stack

    def _feed(
        self, kind: str, observe: Callable[..., Any], at: int, many: bool
    ) -> Callable[..., Any]:
        """``observe``, counting the records it is fed (its argument ``at``, a list of them
        if ``many``)."""

        def fed(*args: Any) -> Any:
            fed = args[at]
            records = fed.records if isinstance(fed, Batch) else fed if many else (fed,)
            # Counted in C-level passes: the taps run inside the worker whose CPU is
            # measured, and a Python step per record cost it about 4% of its CPU.
            types = list(map(type, records))
            kinds = Counter(types)
            if kind == "leak_watch":
                # The leak watch takes a whole batch and reads its live predictions.
                predictions = map(operator.is_, types, itertools.repeat(Prediction))
                roles = list(map(_ROLE, itertools.compress(records, predictions)))
                kinds[Prediction] = roles.count("live")
            else:
                kinds.pop(FeatureWrite, None)
            for record_type, count in kinds.items():
                if count:
                    self.fed[f"{kind} {record_type.__name__}"] += count
            return observe(*args)

        return fed

    def _tap(self, enqueue: Callable[[Point], object]) -> Callable[[Point], object]:
        def tapped(point_: Point) -> object:
            series = (point_.measurement, point_.tags.get("detector"))
            if series in TAPPED:
                self.newest[(*series, tuple(sorted(point_.tags.items())))] = point_
            return enqueue(point_)

        return tapped

    def summary(self) -> str:
        totals: Counter[str] = Counter()
        for (measurement, detector, _), point_ in self.newest.items():
            for field in TAPPED[(measurement, detector)]:
                value = point_.fields.get(field)
                if isinstance(value, int | float):
                    totals[f"{detector or measurement}.{field}"] += int(value)
        fed = ", ".join(f"{name} {count:,}" for name, count in sorted(self.fed.items()))
        points = ", ".join(f"{name} {count:,}" for name, count in sorted(totals.items()))
        return f"fed: {fed}\n    newest points: {points}"


@dataclasses.dataclass
class WorkerRun:
    rate: Rate
    books: str
    joins: str


def observing_nothing(observed: list[int]) -> mock._patch[Any]:
    """Every monitor takes its batches and does nothing with them; ``observed`` counts
    their records."""

    def observe(monitor: Monitor, batch: Batch) -> Effects:
        observed[0] += len(batch)
        return Effects()

    return mock.patch.object(Monitor, "observe", observe)


def first_read(reader: IngestReader, at: list[Instant]) -> mock._patch[Any]:
    """``at`` gets the time the reader's first read returned records."""
    getmany = AIOKafkaConsumer.getmany

    async def timed(consumer: AIOKafkaConsumer, *args: Any, **kwargs: Any) -> Any:
        batches = await getmany(consumer, *args, **kwargs)
        if batches and not at and consumer is reader.consumer:
            at.append(Instant.now())
        return batches

    return mock.patch.object(AIOKafkaConsumer, "getmany", timed)


async def worker_run(
    settings: Settings,
    portfolio: Portfolio,
    produced: Counter[str],
    profiler: cProfile.Profile | None,
    detectors: bool = True,
    writes: int | None = None,
    inspect: Callable[[FailsoftApp], Awaitable[None]] | None = None,
) -> WorkerRun:
    """One worker drains the topics: with every detector on, or (``detectors`` false)
    with monitors that observe nothing, the ingest alone. ``writes`` is how many feature
    writes reach the leak watch (the valid ones; all produced by default); ``inspect``
    is awaited with the app once it is done, before it stops."""
    app: FailsoftApp = create_app(settings, portfolio)
    topics = input_topics(settings)
    routed = writes_by_model_topic(settings)
    keyed = [spec.name(settings) for spec in (PREDICTIONS, GROUND_TRUTH)]
    events = sum(produced.values())
    if writes is None:
        writes = produced[FEATURE_WRITES.suffix]
    taps = Taps()
    observed = [0]
    started: list[Instant] = []
    with (
        taps.install(app) if detectors else observing_nothing(observed),
        first_read(app.reader, started),
    ):
        await app.start()
        try:
            if profiler is not None:
                profiler.enable()
            try:
                # Done once every input is ingested, every write has reached the leak
                # watch of the one model that monitors its feature, and every prediction
                # and label processed has been fed to its model's monitor with them: a
                # prediction's micro-batch may go after the last write's (or every record
                # a monitor that observes nothing).
                rate = await drained(
                    lambda: sum(app.counters.consumed[topic] for topic in topics),
                    events,
                    lambda: sum(taps.fed.values()) + observed[0],
                    lambda: (
                        taps.fed["leak_watch FeatureWrite"] >= writes
                        and app.reader.batch_sizes.sum
                        >= writes + sum(app.counters.processed[topic] for topic in keyed)
                        if detectors
                        else observed[0] >= events
                    ),
                    lambda: started[0] if started else None,
                )
            finally:
                if profiler is not None:
                    profiler.disable()
            counters = app.counters
            books = "; ".join(
                f"{topic.rsplit('.', 1)[-1]}: consumed {counters.consumed[topic]}, "
                f"processed {counters.processed[topic]}, "
                f"dead {counters.dead_lettered_total(topic)}"
                for topic in topics
            )
            reader = app.reader
            books += f"; routed write messages {reader.messages[routed]}"
            sizes = reader.batch_sizes
            books += (
                f"\n    micro-batches fed {sizes.total:,}, mean "
                f"{sizes.sum / max(sizes.total, 1):,.1f} records; by size bound "
                f"{dict(sizes.cumulative())} (cumulative)"
            )
            if inspect is not None:
                await inspect(app)
            return WorkerRun(rate, books, taps.summary())
        finally:
            await app.stop()
            # The next worker has a fresh app id but the same prefix: it must not read this
            # one's forwarded writes.
            delete_topics(settings, [routed])


SIDES = ("bare", "count", "take", "ingest", "worker")


@dataclasses.dataclass
class Case:
    """One portfolio's topics in one layout, and the rates of each side measured on them."""

    models: int
    batch_size: int
    settings: Settings
    portfolio: Portfolio
    step_ms: float
    produced: Counter[str] = dataclasses.field(default_factory=Counter)
    rates: dict[str, list[Rate]] = dataclasses.field(
        default_factory=lambda: {side: [] for side in SIDES}
    )
    checks: list[str] = dataclasses.field(default_factory=list)
    profile: str = ""

    @property
    def events(self) -> int:
        return sum(self.produced.values())

    @property
    def name(self) -> str:
        return f"n{self.models}-b{self.batch_size}"

    def sides(self) -> list[str]:
        return [side for side in SIDES if self.rates[side]]

    def median(self, side: str, clock: str) -> float:
        return statistics.median(getattr(rate, clock) for rate in self.rates[side])


def worker_settings(settings: Settings, name: str, web_port: int) -> Settings:
    """A worker of its own on ``settings``' topics: a fresh app id ``name`` (so it reads
    from the beginning) and data folder."""
    return dataclasses.replace(
        settings,
        worker_app_id=name,
        worker_data_dir=Path(tempfile.mkdtemp(prefix="failsoft-bench-")),
        worker_web_port=web_port,
    )


async def run(
    base: Settings,
    token: str,
    model_counts: Sequence[int],
    batch_sizes: Sequence[int],
    events: int,
    window: int,
    rounds: int,
    faust: bool,
    profile: bool,
    web_port: int,
    model_requests_per_s: float | None,
) -> list[Case]:
    cases = []
    for models in model_counts:
        portfolio = bench_portfolio(models, window)
        step_ms = request_step_ms(models, model_requests_per_s)
        for batch_size in batch_sizes:
            case = Case(models, batch_size, base, portfolio, step_ms)
            case.settings = dataclasses.replace(base, topic_prefix=f"{token}-{case.name}.")
            ensure_topics(case.settings)
            case.produced = produce(case.settings, portfolio, events, batch_size, step_ms)
            cases.append(case)
    for round_ in range(rounds):
        for case in cases:
            name = f"{token}-{case.name}"
            batched = case.batch_size > 1
            case.rates["bare"].append(
                await bare_rate(case.settings, f"{name}-bare-{round_}", events, batched)
            )
            for side in ("count", "take") if faust else ():
                app_id = f"{name}-{side}-{round_}"
                rate = await counting_rate(case.settings, app_id, events, side == "take")
                case.rates[side].append(rate)
            settings = worker_settings(case.settings, f"{name}-i{round_}", web_port)
            ingest = await worker_run(settings, case.portfolio, case.produced, None, False)
            case.rates["ingest"].append(ingest.rate)
            settings = worker_settings(case.settings, f"{name}-r{round_}", web_port)
            worker = await worker_run(settings, case.portfolio, case.produced, None)
            case.rates["worker"].append(worker.rate)
            case.checks.append(f"round {round_}: {worker.books}\n    {worker.joins}")
    if profile:
        for case in cases:
            profiler = cProfile.Profile()
            settings = worker_settings(case.settings, f"{token}-{case.name}-profile", web_port)
            await worker_run(settings, case.portfolio, case.produced, profiler)
            case.profile = profile_report(profiler)
    return cases


def profile_report(profiler: cProfile.Profile) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats(pstats.SortKey.TIME).print_stats(PROFILE_TOP)
    stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(PROFILE_TOP)
    text = out.getvalue()
    roots = (site.getsitepackages()[0], sysconfig.get_paths()["stdlib"], str(REPO))
    for root in roots:
        text = text.replace(root + "/", "")
    return text


def report(cases: Sequence[Case]) -> str:
    rounds = len(cases[0].rates["bare"])
    sides = cases[0].sides()
    lines = [f"{rounds} round(s), alternating {', '.join(sides)}; medians"]
    for case in cases:
        mix = ", ".join(f"{suffix} {count:,}" for suffix, count in sorted(case.produced.items()))
        layout = "a message per record" if case.batch_size == 1 else f"batches of {case.batch_size}"
        per_model = 1000.0 / (case.step_ms * case.models)
        lines.append(
            f"N={case.models} models, {layout}, {case.events:,} events ({mix}), requests "
            f"{case.step_ms:g} ms of event time apart ({per_model:g} a second per model):"
        )
        for clock in ("wall", "cpu"):
            medians = {side: case.median(side, clock) for side in sides}
            lines.append(
                f"  events per {clock} second: "
                + ", ".join(f"{side} {medians[side]:,.0f}" for side in sides)
            )
            lines.append(
                "    "
                + ", ".join(
                    f"{side}/bare {medians[side] / medians['bare']:.4f}"
                    for side in sides
                    if side != "bare"
                )
            )
        for round_ in range(rounds):
            lines.append(
                f"    round {round_}: "
                + ", ".join(f"{side} {case.rates[side][round_].wall:,.0f}" for side in sides)
            )
        lines += [f"  {check}" for check in case.checks]
    for batch_size in sorted({case.batch_size for case in cases}):
        same = [case for case in cases if case.batch_size == batch_size]
        if len(same) > 1:
            small, large = same[0], same[-1]
            for clock in ("wall", "cpu"):
                growth = large.median("worker", clock) / small.median("worker", clock)
                lines.append(
                    f"worker N={large.models} / N={small.models}, batches of {batch_size}, "
                    f"{clock}: {growth:.3f}"
                )
    for case in cases:
        if case.profile:
            lines += [f"--- cProfile of one worker run, {case.name} ---", case.profile]
    return "\n".join(lines)


def delete_topics(settings: Settings, names: Sequence[str]) -> None:
    """Delete the topics, and wait until the broker no longer lists them."""
    if not names:
        return
    admin = admin_client(settings)
    for future in admin.delete_topics(list(names)).values():
        future.result(timeout=30)
    deadline = time.monotonic() + 30
    while set(names) & set(admin.list_topics(timeout=30).topics):
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics still listed after deletion: {names}")
        time.sleep(0.2)


def delete_leftovers(settings: Settings, token: str) -> None:
    """Delete every topic and consumer group whose name starts with the run's token."""
    from confluent_kafka import KafkaException

    admin = admin_client(settings)
    delete_topics(
        settings, [name for name in admin.list_topics(timeout=30).topics if name.startswith(token)]
    )
    listed = admin.list_consumer_groups().result(timeout=30)
    groups = [g.group_id for g in listed.valid if g.group_id.startswith(token)]
    if groups:
        for group, future in admin.delete_consumer_groups(groups).items():
            try:
                future.result(timeout=30)
            except KafkaException as error:
                # A member of a killed run holds it until its session times out.
                print(f"consumer group {group} left in place: {error}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="over the input topics")
    parser.add_argument("--models", type=int, nargs="+", default=[20, 200])
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[1, 500],
        help="records per message: 1 for a message per record",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=50, help="drift window and reference")
    parser.add_argument(
        "--model-requests-per-s",
        type=float,
        default=None,
        help="requests a second of event time per model (default: 100 a second over the "
        "whole portfolio, so each model of a larger one gets fewer)",
    )
    parser.add_argument(
        "--store", default="rocksdb://", help="worker tables: rocksdb:// or memory://"
    )
    parser.add_argument("--web-port", type=int, default=16166, help="the worker's web port")
    parser.add_argument(
        "--faust", action="store_true", help="also the Faust agents that only count"
    )
    parser.add_argument(
        "--no-profile", dest="profile", action="store_false", help="skip the cProfile runs"
    )
    args = parser.parse_args(argv)
    base = dataclasses.replace(Settings.from_env(), worker_store=args.store)
    token = f"bench-pipe-{uuid.uuid4().hex[:8]}"
    try:
        cases = asyncio.run(
            run(
                base,
                token,
                args.models,
                args.batch_sizes,
                args.events,
                args.window,
                args.rounds,
                args.faust,
                args.profile,
                args.web_port,
                args.model_requests_per_s,
            )
        )
        print(report(cases))
    finally:
        delete_leftovers(base, token)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
