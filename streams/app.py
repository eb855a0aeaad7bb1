"""The Faust app: ``create_app(settings)`` wires topics, agents, sinks and web views.

Agents stay thin: decode (``streams.ingest``), call pure code, encode, send. Side effects
sit in the sinks (``streams.sinks``), started and stopped with the app.

What runs today:

- one **ingest** agent per input topic (predictions, feature writes, ground truth). Each
  message is processed or dead-lettered with its reason (see ``streams.ingest``), and the
  books are kept per topic and reason;
- the **watch** of each model (``streams.watch``): predictions feed its feature drift tests,
  its values-from-the-future check, its live/shadow pairing and its health policy;
  evidence and transitions go to InfluxDB and Alerta, and a fallback or restore is sent as
  a signed command on the control topic, keyed by model;
- a timer that writes the books and the sinks' state to InfluxDB (measurement
  ``pipeline``) every ``PIPELINE_REPORT_INTERVAL`` seconds;
- a timer that sends this worker's heartbeat to Alerta every ``HEARTBEAT_INTERVAL``, and
  one on the leader that raises an alert for a worker of this app whose heartbeat expired
  (``streams.sinks.alerta.heartbeat_alerts``);
- ``GET /failsoft/models`` on the worker's web port: each model's state, since when, why
  and its last evidence, as JSON (the models whose partitions this worker holds; the others
  show ``"state": "unknown"``);
- ``GET /metrics`` on the worker's web port, in Prometheus' text format.

Watch state lives in the changelog-backed table ``model-watch`` keyed by model_id, so it
survives a restart and moves with its partition on a rebalance. Pickling a watch costs
more than one event, so the agent keeps the watches of its partitions in memory and
writes one to the table whenever something happened (a window ended, a transition) and
at least every ``CHECKPOINT_EVERY`` predictions of that model. A crash loses at most that
many predictions of window filling, never a transition or a command's seq.

Without a control signing key (``FAILSOFT_CONTROL_KEYS``/``_FILE``) the worker still runs:
it alerts, and counts every action it could not sign as withheld.

Scale: every input topic is keyed by model_id (feature writes by entity_id), so the
partitions spread the portfolio across workers that share ``worker_app_id``; per-event work
is O(1) in the number of models (one dict lookup for the model, its own watch). Sizing for
1,000 models: the worker count follows the event rate, not the model count. One worker
handled 2,000 to 5,000 predictions/s here (tests/benchmarks/bench_worker_throughput.py, two
shared cores), bounded by Faust's per-event cost. 1,000 models at 2,000 predictions per
model-day average 23 events/s, so two workers (the second for failover, with standby
replicas of the tables) carry it with a 100x peak margin. Give the model-keyed topics 24
partitions (the catalogue ships 6): divisible by 2, 3, 4, 6, 8 and 12 workers, so the
group can grow without repartitioning, which would move models between partitions. A
pickled watch with windows of 1,000 is about 25 KB per monitored feature (505 KB measured
for a model of 20 features), so 1,000 such models are about 500 MB of RocksDB state, split
across the workers, and each checkpoint writes one such value to the changelog.
"""

from __future__ import annotations

import pickle
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import faust
from faust.types import TableT
from faust.web import Request, Response, View

from schemas.codec import dead_letter, encode
from schemas.contracts import DecodeError, Prediction
from schemas.signing import Keyring
from streams.ingest import INPUTS, Input, PipelineCounters, validate
from streams.metrics import CONTENT_TYPE, WorkerCollector, render
from streams.portfolio import Portfolio, load_portfolio
from streams.settings import Settings
from streams.sinks.alerta import AlertaSink, Heartbeat, heartbeat_alerts
from streams.sinks.influx import InfluxSink, point
from streams.topics import CONTROL, DEAD_LETTERS, PREDICTIONS
from streams.watch import ModelWatch, consequences, describe, new_watch, observe

__all__ = ["FailsoftApp", "create_app"]

