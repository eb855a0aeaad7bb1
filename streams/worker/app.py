"""The Faust app: ``create_app(settings)`` wires topics, readers, monitors, sinks and views.

Wiring only: the readers (``streams.worker.readers``) decode and count; each model's
records go as a batch to its monitor (``streams.monitor.Monitor``, pure) through
``streams.worker.shell.Monitors``, which carries out the effects; the timers and views are
in ``streams.worker.views``. Side effects sit in the sinks (``streams.sinks``), started
and stopped with the app.

What runs today:

- **ingest** of the input topics: an agent each for predictions and ground truth (one
  record per event: a table finds its partition through the current event, and Faust
  refuses table writes inside ``take()``), and for feature writes a batch reader
  (``BatchReader``: a plain aiokafka consumer of the partition numbers Faust gives this
  worker; those records touch no table where they arrive, so they skip Faust's per-event
  path). Feature writes are keyed by entity_id, so the batch reader forwards each batch's
  writes to the models that monitor their features (``Portfolio.models_monitoring``), one
  message per model and batch, keyed by model_id, through the app's internal topic
  ``<prefix><app id>-feature-writes-by-model``; its agent feeds each message's writes to
  the model's monitor as one batch;
- each model's **monitor**: feature drift, values from the future, output monitoring,
  the label join and its estimate, the shadow join, the leak watch, the label wait and
  the health policy (see ``streams.monitor``); its points go to InfluxDB, its alerts to
  Alerta, and a fallback, restore or shadow promotion is sent as a signed command on the
  control topic, keyed by model;
- the timers and views of ``streams.worker.views``: the pipeline's books to InfluxDB,
  heartbeats, ``GET /failsoft/models`` and ``GET /metrics``.

State lives in one changelog-backed table keyed by model_id (``model-monitor``), whose
values are pickled monitors, so it survives a restart and moves with its partition on a
rebalance. The shell keeps the monitors of its partitions in memory and writes one to the
table whenever its effects ask for a checkpoint: something happened that must not be lost
(a transition, an alert, an alarm, a command's seq), and at least every
``streams.monitor.CHECKPOINT_EVERY`` records of that model. A crash loses at most that
many records of window filling or leak evidence, never a transition, an alert or a
command's seq. A monitor with a leak watch may pickle to a few megabytes, so the state
table's topic and the producer take records up to ``MAX_STATE_BYTES``.

One worker holds all of a model's state. The input topics keyed by model_id and the
internal topic have the same partition count, and Faust assigns equal partition numbers
of such topics to one worker; a model_id lands on the same partition number in each
because every producer uses Kafka's default partitioner (murmur2 of the key: Java's and
aiokafka's default, ``partitioner=murmur2_random`` in librdkafka, which the fleet client
and the simulator set; see ``schemas/README.md``).

Without a control private key (``FAILSOFT_CONTROL_PRIVATE_KEY``/``_FILE``) the worker runs:
it alerts, and counts every command it could not sign as withheld.

Scale: every input topic is keyed by model_id (feature writes by entity_id), so the
partitions spread the portfolio across workers that share ``worker_app_id``; per-event work
is O(1) in the number of models (one dict lookup for the model, its own monitor). The
worker count follows the event rate, not the model count
(tests/benchmarks/bench_pipeline_throughput.py measures the worker with every detector on;
tests/benchmarks/bench_monitor_replay.py the monitors alone, without Kafka). Give the
model-keyed topics 24 partitions (the catalogue ships 6): divisible by 2, 3, 4, 6, 8 and
12 workers, so the group can grow without repartitioning, which would move models between
partitions.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import msgspec
from faust.types import TableT

from detectors.health.damping import AlertDamping
from schemas.contracts import FeatureWrite, GroundTruth, Prediction
from schemas.signing import Keyring
from streams.monitor import Monitor
from streams.portfolio import Portfolio, load_portfolio
from streams.settings import Settings
from streams.sinks.alerta import AlertaSink
from streams.sinks.influx import InfluxSink
from streams.topics import (
    CONTROL,
    DEAD_LETTERS,
    FEATURE_WRITES,
    GROUND_TRUTH,
    MAX_STATE_BYTES,
    PREDICTIONS,
    STATE_TABLE,
    ensure_topics,
    worker_topics,
    writes_by_model,
)
from streams.worker.ingest import INPUTS, PipelineCounters
from streams.worker.metrics import WorkerCollector
from streams.worker.naming import PrefixedLeaderAssignor, PrefixedTable
from streams.worker.readers import BatchReader, add_ingest_agent
from streams.worker.shell import Monitors
from streams.worker.views import add_timers, add_views

__all__ = ["FailsoftApp", "create_app", "writes_by_model_topic"]

SINK_STOP_TIMEOUT = 5.0
# A batch of feature writes on the internal topic: a JSON array of them.
_WRITE_BATCH = msgspec.json.Decoder(list[FeatureWrite])


class FailsoftApp(faust.App):
    """A Faust app that also owns failsoft's portfolio, books and sinks."""

    settings: Settings
    portfolio: Portfolio
    counters: PipelineCounters
    alerta: AlertaSink
    influx: InfluxSink
    collector: WorkerCollector
    keyring: Keyring
    monitor_table: TableT[str, bytes]
    write_reader: BatchReader

    async def on_first_start(self) -> None:
        await super().on_first_start()
        # Before the consumer (a child service) starts: see streams.topics.worker_topics.
        for change in await asyncio.to_thread(
            ensure_topics, self.settings, worker_topics(self.settings)
        ):
            if change.action != "unchanged":
                self.log.info("%s", change)

    async def _on_agent_error(self, agent: Any, exc: BaseException) -> None:
        # An agent's exception is a bug of ours (input that does not fit is dead-lettered
        # before it reaches one), or the cluster is not what the app needs. Faust restarts
        # the agent and goes on past the event it failed on, losing its consequences; with
        # a table's changelog missing, every write to that table crashed its agent again
        # while the worker ran on. Stopping the worker (exit code 1) lets its supervisor
        # restart it from the committed offsets instead.
        await super()._on_agent_error(agent, exc)
        await self.crash(exc)

    async def on_start(self) -> None:
        await super().on_start()
        self.alerta.start()
        self.influx.start()

    async def on_started(self) -> None:
        await super().on_started()
        # Its batches go out through the app's producer, which runs by now.
        await self.write_reader.start()

    async def on_stop(self) -> None:
        await self.write_reader.stop()
        # The consumer stops first (in super), so nothing is enqueued after the flush.
        await super().on_stop()
        await self.alerta.stop(SINK_STOP_TIMEOUT)
        await self.influx.stop(SINK_STOP_TIMEOUT)


