"""The topic catalogue, and ``failsoft topics create|list``.

Every topic failsoft reads or writes, with its key, partitions and the configs that matter:
the control topic is compacted (a node that starts learns every model's current command),
the others are deleted by age. ``ensure_topics`` creates what is missing and corrects what
drifted, and reports each change; running it again changes nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from streams.settings import Settings

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

_DAY_MS = 24 * 3600 * 1000
# How long a command waits for the brokers' first answer before it gives up, in one line.
KAFKA_PROBE_TIMEOUT_S = 10.0
# Measured: a leak watch of 10,000 entities pickles to 3.2 MB (streams.monitor.leak_watch),
# and a model's monitor holds one.
MAX_STATE_BYTES = 16 * 1024 * 1024
# A changelog segment holds a model's largest checkpoint at least twice.
CHANGELOG_SEGMENT_BYTES = 2 * MAX_STATE_BYTES
# A worker's state table (streams.worker.app): one pickled monitor per model, with its
# changelog topic.
STATE_TABLE = "model-monitor"
# librdkafka's name for Kafka's default partitioner, murmur2 of the key (Java clients and
# aiokafka, hence Faust, use it). Every producer of a model-keyed topic must use it: a
# model_id then lands on the same partition number of each, and one worker holds all of
# the model's state (see streams.worker.app).
KEY_PARTITIONER = "murmur2_random"


@dataclasses.dataclass(frozen=True)
class TopicSpec:
    """One topic: its name without the prefix, key, contract and broker configs."""

    suffix: str
    key: str
    contract: str
    partitions: int
    configs: Mapping[str, str]
    purpose: str

    def name(self, settings: Settings) -> str:
        return settings.topic_prefix + self.suffix


PREDICTIONS = TopicSpec(
    suffix="predictions",
    key="model_id",
    contract="prediction",
    partitions=6,
    configs={"cleanup.policy": "delete", "retention.ms": str(7 * _DAY_MS)},
    purpose="what each model answered; kept a week, the workers keep joined state longer",
)
FEATURE_WRITES = TopicSpec(
    suffix="feature-writes",
    key="entity_id",
    contract="feature_write",
    partitions=6,
    configs={"cleanup.policy": "delete", "retention.ms": str(7 * _DAY_MS)},
    purpose="feature store writes, for write-lag and leak detectors",
)
GROUND_TRUTH = TopicSpec(
    suffix="ground-truth",
    key="model_id",
    contract="ground_truth",
    partitions=6,
    configs={"cleanup.policy": "delete", "retention.ms": str(35 * _DAY_MS)},
    purpose="late outcomes; kept beyond the longest label delay (weeks) for replays",
)
CONTROL = TopicSpec(
    suffix="control",
    key="model_id",
    contract="control_command",
    # One partition: a node reads every model, and one log keeps the bootstrap simple.
    partitions=1,
    configs={
        "cleanup.policy": "compact",
        # Compact often, so a starting node reads about one command per model.
        "segment.ms": str(3600 * 1000),
        "min.cleanable.dirty.ratio": "0.1",
        # Tombstones are ignored by nodes (unsigned), but must not linger forever.
        "delete.retention.ms": str(_DAY_MS),
    },
    purpose="signed fallback/restore commands; compacted so a node learns every model's state",
)
DEAD_LETTERS = TopicSpec(
    suffix="dead-letters",
    key="source topic",
    contract="dead_letter",
    partitions=1,
    configs={"cleanup.policy": "delete", "retention.ms": str(14 * _DAY_MS)},
    purpose="every consumed message that could not be used, with the field and reason",
)

CATALOGUE: tuple[TopicSpec, ...] = (
    PREDICTIONS,
    FEATURE_WRITES,
    GROUND_TRUTH,
    CONTROL,
    DEAD_LETTERS,
)


def writes_by_model(settings: Settings) -> TopicSpec:
    """A worker app's internal topic: feature writes forwarded to the partition of the model
    that monitors them when another worker holds it, one message per model and batch. The
    app's own, like its tables' changelogs, so that two apps on one topic prefix do not
    feed each other's leak watches."""
    return TopicSpec(
        suffix=f"{settings.worker_app_id}-feature-writes-by-model",
        key="model_id",
        contract="feature_write (a JSON array of them per message)",
        partitions=PREDICTIONS.partitions,
        configs=FEATURE_WRITES.configs,
        purpose="feature writes regrouped by model, for the leak watch",
    )


