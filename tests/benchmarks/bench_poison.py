"""Poison at volume: the worker with 10% malformed records mixed into full-rate traffic.

On the local Kafka, for each message layout ``--batch-sizes`` (1: a message per record;
above 1: batch messages of up to that many records of one topic and owner), the same
``--valid`` healthy records of ``bench_pipeline_throughput.traffic`` (synthetic portfolio
of ``--models`` models) are produced twice, to topics of their own:

- ``clean``: the healthy records alone;
- ``poisoned``: after every ``POISON_EVERY``-th healthy record, a malformed copy of it on
  the same topic, so malformed records are 10% of all records, spread through the
  traffic. Each topic takes its turn through its kinds of fault (``FAULTS``): bytes that
  do not decode (JSON cut in half; JSON behind a schema registry's five-byte header),
  a required field left out (null inside a batch, where a column cannot leave out one
  record), a value of the wrong type, a number out of a float's range (``1e999``, how
  JSON spells a non-finite number that a decoder would otherwise read as infinity), and,
  on the topics keyed by model, a record of a model the portfolio does not declare. In
  batch messages the faulty records sit inside batches of their topic and owner with
  the healthy ones (those of the undeclared model in batches of their own), and the
  undecodable bytes are messages of their own.

Then rounds alternate, the order of clean and poisoned swapped every round: a worker
(``bench_pipeline_throughput.worker_run``, every detector on, a fresh app id) drains a
pre-filled backlog of each from the beginning, as fast as it can. Its rate is records
consumed (healthy and malformed) per second of wall-clock and of this process's CPU time,
from its first read to its last move (see ``bench_pipeline_throughput.drained``);
records processed per second is that rate times the share of healthy records (0.9 when
poisoned), the records the monitors are fed in the same span.

After every run the books are checked from outside, and any failure makes the
benchmark exit 1:

- the worker's counters: per input topic, records consumed equal those produced,
  processed equal the healthy ones and dead-lettered, by reason, equal the malformed
  ones (so consumed = processed + dead-lettered, exactly); its ``/metrics`` say the same;
- the dead-letter topic, read by a consumer of this benchmark's own from where it ended
  before the run: exactly one letter per malformed record, at the partition and offset
  the producer was told its message went to, with its index in the batch, naming the
  field the fault was put in (``$`` for undecodable bytes, ``model_id`` for an
  undeclared model), with that reason; and nothing for a clean run.

Reported: medians of each side, the ratio poisoned/clean of records processed per
second (the issue's "throughput falls by at most 20%": the healthy traffic the worker
gets through while it also dead-letters the poison) and of records consumed per second
(everything it reads), per wall-clock and CPU second, and the load average seen. Run::

    .venv/bin/python -m tests.benchmarks.bench_poison
    .venv/bin/python -m tests.benchmarks.bench_poison --valid 9000 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import aiohttp
import msgspec
from prometheus_client.parser import text_string_to_metric_families

from schemas.codec import WHOLE_MESSAGE, decode_batch, decode_dead_letter, encode, encode_batch
from schemas.contracts import DecodeError
from streams.kafka_security import librdkafka_security
from streams.portfolio import UNKNOWN_MODEL_REASON, Portfolio
from streams.settings import Settings
from streams.topics import DEAD_LETTERS, FEATURE_WRITES, GROUND_TRUTH, PREDICTIONS, ensure_topics
from streams.worker.app import FailsoftApp
from streams.worker.ingest import INPUTS, reason_label
from tests.benchmarks.bench_pipeline_throughput import (
    REQUEST_STEP_MS,
    Delivered,
    Rate,
    Record,
    bench_portfolio,
    delete_leftovers,
    messages_of,
    owner_of,
    publish,
    traffic,
    worker_run,
    worker_settings,
)

# A malformed record after every ninth healthy one: 10% of all records.
POISON_EVERY = 9
UNDECLARED_MODEL = "undeclared-model"
# A schema registry's wire format: magic byte 0 and a four-byte schema id.
REGISTRY_HEADER = b"\x00\x00\x00\x00\x2a"
SIDES = ("clean", "poisoned")


@dataclasses.dataclass(frozen=True)
class Fault:
    """What is wrong with a malformed record: its ``kind``, the ``field`` its dead letter
    must name (``$``: the message's bytes), and the JSON put there (None: left out)."""

    kind: str
    field: str
    bad: bytes | None = None

    @property
    def reason(self) -> str:
        """The reason label the worker's books count it under."""
        if self.field == WHOLE_MESSAGE:
            return "malformed"
        if self.kind == "unknown model":
            return UNKNOWN_MODEL_REASON
        return f"invalid {self.field}"


CUT = Fault("cut JSON", WHOLE_MESSAGE)
FRAMED = Fault("registry header", WHOLE_MESSAGE)
UNDECLARED = Fault("unknown model", "model_id")
FAULTS: dict[str, tuple[Fault, ...]] = {
    PREDICTIONS.suffix: (
        CUT,
        Fault("missing", "predicted_at"),
        Fault("wrong type", "latency_ms", b'"fast"'),
        FRAMED,
        Fault("non-finite", "output.score", b"1e999"),
        UNDECLARED,
    ),
    FEATURE_WRITES.suffix: (
        CUT,
        Fault("missing", "written_at"),
        Fault("wrong type", "event_at", b'"yesterday"'),
        FRAMED,
        Fault("non-finite", "value", b"-1e999"),
    ),
    GROUND_TRUTH.suffix: (
        CUT,
        Fault("missing", "label_at"),
        Fault("wrong type", "request_id", b"17"),
        FRAMED,
        Fault("non-finite", "label", b"1e999"),
        UNDECLARED,
    ),
}


@dataclasses.dataclass(frozen=True)
class Poisoned:
    """A healthy record, to be sent with ``fault`` put into it."""

    record: Record
    fault: Fault


Item = Record | Poisoned


def poisoned(records: Iterable[tuple[str, str, Record]]) -> Iterator[tuple[str, str, Item]]:
    """The records, with a malformed copy after every ``POISON_EVERY``-th, each topic
    taking its faults in turn."""
    turns: Counter[str] = Counter()
    for n, (suffix, key, record) in enumerate(records, 1):
        yield suffix, key, record
        if n % POISON_EVERY:
            continue
        faults = FAULTS[suffix]
        fault = faults[turns[suffix] % len(faults)]
        turns[suffix] += 1
        if fault is UNDECLARED:
            record = msgspec.structs.replace(record, model_id=UNDECLARED_MODEL)  # type: ignore[type-var]
            key = UNDECLARED_MODEL
        yield suffix, key, Poisoned(record, fault)


def _healthy(item: Item) -> Record:
    return item.record if isinstance(item, Poisoned) else item


def _placeholder(bad: bytes) -> str:
    """A string standing for the JSON ``bad`` until the document is encoded: no encoder
    writes a number out of a float's range."""
    return f"\x00poison {bad.decode()}"


def _spoil(document: dict[str, Any], fault: Fault, index: int | None) -> bytes:
    """Puts ``fault`` into a record's document, or into record ``index`` of a batch's
    (where a field cannot be left out: null); the JSON to put for its placeholder."""
    head, *path = fault.field.split(".")
    container: Any = document
    key: Any = head
    if index is not None:
        container, key = document[head], index
    for part in path:
        container, key = container[key], part
    bad = b"null" if fault.bad is None else fault.bad
    if fault.bad is None and index is None:
        del container[key]
    else:
        container[key] = _placeholder(bad)
    return bad


def message(
    items: Sequence[Item], key: str, batched: bool
) -> tuple[bytes, list[tuple[int | None, Fault]]]:
    """A message's value, and the (index in the batch, fault) of each malformed record in
    it: the dead letters it must give."""
    faults = [(n, item.fault) for n, item in enumerate(items) if isinstance(item, Poisoned)]
    records = [_healthy(item) for item in items]
    if not batched:
        (record,) = records
        if not faults:
            return encode(record), []
        ((_, fault),) = faults
        if fault is CUT:
            raw = encode(record)
            return raw[: len(raw) // 2], [(None, fault)]
        if fault is FRAMED:
            return REGISTRY_HEADER + encode(record), [(None, fault)]
        if fault is UNDECLARED:
            return encode(record), [(None, fault)]
        document = msgspec.to_builtins(record)
        bad = _spoil(document, fault, None)
        return encode_json(document, [bad]), [(None, fault)]
    document = msgspec.json.decode(encode_batch(type(records[0]), key, records))
    bads = [_spoil(document, fault, n) for n, fault in faults if fault is not UNDECLARED]
    # The books of a batch of one name no index, as those of a single-record message.
    many = len(items) > 1
    return encode_json(document, bads), [
        (n if many or fault is not UNDECLARED else None, fault) for n, fault in faults
    ]


def encode_json(document: Any, bads: Iterable[bytes]) -> bytes:
    raw = msgspec.json.encode(document)
    for bad in set(bads):
        raw = raw.replace(msgspec.json.encode(_placeholder(bad)), bad)
    return raw


@dataclasses.dataclass(frozen=True)
class Letter:
    """A dead letter as this benchmark compares them: the source message's topic,
    partition and offset, the record's index in it, the field and the reason label."""

    source_topic: str
    partition: int
    offset: int
    index: int | None
    field: str
    reason: str


@dataclasses.dataclass
class Fill:
    """One prefix's input topics, filled: the records of each topic suffix, the healthy
    ones, and the dead letters the malformed ones must give."""

    settings: Settings
    records: Counter[str] = dataclasses.field(default_factory=Counter)
    healthy: Counter[str] = dataclasses.field(default_factory=Counter)
    letters: Counter[Letter] = dataclasses.field(default_factory=Counter)
    rates: list[Rate] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def share(self) -> float:
        """The healthy records' share of all records."""
        return sum(self.healthy.values()) / sum(self.records.values())

    def dead(self, suffix: str) -> dict[str, int]:
        """The dead letters the topic must book, by reason."""
        topic = self.settings.topic_prefix + suffix
        counts: Counter[str] = Counter()
        for letter, n in self.letters.items():
            if letter.source_topic == topic:
                counts[letter.reason] += n
        return dict(counts)


def fill(
    settings: Settings, portfolio: Portfolio, valid: int, batch_size: int, poison: bool
) -> Fill:
    """Produces ``valid`` healthy records of the traffic, and with ``poison`` a malformed
    one after every ``POISON_EVERY``-th, a message per record or in batches."""
    ensure_topics(settings)
    done = Fill(settings)
    errors: list[str] = []
    start_ms = time.time_ns() // 1_000_000 - valid * REQUEST_STEP_MS
    records = traffic(portfolio, valid, start_ms)
    items: Iterable[tuple[str, str, Item]] = poisoned(records) if poison else records

    def counted() -> Iterator[tuple[str, str, Item]]:
        for suffix, key, item in items:
            done.records[suffix] += 1
            done.healthy[suffix] += not isinstance(item, Poisoned)
            yield suffix, key, item

    def delivered(faults: list[tuple[int | None, Fault]]) -> Delivered:
        def booked(error: Any, sent: Any) -> None:
            if error is not None:
                errors.append(str(error))
                return
            for index, fault in faults:
                where = (sent.topic(), sent.partition(), sent.offset(), index)
                done.letters[Letter(*where, fault.field, fault.reason)] += 1

        return booked

    def outgoing() -> Iterator[tuple[str, str, bytes, Delivered | None]]:
        alone = lambda item: isinstance(item, Poisoned) and item.fault.field == WHOLE_MESSAGE  # noqa: E731
        for suffix, key, group in messages_of(
            counted(), batch_size, lambda i: owner_of(_healthy(i)), alone
        ):
            value, faults = message(group, key, batch_size > 1 and not alone(group[0]))
            yield suffix, key, value, delivered(faults) if faults else None

    publish(settings, outgoing())
    if errors:
        raise RuntimeError(f"{len(errors)} messages failed: {errors[:3]}")
    return done


async def books(app: FailsoftApp, done: Fill) -> list[str]:
    """Where the worker's books, and its /metrics, differ from what ``done`` holds."""
    counters = app.counters
    url = f"http://127.0.0.1:{app.settings.worker_web_port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        metrics = await response.text()
    scraped: Counter[tuple[str, ...]] = Counter()
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name.startswith("failsoft_messages_"):
                scraped[(sample.name, *sorted(sample.labels.values()))] = int(sample.value)
    problems = []
    for suffix in INPUTS:
        topic = done.settings.topic_prefix + suffix
        dead = {r: n for (t, r), n in counters.dead_lettered.items() if t == topic}
        want = (done.records[suffix], done.healthy[suffix], done.dead(suffix))
        got = (counters.consumed[topic], counters.processed[topic], dead)
        if got != want:
            problems.append(f"{suffix}: consumed, processed, dead {got}, expected {want}")
        if got[0] != got[1] + sum(dead.values()):
            problems.append(f"{suffix}: consumed {got[0]} != processed + dead-lettered")
        shown = (
            scraped["failsoft_messages_consumed_total", topic],
            scraped["failsoft_messages_processed_total", topic],
            {
                r: scraped[("failsoft_messages_dead_lettered_total", *sorted((topic, r)))]
                for r in dead
            },
        )
        if shown != got:
            problems.append(f"{suffix}: /metrics say {shown}, counters {got}")
    return problems


def _consumer(settings: Settings) -> Any:
    from confluent_kafka import Consumer

    return Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            **librdkafka_security(settings),
            "group.id": f"{settings.worker_app_id}-letters",
            "enable.auto.commit": False,
        }
    )


