"""Worker throughput: predictions per second through one worker, against a bare consumer.

Against the local stack (Kafka, and the worker's Alerta and InfluxDB sinks), in one run:

- ``bare``: an aiokafka consumer (``getmany``, a group of its own) drains the predictions
  topic and does nothing with the messages;
- ``faust``: a Faust agent that only counts events (``stream.events()``), in an app with the
  worker's settings: the ceiling of any per-event Faust agent on this machine;
- ``worker``: one in-process worker (``create_app``, RocksDB tables) consumes the same
  topic with everything that is wired today: decoding and validation, dead letters, the
  per-model watch (a drift test on every monitored feature and the health policy),
  checkpoints to the changelog table, points and alerts.

Both read the same ``--events`` predictions (``--models`` models with ``--features``
numeric features each, produced once, keyed by model_id over the topic's partitions).
Rates are events over the time from the first event consumed to the last; each pair is
repeated ``--rounds`` times (bare first, then worker) and the medians are reported, with
the ratios worker/bare and faust/bare. Run::

    .venv/bin/python -m tests.benchmarks.bench_worker_throughput
    .venv/bin/python -m tests.benchmarks.bench_worker_throughput --events 50000 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from schemas.codec import encode
from schemas.contracts import FeatureSeen, Prediction, Score
from streams.app import create_app
from streams.portfolio import Portfolio, parse_portfolio
from streams.settings import Settings
from streams.topics import PREDICTIONS, ensure_topics

POLL_S = 0.02
TIMEOUT_S = 600.0


def bench_portfolio(models: int, features: int) -> Portfolio:
    numeric = ", ".join(f'f{f} = "numeric"' for f in range(features))
    tables = "".join(
        f'[models.bench-{m}]\nowner = "bench"\nfeatures = {{ {numeric} }}\n' for m in range(models)
    )
    return parse_portfolio(
        '[defaults]\ntier = "cpu"\nfallback = "top_n_popular"\nlabel_delay = "1h"\n'
        "[defaults.detectors.drift]\nwindow_size = 1000\n" + tables
    )


def produce(settings: Settings, events: int, models: int, features: int) -> None:
    from confluent_kafka import Producer

    rng = np.random.default_rng(1)
    values = rng.normal(0.0, 1.0, (events, features))
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 20})
    start_ms = int(time.time() * 1000) - events
    topic = PREDICTIONS.name(settings)
    for n in range(events):
        model = f"bench-{n % models}"
        prediction = Prediction(
            schema_version=1,
            request_id=f"r{n}",
            model_id=model,
            model_version="v1",
            role="live",
            entity_id=f"u{n % 1000}",
            predicted_at=start_ms + n,
            output=Score(score=0.5),
            features={f"f{f}": FeatureSeen(float(values[n, f]), 0) for f in range(features)},
            latency_ms=2.0,
        )
        producer.produce(topic, key=model, value=encode(prediction))
        if n % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0


async def bare_rate(settings: Settings, events: int) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        PREDICTIONS.name(settings),
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"bench-bare-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        seen, first = 0, 0.0
        while seen < events:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for messages in batches.values():
                if messages and not seen:
                    first = time.perf_counter()
                seen += len(messages)
        return (events - 1) / (time.perf_counter() - first)
    finally:
        await consumer.stop()


async def faust_rate(settings: Settings, events: int) -> float:
    import faust

    app = faust.App(
        f"bench-faust-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=tempfile.mkdtemp(prefix="failsoft-bench-"),
        web_enabled=False,
        topic_partitions=PREDICTIONS.partitions,
        key_serializer="raw",
        value_serializer="raw",
    )
    counted = [0]

    @app.agent(app.topic(PREDICTIONS.name(settings)))
    async def count(stream: faust.StreamT[bytes]) -> None:
        async for _ in stream.events():
            counted[0] += 1

    await app.start()
    try:
        return await _rate(lambda: counted[0], events)
    finally:
        await app.stop()


async def _rate(consumed: Callable[[], int], events: int) -> float:
    """Events per second from the first event consumed to the last, polled."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_S
    first: tuple[float, int] | None = None
    while consumed() < events:
        assert loop.time() < deadline, consumed()
        if first is None and consumed():
            first = (time.perf_counter(), consumed())
        await asyncio.sleep(POLL_S)
    assert first is not None
    return (events - first[1]) / (time.perf_counter() - first[0])


async def worker_rate(settings: Settings, portfolio: Portfolio, events: int) -> float:
    app_settings = dataclasses.replace(
        settings,
        worker_app_id=f"bench-worker-{uuid.uuid4().hex[:8]}",
        worker_data_dir=Path(tempfile.mkdtemp(prefix="failsoft-bench-")),
    )
    app = create_app(app_settings, portfolio)
    topic = PREDICTIONS.name(settings)
    await app.start()
    try:
        return await _rate(lambda: app.counters.consumed[topic], events)
    finally:
        await app.stop()


async def run(settings: Settings, events: int, models: int, features: int, rounds: int) -> dict:
    portfolio = bench_portfolio(models, features)
    ensure_topics(settings)
    produce(settings, events, models, features)
    bare, faust_, worker = [], [], []
    for _ in range(rounds):
        bare.append(await bare_rate(settings, events))
        faust_.append(await faust_rate(settings, events))
        worker.append(await worker_rate(settings, portfolio, events))
    return {
        "events": events,
        "models": models,
        "features": features,
        "bare": bare,
        "faust": faust_,
        "worker": worker,
    }


def report(result: dict) -> str:
    bare, worker = statistics.median(result["bare"]), statistics.median(result["worker"])
    faust_ = statistics.median(result["faust"])
    rounds = ", ".join(
        f"{w:,.0f}/{f:,.0f}/{b:,.0f}"
        for w, f, b in zip(result["worker"], result["faust"], result["bare"], strict=True)
    )
    return (
        f"{result['events']:,} predictions, {result['models']} models x "
        f"{result['features']} numeric features, {len(result['bare'])} round(s)\n"
        f"bare aiokafka consumer: median {bare:,.0f} events/s\n"
        f"counting Faust agent:   median {faust_:,.0f} events/s\n"
        f"failsoft worker:        median {worker:,.0f} events/s\n"
        f"ratio worker/bare:      {worker / bare:.3f}\n"
        f"ratio faust/bare:       {faust_ / bare:.3f}\n"
        f"ratio worker/faust:     {worker / faust_:.3f}\n"
        f"rounds worker/faust/bare: {rounds}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--features", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    base = Settings.from_env()
    settings = dataclasses.replace(
        base, topic_prefix=f"bench-{uuid.uuid4().hex[:8]}.", worker_store="rocksdb://"
    )
    try:
        result = asyncio.run(run(settings, args.events, args.models, args.features, args.rounds))
        print(report(result))
    finally:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
        prefix = settings.topic_prefix.rstrip(".")
        ours = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
        ours += [
            t
            for t in admin.list_topics(timeout=30).topics
            if t.startswith(("bench-worker-", "bench-faust-"))
        ]
        if ours:
            for future in admin.delete_topics(ours).values():
                future.result(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
