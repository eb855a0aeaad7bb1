"""The Faust app: ``create_app(settings)`` wires topics, agents, sinks and web views.

Agents stay thin: decode (``streams.ingest``), call pure code, encode, send. Side effects
sit in the sinks (``streams.sinks``), started and stopped with the app.

What runs today:

- **ingest** of the input topics: an agent each for predictions and ground truth, and for
  feature writes a batch reader (``_BatchReader``: a plain aiokafka consumer of the
  partition numbers Faust gives this worker; those records touch no table where they
  arrive, so they skip Faust's per-event path). Each message is processed or dead-lettered with its
  reason (see ``streams.ingest``), and the books are kept per topic and reason;
- the **watch** of each model (``streams.watch``): predictions feed its feature drift tests,
  its values-from-the-future check, its output monitoring and its health policy;
  evidence and transitions go to InfluxDB and Alerta, and a fallback or restore is sent as
  a signed command on the control topic, keyed by model;
- the **label join** (``streams.label_join``) and, for a model with a shadow, the **shadow
  join** (``streams.shadow_join``) of each model, fed by its predictions and its ground
  truth: performance against delayed labels and the estimate before them, the shadow's
  agreement and promotion verdict (an alert; a signed ``promote_shadow`` command when the
  portfolio sets ``promote_command``);
- the **leak watch** (``streams.leak_watch``) of each model with features, fed by the
  model's live predictions and labels where they arrive, and by the writes of its
  features through the app's internal topic ``<prefix><app id>-feature-writes-by-model``:
  feature writes are keyed by entity_id, so the batch reader forwards each batch's writes
  to the models that monitor their features (``Portfolio.models_monitoring``), one
  message per model and batch, keyed by model_id;
- a label whose prediction the label join does not hold, and whose ``label_at`` its
  model's predictions have not reached yet, waits for them before the joins see it
  (``streams.label_wait``): the two topics are read at once, each at its own lag, and the
  joins would otherwise count it unmatched;
- evidence of the label join and the leak watch goes to the model's health policy
  (``streams.watch.observe_evidence``) with the same consequences as drift;
- a timer that writes the books and the sinks' state to InfluxDB (measurement
  ``pipeline``) every ``PIPELINE_REPORT_INTERVAL`` seconds;
- a timer that sends this worker's heartbeat to Alerta every ``HEARTBEAT_INTERVAL``, and
  one on the leader that raises an alert for a worker of this app whose heartbeat expired
  (``streams.sinks.alerta.heartbeat_alerts``);
- ``GET /failsoft/models`` on the worker's web port: each model's state, since when, why
  and its last evidence, as JSON (the models whose partitions this worker holds; the others
  show ``"state": "unknown"``);
- ``GET /metrics`` on the worker's web port, in Prometheus' text format.

State lives in changelog-backed tables keyed by model_id (``model-watch``, ``label-join``,
``leak-watch``, ``shadow-join``), so it survives a restart and moves with its partition on
a rebalance. Pickling a state costs more than one event, so the agents keep the states of
their partitions in memory and write one to its table whenever something happened that
must not be lost (a transition, an alert, an alarm) and at least every ``CHECKPOINT_EVERY``
records of that model (``LEAK_CHECKPOINT_EVERY`` for the much larger leak watch). A crash
loses at most that many records of window filling or leak evidence, never a transition,
an alert or a command's seq. A leak watch may pickle to a few megabytes, so the state
tables' topics and the producer take records up to ``MAX_STATE_BYTES``.

One worker holds all of a model's state. The input topics keyed by model_id and the
internal topic have the same partition count, and Faust assigns equal partition numbers
of such topics to one worker; a model_id lands on the same partition number in each
because every producer uses Kafka's default partitioner (murmur2 of the key: Java's and
aiokafka's default, ``partitioner=murmur2_random`` in librdkafka, which the fleet client
and the simulator set; see ``schemas/README.md``).

Without a control signing key (``FAILSOFT_CONTROL_KEYS``/``_FILE``) the worker still runs:
it alerts, and counts every action it could not sign as withheld.

Scale: every input topic is keyed by model_id (feature writes by entity_id), so the
partitions spread the portfolio across workers that share ``worker_app_id``; per-event work
is O(1) in the number of models (one dict lookup for the model, its own watch). Sizing for
1,000 models: the worker count follows the event rate, not the model count. One worker
with every detector on handled 1,700 to 2,300 events/s here
(tests/benchmarks/bench_pipeline_throughput.py, two shared cores), bounded by Faust's
per-event cost and the detectors' own. 1,000 models at 2,000 predictions per model-day
average 23 predictions/s (with their labels and feature writes, a few times that), so
two workers (the second for failover, restoring from the changelogs) carry it with
a 10x peak margin; add workers with the event rate. Give the model-keyed topics 24
partitions (the catalogue ships 6): divisible by 2, 3, 4, 6, 8 and 12 workers, so the
group can grow without repartitioning, which would move models between partitions. A
pickled watch with windows of 1,000 is about 25 KB per monitored feature (505 KB measured
for a model of 20 features), so 1,000 such models are about 500 MB of RocksDB state, split
across the workers, and each checkpoint writes one such value to the changelog.
"""