PIPELINE_REPORT_INTERVAL = 10.0
HEARTBEAT_INTERVAL = 30.0
# Alerta calls the worker dead after three missed heartbeats.
HEARTBEAT_TIMEOUT = timedelta(seconds=3 * HEARTBEAT_INTERVAL)
SINK_STOP_TIMEOUT = 5.0
CHECKPOINT_EVERY = 1000


class FailsoftApp(faust.App):
    """A Faust app that also owns failsoft's portfolio, books and sinks."""

    settings: Settings
    portfolio: Portfolio
    counters: PipelineCounters
    alerta: AlertaSink
    influx: InfluxSink
    collector: WorkerCollector
    keyring: Keyring
    watches: TableT[str, bytes]

    async def on_start(self) -> None:
        await super().on_start()
        self.alerta.start()
        self.influx.start()

    async def on_stop(self) -> None:
        # The consumer stops first (in super), so nothing is enqueued after the flush.
        await super().on_stop()
        await self.alerta.stop(SINK_STOP_TIMEOUT)
        await self.influx.stop(SINK_STOP_TIMEOUT)


def create_app(settings: Settings, portfolio: Portfolio | None = None) -> FailsoftApp:
    """The worker's app, with the portfolio from ``settings.portfolio_path`` unless given.

    Raises
    ------
    PortfolioError
        When the portfolio file is missing or invalid.
    """
    app = FailsoftApp(
        settings.worker_app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store=settings.worker_store,
        datadir=str(settings.worker_data_dir),
        web_host=settings.worker_web_host,
        web_port=settings.worker_web_port,
        # Changelog topics are co-partitioned with the model-keyed input topics.
        topic_partitions=PREDICTIONS.partitions,
        key_serializer="raw",
        value_serializer="raw",
    )
    app.settings = settings
    app.portfolio = portfolio if portfolio is not None else load_portfolio(settings.portfolio_path)
    app.counters = PipelineCounters()
    app.alerta = AlertaSink(
        settings.alerta_endpoint, settings.alerta_api_key, settings.alerta_environment
    )
    app.influx = InfluxSink(
        settings.influxdb_url,
        settings.influxdb_token,
        settings.influxdb_org,
        settings.influxdb_bucket,
    )
    app.collector = WorkerCollector(
        app.counters,
        [app.alerta, app.influx],
        received_by_topic=lambda: dict(app.monitor.messages_received_by_topic),
        events_per_second=lambda: float(app.monitor.events_s),
    )
    app.keyring = Keyring.from_settings(settings)
    for model in app.portfolio:
        new_watch(model)  # a setting the detectors refuse stops the worker here
    # Values are pickled watches (bytes), keys model_ids (JSON strings).
    app.watches = app.Table(
        "model-watch", partitions=PREDICTIONS.partitions, key_type=str, value_type=bytes
    )
    dead_letters = app.topic(DEAD_LETTERS.name(settings))
    watcher = _Watcher(app, app.topic(CONTROL.name(settings)))
    for source in INPUTS.values():
        handler = watcher.on_prediction if source.spec is PREDICTIONS else None
        _add_ingest_agent(app, source, dead_letters, handler)
    _add_timers(app)
    _add_views(app, watcher)
    return app


def _add_ingest_agent(
    app: FailsoftApp,
    source: Input,
    dead_letters: faust.TopicT,
    handler: Callable[[Any], Awaitable[None]] | None,
) -> None:
    topic_name = source.spec.name(app.settings)
    topic = app.topic(topic_name)
    portfolio, counters = app.portfolio, app.counters

    async def ingest(stream: faust.StreamT[bytes]) -> None:
        # One event at a time: tables find an event's partition through the current event.
        async for event in stream.events():
            outcome = validate(source, event.value, portfolio)
            if isinstance(outcome, DecodeError):
                message = event.message
                letter = dead_letter(
                    outcome,
                    raw=event.value,
                    source_topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                    seen_at=int(time.time() * 1000),
                    key=event.key,
                )
                await dead_letters.send(key=message.topic.encode(), value=encode(letter))
            elif handler is not None:
                await handler(outcome)
            counters.count(topic_name, outcome)

    app.agent(topic, name=f"ingest-{source.spec.suffix}")(ingest)


