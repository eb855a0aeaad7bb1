"""Pipeline throughput: one worker with every wired detector, against a bare consumer.

On the local Kafka, in one run, for each portfolio size ``--models`` (synthetic
portfolios of ``streams.simulate.population``: three or four numeric features and one
categorical feature per model, every fourth model from the third paired with a shadow;
drift windows and references of ``--window`` values, see ``bench_portfolio``):

1. ``--events`` healthy predictions are produced once to a topic of their own (a unique
   prefix per portfolio), keyed by model_id, encoded with ``schemas.codec.encode``. Models
   take turns; a model with a shadow gets its shadow's prediction right after each live
   one, with the same request_id. Every served value was written before the prediction,
   so nothing alarms and the numbers are those of steady state.
2. Rounds alternate, for every portfolio: ``bare``, an aiokafka consumer in a group of its
   own that drains the topic from the beginning and only touches each message's value;
   then ``worker``, ``create_app(settings)`` of ``streams.app`` started in this process with
   a fresh app id (so it also reads from the beginning), the portfolio, the real Alerta
   and InfluxDB sinks, and ``--store`` tables, until its ingest counter
   (``app.counters.consumed``) reaches the event count.
3. One more worker run per portfolio under cProfile (``--profile``), after the timed
   rounds so that the profiler's overhead is not in the rates; the top functions by own
   time and by cumulative time are printed.

A rate is the events after the first one seen over the time from then to the last one
(polled every ``POLL_S``), so group joins and Faust's start-up are not counted. The
worker's count is its predictions ingest counter: what it forwards to its own internal
topics (e.g. leak events) may still be in flight when the count is reached, so its rate is
an upper bound of what it sustains. Reported:
the median events/s of each side, the ratio worker/bare per portfolio, and worker(N
largest)/worker(N smallest), which stays near 1 when per-event work does not grow with the
number of models. Every topic and consumer group the run creates carries its unique
token and is deleted at the end. Run::

    .venv/bin/python -m tests.benchmarks.bench_pipeline_throughput
    .venv/bin/python -m tests.benchmarks.bench_pipeline_throughput --events 50000 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import io
import pstats
import site
import statistics
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from schemas.codec import encode
from schemas.contracts import SCHEMA_VERSION, FeatureSeen, Prediction, Role, Scalar, Score
from streams.app import FailsoftApp, create_app
from streams.portfolio import Model, Portfolio
from streams.settings import Settings
from streams.simulate.population import synthetic_portfolio
from streams.simulate.publish import producer_config
from streams.topics import PREDICTIONS, admin_client, ensure_topics

POLL_S = 0.02
TIMEOUT_S = 900.0
# Serving nodes write feature values shortly before they are read.
WRITE_AGE_MS = 50
CATEGORIES = ("a", "b", "c", "d")
PROFILE_TOP = 25
REPO = Path(__file__).resolve().parents[2]


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


def predictions(portfolio: Portfolio, events: int, start_ms: int) -> Iterator[Prediction]:
    """``events`` healthy predictions, the models taking turns, shadows right after live."""
    models = list(portfolio)
    width = max(len(model.features) for model in models)
    normals = np.random.default_rng(5).normal(0.0, 1.0, (events, width)).tolist()
    produced, request = 0, 0
    while produced < events:
        model = models[request % len(models)]
        at = start_ms + request
        features: dict[str, FeatureSeen] = {}
        for index, feature in enumerate(model.features):
            value: Scalar = normals[request][index]
            if feature.kind == "categorical":
                value = CATEGORIES[request // len(models) % len(CATEGORIES)]
            features[feature.name] = FeatureSeen(value, at - WRITE_AGE_MS)
        for role, version in _roles(model):
            if produced == events:
                break
            yield Prediction(
                schema_version=SCHEMA_VERSION,
                request_id=f"r{request}",
                model_id=model.model_id,
                model_version=version,
                role=role,
                entity_id=f"u{request % 10_000}",
                predicted_at=at,
                output=Score(score=0.5 if role == "live" else 0.45),
                features=features,
                latency_ms=2.0,
            )
            produced += 1
        request += 1


def _roles(model: Model) -> list[tuple[Role, str]]:
    live: list[tuple[Role, str]] = [("live", "v1")]
    return live if model.shadow is None else [*live, ("shadow", model.shadow.version)]


def produce(settings: Settings, portfolio: Portfolio, events: int) -> None:
    from confluent_kafka import Producer

    producer = Producer(producer_config(settings.kafka_bootstrap))
    topic = PREDICTIONS.name(settings)
    start_ms = int(time.time() * 1000) - events
    for n, prediction in enumerate(predictions(portfolio, events, start_ms)):
        value = encode(prediction)
        while True:
            try:
                producer.produce(topic, key=prediction.model_id.encode(), value=value)
                break
            except BufferError:
                producer.poll(0.05)
        if n % 10_000 == 0:
            producer.poll(0)
    undelivered = producer.flush(120)
    if undelivered:
        raise RuntimeError(f"{undelivered} predictions were not delivered to {topic}")


@dataclasses.dataclass(frozen=True)
class Rate:
    """Events per second of wall-clock time, and per second of this process's CPU time.

    The machine is shared: the CPU rate is what the side would do with a core of its own.
    """

    wall: float
    cpu: float


class Stopwatch:
    """Started at the first event seen; ``rate`` counts the events after that one."""

    def __init__(self, seen: int) -> None:
        self.seen = seen
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def rate(self, events: int) -> Rate:
        after = events - self.seen
        wall, cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        return Rate(after / wall, after / cpu)


async def drained(consumed: Callable[[], int], events: int) -> Rate:
    """The rate once ``consumed()`` reaches ``events``, polling it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_S
    stopwatch = None
    while (seen := consumed()) < events:
        if loop.time() > deadline:
            raise TimeoutError(f"{seen} of {events} events after {TIMEOUT_S} s")
        if stopwatch is None and seen:
            stopwatch = Stopwatch(seen)
        await asyncio.sleep(POLL_S)
    assert stopwatch is not None, "the first poll found every event consumed"
    return stopwatch.rate(events)