def changelog(settings: Settings, table: str) -> TopicSpec:
    """The changelog of a worker app's state table: Faust's name for it, with the prefix
    (``streams.worker.naming``)."""
    return TopicSpec(
        suffix=f"{settings.worker_app_id}-{table}-changelog",
        key="model_id",
        contract=f"the pickled {table} state of a model",
        partitions=PREDICTIONS.partitions,
        configs={
            "cleanup.policy": "compact",
            "max.message.bytes": str(MAX_STATE_BYTES),
            # Kafka compacts only closed segments, and by default a segment closes at 1 GiB
            # or after 7 days: until then a restoring worker reads every checkpoint ever
            # written to the partition (767 MB for 20 models after 17 minutes of the soak,
            # tests/benchmarks/bench_soak.py). Small segments bound what a restore reads to
            # about the latest state of each model plus one segment per partition.
            "segment.bytes": str(CHANGELOG_SEGMENT_BYTES),
        },
        purpose=f"restores the {table} table after a restart or a rebalance",
    )


def leader(settings: Settings) -> TopicSpec:
    """The topic by which Faust elects one worker of an app to run the leader's timers:
    Faust's name for it, with the prefix (``streams.worker.naming``)."""
    return TopicSpec(
        suffix=f"{settings.worker_app_id}-__assignor-__leader",
        key="none",
        contract="Faust's own (nothing is written to it)",
        partitions=1,
        configs={},
        purpose="the app's leader election (Faust's LeaderAssignor)",
    )


def worker_topics(settings: Settings) -> tuple[TopicSpec, ...]:
    """Every topic a worker app reads or writes, which it creates before Faust's consumer
    starts: that consumer subscribes before Faust declares the app's internal topic and
    its tables' changelogs, and ignores a topic missing then for the rest of the run (in
    CI runs the leak watch never saw a feature write, and every write to a table whose
    changelog was missing crashed the agent that made it). Faust would create its
    leader-election topic itself, and wait for that; it is here so that the list is every
    topic of a worker app, with the prefix."""
    return (
        *CATALOGUE,
        writes_by_model(settings),
        changelog(settings, STATE_TABLE),
        leader(settings),
    )


@dataclasses.dataclass(frozen=True)
class TopicChange:
    """What ``ensure_topics`` did to one topic; ``changes`` is empty when it was in order."""

    topic: str
    action: str  # "created", "updated" or "unchanged"
    changes: tuple[str, ...] = ()

    def __str__(self) -> str:
        detail = f": {'; '.join(self.changes)}" if self.changes else ""
        return f"{self.action} {self.topic}{detail}"


def admin_client(settings: Settings) -> AdminClient:
    from confluent_kafka.admin import AdminClient

    from streams.kafka_security import librdkafka_security, quiet_logger

    return AdminClient(
        {"bootstrap.servers": settings.kafka_bootstrap, **librdkafka_security(settings)},
        logger=quiet_logger("failsoft.kafka.admin"),
    )