def writes_by_model_topic(settings: Settings) -> str:
    """The name of the app's internal topic of feature writes keyed by model."""
    return writes_by_model(settings).name(settings)


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
        producer_max_request_size=MAX_STATE_BYTES,
        # Warm standbys of the state tables stalled both workers' agents when a second
        # worker joined mid-stream (faust-streaming 0.15.3, measured here); a takeover
        # restores the tables from their changelogs instead.
        table_standby_replicas=0,
        # Their topics carry the topic prefix (streams.worker.naming).
        Table=PrefixedTable,
        LeaderAssignor=PrefixedLeaderAssignor,
    )
    app.settings = settings
    app.portfolio = portfolio if portfolio is not None else load_portfolio(settings.portfolio_path)
    app.counters = PipelineCounters()
    app.alerta = AlertaSink(
        settings.alerta_endpoint,
        settings.alerta_api_key,
        settings.alerta_environment,
        customer=settings.alerta_customer or None,
        damping=AlertDamping(settings.alert_damping),
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
        # The batch reader's topic is not Faust's: its messages count once handled.
        received_by_topic=lambda: {
            **app.monitor.messages_received_by_topic,
            app.write_reader.topic_name: app.counters.consumed[app.write_reader.topic_name],
        },
        events_per_second=lambda: float(app.monitor.events_s),
    )
    app.keyring = Keyring.from_settings(settings)
    for model in app.portfolio:
        # A setting the detectors refuse stops the worker here.
        Monitor(model)
    # Values are pickled monitors (bytes), keys model_ids (JSON strings).
    app.monitor_table = app.Table(
        STATE_TABLE,
        partitions=PREDICTIONS.partitions,
        key_type=str,
        value_type=bytes,
        extra_topic_configs={"max.message.bytes": MAX_STATE_BYTES},
    )
    dead_letters = app.topic(DEAD_LETTERS.name(settings))
    routed_writes_topic = app.topic(
        writes_by_model_topic(settings),
        internal=True,
        partitions=PREDICTIONS.partitions,
        key_type=bytes,
        value_type=bytes,
    )
    monitors = Monitors(app, app.monitor_table, app.topic(CONTROL.name(settings)))
    models = app.portfolio.models

    async def on_record(record: Prediction | GroundTruth) -> None:
        await monitors.feed(models[record.model_id], (record,))

    async def on_writes(writes: list[FeatureWrite]) -> None:
        by_model: dict[str, list[FeatureWrite]] = {}
        for write in writes:
            for model_id in app.portfolio.models_monitoring(write.feature):
                by_model.setdefault(model_id, []).append(write)
        for model_id, batch in by_model.items():
            await routed_writes_topic.send(key=model_id.encode(), value=msgspec.json.encode(batch))

    add_ingest_agent(app, INPUTS[PREDICTIONS.suffix], dead_letters, on_record)
    add_ingest_agent(app, INPUTS[GROUND_TRUTH.suffix], dead_letters, on_record)
    # Feature writes leave as one message per model and batch.
    app.write_reader = BatchReader(app, INPUTS[FEATURE_WRITES.suffix], dead_letters, on_writes)
    _add_routed_writes_agent(app, routed_writes_topic, monitors)
    add_timers(app)
    add_views(app, monitors)
    return app


def _add_routed_writes_agent(
    app: FailsoftApp, writes_by_model: faust.TopicT, monitors: Monitors
) -> None:
    """Each model's monitor gets the writes of its features, on the model's partition, a
    message (one batch of the batch reader's) at a time.

    Its values are batches of feature writes the ingest agent validated and encoded, so
    one that does not decode is a bug and raises.
    """
    models = app.portfolio.models

    async def routed_writes(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            writes = _WRITE_BATCH.decode(event.value)
            await monitors.feed(models[event.key.decode()], writes)

    app.agent(writes_by_model, name="routed-writes")(routed_writes)
