"""The Faust app: ``create_app(settings)`` wires topics, readers, monitors, sinks and views.

Wiring only: the readers (``streams.worker.readers``) decode and count; each model's
records go as a batch to its monitor (``streams.monitor.Monitor``, pure) through
``streams.worker.shell.Monitors``, which carries out the effects; the timers and views are
in ``streams.worker.views``. Side effects sit in the sinks (``streams.sinks``), started
and stopped with the app; what they buffer through an outage is spooled to
``Settings.spool_dir`` and sent, if the worker stops or dies first, by the next worker that
looks there: itself when it comes back, any live worker sharing the folder meanwhile.

What runs today:

- **ingest** of the input topics in batches (``streams.worker.readers.IngestReader``): one
  plain aiokafka consumer reads predictions, ground truth, feature writes and the app's
  internal topic ``<prefix><app id>-feature-writes-by-model``, on the partitions whose
  state Faust assigns this worker; single-record and batch messages alike. Predictions
  and labels, keyed by model_id, wait in their model's micro-batch; feature writes, keyed
  by entity_id, join the micro-batch of each model held here that monitors their feature
  (``Portfolio.models_monitoring``), and are forwarded to each one held elsewhere, one
  message per model and read, keyed by model_id, on the internal topic, whose writes
  join their model's micro-batch in turn. A
  micro-batch goes to the model's monitor at ``MICRO_BATCH`` records or after
  ``MICRO_BATCH_LINGER_S``. Faust's per-event stream carries no input: it cost more per
  record than the monitors (README, "Benchmarks: simulator and worker");
- each model's **monitor**: feature drift, values from the future, output monitoring,
  the label join and its estimate, the shadow join, the leak watch, the label wait and
  the health policy (see ``streams.monitor``); its points go to InfluxDB, its alerts to
  Alerta, and a fallback, restore or shadow promotion is sent as a signed command on the
  control topic, keyed by model;
- the timers and views of ``streams.worker.views``: the pipeline's books to InfluxDB,
  heartbeats, ``GET /failsoft/models`` and ``GET /metrics``.

State lives in one changelog-backed table keyed by model_id (``model-monitor``), whose
values are pickled monitors, so it survives a restart and moves with its partition on a
rebalance. Faust stays for that table and its changelog, for partition assignment and
rebalancing (its consumer subscribes to the changelog, which the reader's partitions
follow), the timers, the web views and producing commands. The shell keeps the monitors
of its partitions in memory and writes one to the table whenever its effects ask for a
checkpoint: something happened that must not be lost (a transition, an alert, an alarm, a
command's seq), at least every ``streams.monitor.CHECKPOINT_EVERY`` records of that
model, and once its oldest record not in the table waited
``Settings.worker_checkpoint_within``. The ingest offsets are committed only up to
the first record a monitor holds that is not in the table, and a checkpoint carries the
offsets its monitor read to, so a crash loses nothing and a restored monitor skips what
it already holds (``streams.worker.readers``). A monitor with a leak watch may pickle to a
few megabytes, so the state table's topic and the producer take records up to
``MAX_STATE_BYTES``; its segments are small (``CHANGELOG_SEGMENT_BYTES``) so that Kafka
compacts it while the worker runs, and a restore reads about one state per model.

One worker holds all of a model's state. The input topics keyed by model_id, the internal
topic and the state table's changelog have the same partition count, and the reader reads
the partition numbers of the changelog that Faust makes active here; a model_id lands on
the same partition number in each because every producer uses Kafka's default partitioner
(murmur2 of the key: Java's and aiokafka's default, ``partitioner=murmur2_random`` in
librdkafka, which the fleet client and the simulator set; see ``schemas/README.md``).

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

import faust
from faust.types import TableT

from detectors.health.damping import AlertDamping
from schemas.signing import Keyring
from streams.kafka_security import faust_credentials
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
    changelog,
    ensure_topics,
    worker_topics,
    writes_by_model,
)
from streams.worker.gcfreeze import FullCollections
from streams.worker.ingest import INPUTS, PipelineCounters
from streams.worker.metrics import WorkerCollector
from streams.worker.naming import PrefixedLeaderAssignor, PrefixedTable
from streams.worker.readers import IngestReader
from streams.worker.shell import Monitors
from streams.worker.views import add_timers, add_views

__all__ = ["FailsoftApp", "create_app", "writes_by_model_topic"]

SINK_STOP_TIMEOUT = 5.0
# Under the 1 MB that brokers allow a topic's record batch by default (message.max.bytes).
PRODUCER_BATCH_BYTES = 256 * 1024


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
    reader: IngestReader
    full_collections: FullCollections

    async def on_first_start(self) -> None:
        await super().on_first_start()
        # Before the consumer (a child service) starts: see streams.topics.worker_topics.
        for change in await asyncio.to_thread(
            ensure_topics, self.settings, worker_topics(self.settings)
        ):
            if change.action != "unchanged":
                self.log.info("%s", change)

    async def on_start(self) -> None:
        await super().on_start()
        self.alerta.start()
        self.influx.start()

    async def on_started(self) -> None:
        await super().on_started()
        # Every service runs and no monitor is held yet: what the process holds now stays.
        self.full_collections.install()
        # It sends through the app's producer, which runs by now.
        await self.reader.start()

    async def on_stop(self) -> None:
        # Feeds what it read and commits before the producer stops (in super).
        await self.reader.stop()
        # The consumer stops first (in super), so nothing is enqueued after the flush.
        await super().on_stop()
        await self.alerta.stop(SINK_STOP_TIMEOUT)
        await self.influx.stop(SINK_STOP_TIMEOUT)
        self.full_collections.remove()


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
        broker_credentials=faust_credentials(settings),
        store=settings.worker_store,
        datadir=str(settings.worker_data_dir),
        web_host=settings.worker_web_host,
        web_port=settings.worker_web_port,
        # Changelog topics are co-partitioned with the model-keyed input topics.
        topic_partitions=PREDICTIONS.partitions,
        key_serializer="raw",
        value_serializer="raw",
        producer_max_request_size=MAX_STATE_BYTES,
        # Records queue per partition in batches of up to this many bytes; a send to a full
        # batch waits for the broker. At the default 16 KiB the dead letters of one read
        # of a poisoned backlog (about 200 of 0.4 KiB in 2,000 messages) waited five times.
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
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
        settings.secret("alerta_api_key"),
        settings.alerta_environment,
        customer=settings.alerta_customer or None,
        damping=AlertDamping(settings.alert_damping),
        spool=settings.spool_dir,
    )
    app.influx = InfluxSink(
        settings.influxdb_url,
        settings.secret("influxdb_token"),
        settings.influxdb_org,
        settings.influxdb_bucket,
        spool=settings.spool_dir,
    )
    app.keyring = Keyring.from_settings(settings)
    # Values are pickled monitors (bytes), keys model_ids (JSON strings).
    app.monitor_table = app.Table(
        STATE_TABLE,
        partitions=PREDICTIONS.partitions,
        key_type=str,
        value_type=bytes,
        # What worker_topics created it with: Faust declares its changelog again.
        extra_topic_configs={
            key: value
            for key, value in changelog(settings, STATE_TABLE).configs.items()
            if key != "cleanup.policy"
        },
    )
    dead_letters = app.topic(DEAD_LETTERS.name(settings))
    routed_writes_topic = app.topic(
        writes_by_model_topic(settings),
        internal=True,
        partitions=PREDICTIONS.partitions,
        key_type=bytes,
        value_type=bytes,
    )
    # Builds every model's monitor: a setting its detectors refuse raises PortfolioError.
    monitors = Monitors(app, app.monitor_table, app.topic(CONTROL.name(settings)))
    app.reader = IngestReader(
        app,
        [INPUTS[spec.suffix] for spec in (PREDICTIONS, GROUND_TRUTH, FEATURE_WRITES)],
        routed_writes_topic,
        dead_letters,
        monitors,
        app.monitor_table.changelog_topic.get_topic_name(),
    )
    app.full_collections = FullCollections(settings.worker_gc_freeze)
    app.collector = WorkerCollector(app.counters, [app.alerta, app.influx], app.reader, monitors)
    add_timers(app)
    add_views(app, monitors)
    return app