def ensure_topics(
    settings: Settings,
    catalogue: tuple[TopicSpec, ...] = CATALOGUE,
    admin: AdminClient | None = None,
    timeout: float = 30.0,
) -> list[TopicChange]:
    """Create missing topics; raise partitions and reset configs that differ. Idempotent.

    Partitions are never reduced (Kafka cannot); a topic with more partitions than the
    catalogue says is reported and left alone. Replication is the broker's default
    (``default.replication.factor``), so one catalogue serves a single node and a cluster.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import (
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        NewPartitions,
        NewTopic,
        ResourceType,
    )

    admin = admin or admin_client(settings)
    existing = admin.list_topics(timeout=timeout).topics
    report: list[TopicChange] = []
    for spec in catalogue:
        name = spec.name(settings)
        if name not in existing:
            new = NewTopic(name, num_partitions=spec.partitions, config=dict(spec.configs))
            try:
                _result(admin.create_topics([new], request_timeout=timeout)[name], timeout)
            except KafkaException as error:
                # Created meanwhile (by another process, or our metadata was stale).
                if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
            else:
                configs = ", ".join(f"{key}={value}" for key, value in spec.configs.items())
                change = TopicChange(name, "created", (f"{spec.partitions} partitions", configs))
                report.append(change)
                continue
        changes: list[str] = []
        partitions = len(existing[name].partitions) if name in existing else spec.partitions
        if partitions < spec.partitions:
            grow = NewPartitions(name, spec.partitions)
            _result(admin.create_partitions([grow], request_timeout=timeout)[name], timeout)
            changes.append(f"partitions {partitions} -> {spec.partitions}")
        elif partitions > spec.partitions:
            changes.append(f"has {partitions} partitions, catalogue says {spec.partitions}: left")
        current = _topic_configs(admin, ConfigResource(ResourceType.TOPIC, name), timeout)
        drifted = {
            key: value
            for key, value in spec.configs.items()
            if key not in current or current[key].value != value
        }
        if drifted:
            entries = [
                ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
                for key, value in drifted.items()
            ]
            altered = ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
            _result(
                admin.incremental_alter_configs([altered], request_timeout=timeout)[altered],
                timeout,
            )
            for key, value in drifted.items():
                before = current[key].value if key in current else None
                changes.append(f"{key} {before} -> {value}")
        action = "updated" if any("->" in change for change in changes) else "unchanged"
        report.append(TopicChange(name, action, tuple(changes)))
    return report


def _result(future: Any, timeout: float) -> Any:
    return future.result(timeout=timeout)


def _topic_configs(admin: AdminClient, resource: Any, timeout: float) -> Any:
    """The topic's configs, waiting out a topic that another process has only just created.

    Two workers starting together both try to create a missing topic; the one that loses
    gets TOPIC_ALREADY_EXISTS, and then, until the controller's metadata reaches the
    broker, UNKNOWN_TOPIC_OR_PART when it describes it.
    """
    from confluent_kafka import KafkaError, KafkaException

    deadline = time.monotonic() + timeout
    while True:
        described = admin.describe_configs([resource], request_timeout=timeout)
        try:
            return _result(described[resource], timeout)
        except KafkaException as error:
            unknown = error.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
            if not unknown or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("topics", help="the topic catalogue")
    actions = parser.add_subparsers(dest="topics_command", required=True)
    create = actions.add_parser(
        "create", help="create or correct every topic (idempotent); prints what changed"
    )
    create.set_defaults(handler=_create)
    listing = actions.add_parser("list", help="print the catalogue")
    listing.set_defaults(handler=_list)


def _create(args: argparse.Namespace, settings: Settings) -> int:
    from confluent_kafka import KafkaException

    from streams.kafka_security import describe, probe

    unreachable = probe(settings, KAFKA_PROBE_TIMEOUT_S)
    if unreachable is not None:
        print(f"failsoft topics: {unreachable}", file=sys.stderr)
        return 1
    try:
        report = ensure_topics(settings)
    except KafkaException as error:
        print(f"failsoft topics: {describe(settings)}: {error}", file=sys.stderr)
        return 1
    for change in report:
        print(change)
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    for spec in CATALOGUE:
        configs = " ".join(f"{key}={value}" for key, value in spec.configs.items())
        print(
            f"{spec.name(settings)}  key={spec.key}  contract={spec.contract}  "
            f"partitions={spec.partitions}  {configs}\n    {spec.purpose}"
        )
    return 0