from __future__ import annotations

import asyncio
import pickle
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, Generic, TypeVar

import faust
import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from faust.types import TableT
from faust.web import Request, Response, View

from detectors.health.damping import AlertDamping
from schemas.codec import dead_letter, encode
from schemas.contracts import DecodeError, FeatureWrite, GroundTruth, Prediction
from schemas.signing import Keyring, signed_command
from streams import label_join, leak_watch, shadow_join
from streams.ingest import INPUTS, Input, InputRecord, PipelineCounters, validate
from streams.label_wait import LabelWait
from streams.metrics import CONTENT_TYPE, WorkerCollector, render
from streams.portfolio import Model, Portfolio, load_portfolio
from streams.settings import Settings
from streams.sinks.alerta import Alert, AlertaSink, Heartbeat, heartbeat_alerts
from streams.sinks.influx import InfluxSink, Point, point
from streams.topics import (
    CONTROL,
    DEAD_LETTERS,
    FEATURE_WRITES,
    GROUND_TRUTH,
    MAX_STATE_BYTES,
    PREDICTIONS,
    STATE_TABLES,
    ensure_topics,
    worker_topics,
    writes_by_model,
)
from streams.watch import (
    ModelWatch,
    Observation,
    consequences,
    describe,
    new_watch,
    observe,
    observe_evidence,
)

__all__ = ["FailsoftApp", "create_app", "writes_by_model_topic"]

PIPELINE_REPORT_INTERVAL = 10.0
HEARTBEAT_INTERVAL = 30.0
# Alerta calls the worker dead after three missed heartbeats.
HEARTBEAT_TIMEOUT = timedelta(seconds=3 * HEARTBEAT_INTERVAL)
SINK_STOP_TIMEOUT = 5.0
CHECKPOINT_EVERY = 1000
# A leak watch pickles to megabytes (3.3 MB, 126 ms, measured for one of 10,000 entities):
# written every 1,000 records it cost the worker more than its events did.
LEAK_CHECKPOINT_EVERY = 50_000
# Feature writes are read in batches of up to this many.
INGEST_BATCH = 1000
# A batch of feature writes on the internal topic: a JSON array of them.
_WRITE_BATCH = msgspec.json.Decoder(list[FeatureWrite])
S = TypeVar("S")


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
    write_reader: _BatchReader
    label_joins: TableT[str, bytes]
    leak_watches: TableT[str, bytes]
    shadow_joins: TableT[str, bytes]

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
        new_watch(model)
        label_join.new_join(model)
        leak_watch.new_leak_watch(model)
        if model.shadow is not None:
            shadow_join.new_shadow_join(model)
    # Values are pickled states (bytes), keys model_ids (JSON strings).
    app.watches, app.label_joins, app.leak_watches, app.shadow_joins = (
        app.Table(
            name,
            partitions=PREDICTIONS.partitions,
            key_type=str,
            value_type=bytes,
            extra_topic_configs={"max.message.bytes": MAX_STATE_BYTES},
        )
        for name in STATE_TABLES
    )
    dead_letters = app.topic(DEAD_LETTERS.name(settings))
    routed_writes_topic = app.topic(
        writes_by_model_topic(settings),
        internal=True,
        partitions=PREDICTIONS.partitions,
        key_type=bytes,
        value_type=bytes,
    )
    watcher = _Watcher(app, app.topic(CONTROL.name(settings)), routed_writes_topic)
    _add_ingest_agent(app, INPUTS[PREDICTIONS.suffix], dead_letters, watcher.on_prediction)
    _add_ingest_agent(app, INPUTS[GROUND_TRUTH.suffix], dead_letters, watcher.on_label)
    # Feature writes leave as one message per model and batch.
    app.write_reader = _BatchReader(
        app, INPUTS[FEATURE_WRITES.suffix], dead_letters, watcher.on_writes
    )
    _add_routed_writes_agent(app, routed_writes_topic, watcher)
    _add_timers(app)
    _add_views(app, watcher)
    return app