async def bare_rate(settings: Settings, group: str, events: int) -> Rate:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        PREDICTIONS.name(settings),
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
            for messages in batches.values():
                for message in messages:
                    if message.value is not None:
                        seen += 1
                if stopwatch is None and seen:
                    stopwatch = Stopwatch(seen)
        assert stopwatch is not None
        return stopwatch.rate(events)
    finally:
        await consumer.stop()


@dataclasses.dataclass
class WorkerRun:
    rate: Rate
    processed: int
    dead_lettered: int


async def worker_run(
    settings: Settings, portfolio: Portfolio, events: int, profiler: cProfile.Profile | None
) -> WorkerRun:
    app: FailsoftApp = create_app(settings, portfolio)
    topic = PREDICTIONS.name(settings)
    await app.start()
    try:
        if profiler is not None:
            profiler.enable()
        try:
            rate = await drained(lambda: app.counters.consumed[topic], events)
        finally:
            if profiler is not None:
                profiler.disable()
        counters = app.counters
        return WorkerRun(rate, counters.processed[topic], counters.dead_lettered_total(topic))
    finally:
        await app.stop()


@dataclasses.dataclass
class Side:
    """One portfolio's topic, and the rates measured against it."""

    models: int
    settings: Settings
    portfolio: Portfolio
    bare: list[Rate] = dataclasses.field(default_factory=list)
    worker: list[Rate] = dataclasses.field(default_factory=list)
    checks: list[str] = dataclasses.field(default_factory=list)
    profile: str = ""


def side_settings(base: Settings, token: str, models: int) -> Settings:
    return dataclasses.replace(base, topic_prefix=f"{token}-n{models}.")