class _Watcher:
    """Feeds each prediction to its model's watch and carries out the consequences."""

    def __init__(self, app: FailsoftApp, control: faust.TopicT) -> None:
        self.app = app
        self.control = control
        # model_id -> (watch, predictions since it was last written to the table)
        self.cache: dict[str, tuple[ModelWatch, int]] = {}

        async def forget(*args: Any, **kwargs: Any) -> None:
            # Partitions moved: what this worker holds may now be another's; reread it.
            self.cache.clear()

        app.on_partitions_revoked.connect(forget)

    def watch_of(self, model_id: str) -> ModelWatch | None:
        """The newest watch this worker holds for the model, if any."""
        cached = self.cache.get(model_id)
        return self._stored(model_id) if cached is None else cached[0]

    def _stored(self, model_id: str) -> ModelWatch | None:
        stored = self.app.watches.get(model_id)
        return None if stored is None else pickle.loads(stored)

    async def on_prediction(self, prediction: Prediction) -> None:
        app = self.app
        model = app.portfolio.models[prediction.model_id]
        cached = self.cache.get(model.model_id)
        if cached is None:
            watch, pending = self._stored(model.model_id) or new_watch(model), 0
        else:
            watch, pending = cached
        observation = observe(watch, prediction)
        pending += 1
        if observation:
            effects = consequences(model, watch, observation, app.keyring)
            for point_ in effects.points:
                app.influx.enqueue(point_)
            for alert in effects.alerts:
                app.alerta.enqueue(alert)
            for command in effects.commands:
                await self.control.send(key=model.model_id.encode(), value=encode(command))
                app.counters.commands_sent[command.action] += 1
            for action in effects.withheld:
                app.counters.commands_withheld[action.action] += 1
        if observation or pending >= CHECKPOINT_EVERY:
            app.watches[model.model_id] = pickle.dumps(watch, pickle.HIGHEST_PROTOCOL)
            pending = 0
        self.cache[model.model_id] = (watch, pending)


def _add_timers(app: FailsoftApp) -> None:
    origin_prefix = f"{app.settings.worker_app_id}/"
    origin = f"{origin_prefix}{socket.gethostname()}:{app.settings.worker_web_port}"

    async def report_pipeline() -> None:
        now_ms = int(time.time() * 1000)
        counters = app.counters
        for topic, consumed in counters.consumed.items():
            fields = {
                "consumed": consumed,
                "processed": counters.processed[topic],
                "dead_lettered": counters.dead_lettered_total(topic),
            }
            app.influx.enqueue(
                point("pipeline", {"agent": "ingest", "topic": topic}, fields, now_ms)
            )
        for sink in (app.alerta, app.influx):
            stats = sink.stats
            fields = {"buffered": stats.buffered, "dropped": stats.dropped}
            app.influx.enqueue(point("pipeline", {"sink": sink.name}, fields, now_ms))

    async def heartbeat() -> None:
        app.alerta.enqueue(Heartbeat(origin=origin, timeout=HEARTBEAT_TIMEOUT))

    async def watch_heartbeats() -> None:
        heartbeats = await app.alerta.fetch_heartbeats()
        for alert in heartbeat_alerts(heartbeats or [], origin_prefix):
            app.alerta.enqueue(alert)

    app.timer(PIPELINE_REPORT_INTERVAL, name="report-pipeline")(report_pipeline)
    app.timer(HEARTBEAT_INTERVAL, on_leader=True, name="watch-heartbeats")(watch_heartbeats)
    app.timer(HEARTBEAT_INTERVAL, name="heartbeat")(heartbeat)


def _add_views(app: FailsoftApp, watcher: _Watcher) -> None:
    @app.page("/failsoft/models")
    class Models(View):
        async def get(self, request: Request, **kwargs: Any) -> Response:
            models = [describe(model, watcher.watch_of(model.model_id)) for model in app.portfolio]
            return self.json({"worker": app.settings.worker_app_id, "models": models})

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request, **kwargs: Any) -> Response:
            return self.bytes(render(app.collector), content_type=CONTENT_TYPE)