async def _admit(
    app: FailsoftApp,
    source: Input,
    dead_letters: faust.TopicT,
    message: faust.types.Message | ConsumerRecord[bytes, bytes],
) -> InputRecord | DecodeError:
    """The message's record, or the error it was dead-lettered with."""
    outcome = validate(source, message.value, app.portfolio)
    if isinstance(outcome, DecodeError):
        letter = dead_letter(
            outcome,
            raw=message.value,
            source_topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            seen_at=int(time.time() * 1000),
            key=message.key,
        )
        await dead_letters.send(key=message.topic.encode(), value=encode(letter))
    return outcome


def _add_ingest_agent(
    app: FailsoftApp,
    source: Input,
    dead_letters: faust.TopicT,
    handler: Callable[[Any], Awaitable[None]],
) -> None:
    """The agent of one input topic: every event is processed or dead-lettered, and counted."""
    topic_name = source.spec.name(app.settings)
    counters = app.counters

    async def ingest(stream: faust.StreamT[bytes]) -> None:
        # One event at a time: tables find an event's partition through the current event.
        async for event in stream.events():
            outcome = await _admit(app, source, dead_letters, event.message)
            if not isinstance(outcome, DecodeError):
                await handler(outcome)
            counters.count(topic_name, outcome)

    app.agent(app.topic(topic_name), name=f"ingest-{source.spec.suffix}")(ingest)


class _BatchReader:
    """Reads one input topic in batches with a plain aiokafka consumer.

    For a topic whose records touch no table where they arrive (feature writes are keyed by
    entity_id and forwarded by model): Faust's per-event path costs more than the work, and
    any worker may read any partition. The reader takes the partition numbers Faust gives
    this worker of the predictions topic (the topics have equal partition counts), so the
    workers split it along Faust's own assignment, with no second group protocol to
    rebalance beside Faust's. Every message is processed or dead-lettered, and counted, as
    in the ingest agents; offsets are committed (group ``<app id>-<topic suffix>``, never
    joined) after each batch.
    """

    def __init__(
        self,
        app: FailsoftApp,
        source: Input,
        dead_letters: faust.TopicT,
        handler: Callable[[list[Any]], Awaitable[None]],
    ) -> None:
        self.app = app
        self.source = source
        self.dead_letters = dead_letters
        self.handler = handler
        self.topic_name = source.spec.name(app.settings)
        self.consumer: AIOKafkaConsumer | None = None
        self.task: asyncio.Task[None] | None = None
        self.partitions: set[int] = set()
        app.on_partitions_assigned.connect(self._assigned)
        app.on_partitions_revoked.connect(self._revoked)

    async def _assigned(self, *args: Any, **kwargs: Any) -> None:
        # Faust sends (sender, set of topic partitions); its eager rebalance hands over the
        # whole assignment each time.
        _, assigned = args
        predictions = PREDICTIONS.name(self.app.settings)
        self.partitions = {tp.partition for tp in assigned if tp.topic == predictions}
        self._assign()

    async def _revoked(self, *args: Any, **kwargs: Any) -> None:
        self.partitions = set()
        self._assign()

    def _assign(self) -> None:
        if self.consumer is not None:
            self.consumer.assign(
                [TopicPartition(self.topic_name, number) for number in sorted(self.partitions)]
            )

    async def start(self) -> None:
        settings = self.app.settings
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=f"{settings.worker_app_id}-{self.source.spec.suffix}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await self.consumer.start()
        self._assign()
        self.task = asyncio.create_task(self._read(self.consumer))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.consumer is not None:
            await self.consumer.stop()

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                await self._read_batch(consumer)
        except Exception as error:
            # A bug of ours: the worker stops rather than silently losing this topic.
            await self.app.crash(error)
            raise

    async def _read_batch(self, consumer: AIOKafkaConsumer) -> None:
        batches = await consumer.getmany(timeout_ms=1000, max_records=INGEST_BATCH)
        outcomes = [
            await _admit(self.app, self.source, self.dead_letters, message)
            for messages in batches.values()
            for message in messages
        ]
        if not outcomes:
            return
        await self.handler([o for o in outcomes if not isinstance(o, DecodeError)])
        await consumer.commit()
        for outcome in outcomes:
            self.app.counters.count(self.topic_name, outcome)