def worker_settings(side: Side, token: str, run: str, web_port: int) -> Settings:
    return dataclasses.replace(
        side.settings,
        worker_app_id=f"{token}-n{side.models}-{run}",
        worker_data_dir=Path(tempfile.mkdtemp(prefix="failsoft-bench-")),
        worker_web_port=web_port,
    )


async def run(
    base: Settings,
    token: str,
    model_counts: Sequence[int],
    events: int,
    window: int,
    rounds: int,
    profile: bool,
    web_port: int,
) -> list[Side]:
    sides = []
    for models in model_counts:
        settings = side_settings(base, token, models)
        side = Side(models, settings, bench_portfolio(models, window))
        ensure_topics(settings)
        produce(settings, side.portfolio, events)
        sides.append(side)
    for round_ in range(rounds):
        for side in sides:
            side.bare.append(
                await bare_rate(side.settings, f"{token}-n{side.models}-bare-{round_}", events)
            )
            worker = await worker_run(
                worker_settings(side, token, f"r{round_}", web_port), side.portfolio, events, None
            )
            side.worker.append(worker.rate)
            side.checks.append(f"processed {worker.processed}, dead {worker.dead_lettered}")
    if profile:
        for side in sides:
            profiler = cProfile.Profile()
            settings = worker_settings(side, token, "profile", web_port)
            await worker_run(settings, side.portfolio, events, profiler)
            side.profile = profile_report(profiler)
    return sides


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


def report(sides: Sequence[Side], events: int) -> str:
    lines = [f"{events:,} predictions per topic, {len(sides[0].bare)} round(s), alternating"]
    for side in sides:
        lines.append(f"N={side.models} models ({'; '.join(side.checks)}):")
        for clock in ("wall", "cpu"):
            bare = [getattr(rate, clock) for rate in side.bare]
            worker = [getattr(rate, clock) for rate in side.worker]
            pairs = ", ".join(f"{w:,.0f}/{b:,.0f}" for w, b in zip(worker, bare, strict=True))
            lines += [
                f"  events per {clock} second: bare median {statistics.median(bare):,.0f}, "
                f"worker median {statistics.median(worker):,.0f}, "
                f"ratio worker/bare {statistics.median(worker) / statistics.median(bare):.3f}",
                f"    rounds worker/bare: {pairs}",
            ]
    if len(sides) > 1:
        small, large = sides[0], sides[-1]
        for clock in ("wall", "cpu"):
            growth = statistics.median(getattr(r, clock) for r in large.worker) / statistics.median(
                getattr(r, clock) for r in small.worker
            )
            lines.append(f"worker N={large.models} / N={small.models}, {clock}: {growth:.3f}")
    for side in sides:
        if side.profile:
            lines += [f"--- cProfile of one worker run, N={side.models} ---", side.profile]
    return "\n".join(lines)


def delete_leftovers(settings: Settings, token: str) -> None:
    """Delete every topic and consumer group whose name starts with the run's token."""
    from confluent_kafka import KafkaException

    admin = admin_client(settings)
    topics = [name for name in admin.list_topics(timeout=30).topics if name.startswith(token)]
    if topics:
        for future in admin.delete_topics(topics).values():
            future.result(timeout=30)
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
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--models", type=int, nargs="+", default=[20, 200])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=200, help="drift window and reference")
    parser.add_argument(
        "--store", default="memory://", help="worker tables: memory:// or rocksdb://"
    )
    parser.add_argument("--web-port", type=int, default=16166, help="the worker's web port")
    parser.add_argument(
        "--no-profile", dest="profile", action="store_false", help="skip the cProfile runs"
    )
    args = parser.parse_args(argv)
    base = dataclasses.replace(Settings.from_env(), worker_store=args.store)
    token = f"bench-pipe-{uuid.uuid4().hex[:8]}"
    try:
        sides = asyncio.run(
            run(
                base,
                token,
                args.models,
                args.events,
                args.window,
                args.rounds,
                args.profile,
                args.web_port,
            )
        )
        print(report(sides, args.events))
    finally:
        delete_leftovers(base, token)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