def letter_ends(settings: Settings) -> dict[int, int]:
    """The dead-letter topic's end offset in each partition."""
    from confluent_kafka import TopicPartition

    topic = DEAD_LETTERS.name(settings)
    consumer = _consumer(settings)
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        return {
            number: consumer.get_watermark_offsets(TopicPartition(topic, number), timeout=30)[1]
            for number in partitions
        }
    finally:
        consumer.close()


def letters_since(settings: Settings, since: dict[int, int], done: Fill) -> list[str]:
    """Where the dead letters written after ``since`` differ from those ``done`` must give.

    Read once the worker has stopped (its producer flushed), up to the end offsets then.
    A letter of a record inside a batch must carry that record alone: its bytes give the
    same field when decoded by themselves.
    """
    from confluent_kafka import TopicPartition

    topic = DEAD_LETTERS.name(settings)
    ends = letter_ends(settings)
    consumer = _consumer(settings)
    letters: Counter[Letter] = Counter()
    problems = []
    contracts = {done.settings.topic_prefix + suffix: i.contract for suffix, i in INPUTS.items()}
    try:
        waiting = {n for n, end in ends.items() if end > since.get(n, 0)}
        consumer.assign([TopicPartition(topic, n, since.get(n, 0)) for n in waiting])
        deadline = time.monotonic() + 120
        while waiting and time.monotonic() < deadline:
            sent = consumer.poll(1.0)
            if sent is None:
                continue
            if sent.error() is not None:
                problems.append(f"dead-letter topic: {sent.error()}")
                continue
            if sent.offset() + 1 >= ends[sent.partition()]:
                waiting.discard(sent.partition())
            letter = decode_dead_letter(sent.value())
            if isinstance(letter, DecodeError):
                problems.append(f"a dead letter that is not one: {letter}")
                continue
            error = letter.error
            letters[
                Letter(
                    letter.source_topic,
                    letter.partition,
                    letter.offset,
                    error.index,
                    error.field,
                    reason_label(error),
                )
            ] += 1
            if error.index is not None and error.reason != UNKNOWN_MODEL_REASON:
                alone = decode_batch(contracts[letter.source_topic], letter.raw)
                if [getattr(o, "field", None) for o in alone] != [error.field]:
                    problems.append(f"letter {letter.offset}/{error.index}: its bytes give {alone}")
    finally:
        consumer.close()
    if waiting:
        problems.append(f"dead-letter partitions {sorted(waiting)} not read to their end")
    if letters != done.letters:
        missing, extra = done.letters - letters, letters - done.letters
        problems.append(
            f"dead letters: {sum(letters.values())}, expected {sum(done.letters.values())}; "
            f"missing {sum(missing.values())} e.g. {list(missing)[:3]}, "
            f"unexpected {sum(extra.values())} e.g. {list(extra)[:3]}"
        )
    return problems