class _States(Generic[S]):
    """Per-model states of one kind, kept in memory and pickled into their table whenever
    something that must survive a crash happened, and at least every ``checkpoint_every``
    records of the model."""

    def __init__(
        self, table: TableT[str, bytes], new: Callable[[Model], S], checkpoint_every: int
    ) -> None:
        self.table = table
        self.new = new
        self.checkpoint_every = checkpoint_every
        # model_id -> (state, records since it was last written to the table)
        self.cache: dict[str, tuple[S, int]] = {}

    def peek(self, model_id: str) -> S | None:
        """The newest state this worker holds for the model, if any."""
        cached = self.cache.get(model_id)
        if cached is not None:
            return cached[0]
        stored = self.table.get(model_id)
        return None if stored is None else pickle.loads(stored)

    def get(self, model: Model) -> S:
        state = self.peek(model.model_id)
        return self.new(model) if state is None else state

    def put(self, model_id: str, state: S, changed: bool) -> None:
        """Keep ``state`` after one record; ``changed`` writes it to the table now."""
        cached = self.cache.get(model_id)
        pending = (0 if cached is None else cached[1]) + 1
        if changed or pending >= self.checkpoint_every:
            self.table[model_id] = pickle.dumps(state, pickle.HIGHEST_PROTOCOL)
            pending = 0
        self.cache[model_id] = (state, pending)