async def drain(done: Fill, portfolio: Portfolio, name: str, web_port: int) -> list[str]:
    """One worker, every detector on, drains ``done``'s topics; its rate is kept; the
    books' and dead letters' problems."""
    settings = worker_settings(done.settings, name, web_port)
    since = letter_ends(settings)
    problems: list[str] = []

    async def inspect(app: FailsoftApp) -> None:
        problems.extend(await books(app, done))

    run = await worker_run(
        settings,
        portfolio,
        done.records,
        None,
        writes=done.healthy[FEATURE_WRITES.suffix],
        inspect=inspect,
    )
    done.rates.append(run.rate)
    return problems + letters_since(settings, since, done)


@dataclasses.dataclass
class Layout:
    """One message layout's clean and poisoned topics."""

    batch_size: int
    fills: dict[str, Fill]

    @property
    def name(self) -> str:
        return "a message per record" if self.batch_size == 1 else f"batches of {self.batch_size}"


async def run(
    base: Settings,
    token: str,
    portfolio: Portfolio,
    valid: int,
    batch_sizes: Sequence[int],
    rounds: int,
    web_port: int,
    loads: list[float],
) -> list[Layout]:
    layouts = []
    for batch_size in batch_sizes:
        fills = {}
        for side in SIDES:
            settings = dataclasses.replace(base, topic_prefix=f"{token}-b{batch_size}-{side}.")
            fills[side] = fill(settings, portfolio, valid, batch_size, side == "poisoned")
        layouts.append(Layout(batch_size, fills))
    for round_ in range(rounds):
        for layout in layouts:
            # Swapped every round, so a drift of the machine's load favours neither side.
            for side in SIDES if round_ % 2 == 0 else SIDES[::-1]:
                loads.append(os.getloadavg()[0])
                done = layout.fills[side]
                name = f"{token}-b{layout.batch_size}-{side}-{round_}"
                problems = await drain(done, portfolio, name, web_port)
                done.problems += [f"round {round_}: {problem}" for problem in problems]
                rate = done.rates[-1]
                print(
                    f"round {round_}, {layout.name}, {side}: {rate.wall:,.0f} records/s,"
                    f" {rate.cpu:,.0f} per CPU-s, books {problems or 'exact'}",
                    flush=True,
                )
    return layouts


def report(layouts: Sequence[Layout], loads: Sequence[float]) -> str:
    rounds = len(layouts[0].fills["clean"].rates)
    lines = [f"{rounds} round(s), clean and poisoned alternating; medians; records per second"]
    lines += [
        "| layout | clock | clean, processed = consumed | poisoned, processed "
        "| poisoned, consumed | processed poisoned / clean | consumed poisoned / clean |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for layout in layouts:
        for clock in ("wall", "cpu"):
            consumed = {
                side: statistics.median(getattr(r, clock) for r in done.rates)
                for side, done in layout.fills.items()
            }
            processed = {side: consumed[side] * layout.fills[side].share for side in SIDES}
            lines.append(
                f"| {layout.name} | {clock} | {processed['clean']:,.0f} "
                f"| {processed['poisoned']:,.0f} | {consumed['poisoned']:,.0f} "
                f"| {processed['poisoned'] / processed['clean']:.3f} "
                f"| {consumed['poisoned'] / consumed['clean']:.3f} |"
            )
    for layout in layouts:
        for side, done in layout.fills.items():
            malformed = sum(done.letters.values())
            records = sum(done.records.values())
            by_reason: Counter[str] = Counter()
            for letter, n in done.letters.items():
                by_reason[letter.reason] += n
            walls = ", ".join(f"{r.wall:,.0f}" for r in done.rates)
            lines.append(
                f"{layout.name}, {side}: {records:,} records, {malformed:,} malformed "
                f"({malformed / records:.1%}); consumed per wall-s by round {walls}"
            )
            if by_reason:
                lines.append(
                    "    dead letters: "
                    + ", ".join(f"{r} {n}" for r, n in sorted(by_reason.items()))
                )
            lines.append(
                "    books and dead letters: "
                + ("exact in every run" if not done.problems else "; ".join(done.problems))
            )
    lines.append(
        f"load average (1 min) at the runs' starts: {min(loads):.2f} to {max(loads):.2f}, "
        f"median {statistics.median(loads):.2f}, on {os.cpu_count()} cores"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--valid", type=int, default=27_000, help="healthy records per fill")
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[1, 500], help="1: a message per record"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=50, help="drift window and reference")
    parser.add_argument("--store", default="rocksdb://", help="worker tables")
    parser.add_argument("--web-port", type=int, help="the worker's (default: the settings')")
    args = parser.parse_args(argv)
    base = dataclasses.replace(Settings.from_env(), worker_store=args.store)
    web_port = args.web_port or base.worker_web_port
    token = f"bench-poison-{uuid.uuid4().hex[:8]}"
    portfolio = bench_portfolio(args.models, args.window)
    loads: list[float] = []
    try:
        layouts = asyncio.run(
            run(base, token, portfolio, args.valid, args.batch_sizes, args.rounds, web_port, loads)
        )
        print(report(layouts, loads))
    finally:
        delete_leftovers(base, token)
    failed = any(done.problems for layout in layouts for done in layout.fills.values())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