class _Watcher:
    """Feeds each record to its model's watch, label join, shadow join and leak watch, and
    carries out the consequences."""

    def __init__(
        self, app: FailsoftApp, control: faust.TopicT, writes_by_model: faust.TopicT
    ) -> None:
        self.app = app
        self.control = control
        self.writes_by_model = writes_by_model
        self.watches = _States(app.watches, new_watch, CHECKPOINT_EVERY)
        self.joins = _States(app.label_joins, label_join.new_join, CHECKPOINT_EVERY)
        self.leaks = _States(app.leak_watches, leak_watch.new_leak_watch, LEAK_CHECKPOINT_EVERY)
        self.shadows = _States(app.shadow_joins, shadow_join.new_shadow_join, CHECKPOINT_EVERY)

        # model_id -> its labels that arrived ahead of its predictions (streams.label_wait)
        self.label_waits: dict[str, LabelWait] = {}

        async def forget(*args: Any, **kwargs: Any) -> None:
            # Partitions moved: what this worker holds may now be another's; reread it.
            for states in (self.watches, self.joins, self.leaks, self.shadows):
                states.cache.clear()
            self.label_waits.clear()

        app.on_partitions_revoked.connect(forget)

    def watch_of(self, model_id: str) -> ModelWatch | None:
        """The newest watch this worker holds for the model, if any."""
        return self.watches.peek(model_id)

    async def on_prediction(self, prediction: Prediction) -> None:
        model = self.app.portfolio.models[prediction.model_id]
        watch = self.watches.get(model)
        await self._act(model, watch, observe(watch, prediction))
        await self._joins(model, watch, prediction)
        if prediction.role == "live" and model.features:
            await self._leaks(model, watch, prediction)
        for truth in self._label_wait(model.model_id).advance(prediction.predicted_at):
            await self._joins(model, watch, truth)

    async def on_label(self, truth: GroundTruth) -> None:
        model = self.app.portfolio.models[truth.model_id]
        watch = self.watches.get(model)
        # The leak watch weighs labels against writes, not predictions: no wait.
        if model.features:
            await self._leaks(model, watch, truth)
        if label_join.holds(self.joins.get(model), truth):
            await self._joins(model, watch, truth)
            return
        for ready in self._label_wait(model.model_id).add(truth):
            await self._joins(model, watch, ready)

    def _label_wait(self, model_id: str) -> LabelWait:
        wait = self.label_waits.get(model_id)
        if wait is None:
            wait = self.label_waits[model_id] = LabelWait()
        return wait

    async def on_writes(self, writes: list[FeatureWrite]) -> None:
        by_model: dict[str, list[FeatureWrite]] = {}
        for write in writes:
            for model_id in self.app.portfolio.models_monitoring(write.feature):
                by_model.setdefault(model_id, []).append(write)
        for model_id, batch in by_model.items():
            await self.writes_by_model.send(key=model_id.encode(), value=msgspec.json.encode(batch))

    async def on_routed_writes(self, model: Model, writes: list[FeatureWrite]) -> None:
        watch = self.watches.get(model)
        for write in writes:
            await self._leaks(model, watch, write)

    async def _leaks(
        self, model: Model, watch: ModelWatch, record: FeatureWrite | Prediction | GroundTruth
    ) -> None:
        leak = self.leaks.get(model)
        effects = leak_watch.observe(model, leak, record)
        # Points and window verdicts recur; a flag (its alert) is what must not be lost.
        self.leaks.put(model.model_id, leak, bool(effects.alerts))
        self._sink(effects.points, effects.alerts)
        if effects.evidence:
            at = effects.evidence[-1].at
            await self._act(model, watch, observe_evidence(watch, effects.evidence, at))

    async def _joins(
        self, model: Model, watch: ModelWatch, record: Prediction | GroundTruth
    ) -> None:
        join = self.joins.get(model)
        result = label_join.observe(join, record)
        self.joins.put(model.model_id, join, any(e.alarm for e in result.evidence))
        self._sink(result.points, ())
        if result.evidence:
            await self._act(model, watch, observe_evidence(watch, result.evidence, result.at))
        if model.shadow is not None:
            pairs = self.shadows.get(model)
            effects = shadow_join.observe(model, pairs, record)
            self.shadows.put(model.model_id, pairs, bool(effects.alerts))
            self._sink(effects.points, effects.alerts)
            for change in effects.promotions:
                await self._promote(model, watch, change)

    async def _act(self, model: Model, watch: ModelWatch, observation: Observation) -> None:
        """Carry out ``observation``'s consequences, and keep the watch."""
        app = self.app
        if observation:
            effects = consequences(model, watch, observation, app.keyring)
            self._sink(effects.points, effects.alerts)
            for command in effects.commands:
                await self.control.send(key=model.model_id.encode(), value=encode(command))
                app.counters.commands_sent[command.action] += 1
            for action in effects.withheld:
                app.counters.commands_withheld[action.action] += 1
        # A window that ended quietly recurs; a transition, an action or an alarm must not
        # be lost (an alarm's alert is sent once, when it starts).
        changed = bool(
            observation.transitions
            or observation.actions
            or observation.escalation_due
            or any(e.alarm for e in observation.evidence)
        )
        self.watches.put(model.model_id, watch, changed)

    async def _promote(
        self, model: Model, watch: ModelWatch, change: shadow_join.VerdictChange
    ) -> None:
        app = self.app
        if not model.fallback.automatic or app.keyring.signing_key_id is None:
            app.counters.commands_withheld["promote_shadow"] += 1
            return
        command = signed_command(
            app.keyring,
            model_id=model.model_id,
            action="promote_shadow",
            reason=change.reason,
            detector="shadow_verdict",
            issued_at=int(change.at * 1000),
            last_seq=watch.last_seq,
        )
        watch.last_seq = command.seq
        self.watches.put(model.model_id, watch, True)
        await self.control.send(key=model.model_id.encode(), value=encode(command))
        app.counters.commands_sent[command.action] += 1

    def _sink(self, points: Sequence[Point], alerts: Sequence[Alert]) -> None:
        for point_ in points:
            self.app.influx.enqueue(point_)
        for alert in alerts:
            self.app.alerta.enqueue(alert)


def _add_routed_writes_agent(
    app: FailsoftApp, writes_by_model: faust.TopicT, watcher: _Watcher
) -> None:
    """Each model's leak watch gets the writes of its features, on the model's partition.

    Its values are batches of feature writes the ingest agent validated and encoded, so
    one that does not decode is a bug and raises.
    """
    models = app.portfolio.models

    async def routed_writes(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            writes = _WRITE_BATCH.decode(event.value)
            await watcher.on_routed_writes(models[event.key.decode()], writes)

    app.agent(writes_by_model, name="routed-writes")(routed_writes)


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
