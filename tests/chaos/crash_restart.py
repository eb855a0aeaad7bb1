"""Kill the broker hard and start it again quickly, several times, while a consumer group
commits; after each start, check that a new group can join and commit.

Reproduces the group coordinator that stuck in chaos seed 5 (see the README's "Faults").
It kills the broker of the stack the ``FAILSOFT_*`` settings name: run it on a private
stack only::

    python -m tests.chaos.crash_restart --rounds 5 --delay 2.5
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import threading
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.kafka_security import quiet_logger
from streams.settings import Settings
from streams.stack import SERVERS, faults

PROBE_TIMEOUT_S = 180.0
QUIET = quiet_logger("failsoft.chaos.crash_restart")
# What the broker's log says about the coordinator of __consumer_offsets-0 in a round.
LOG_MARKERS = {
    "duplicate_registration": "DUPLICATE_BROKER_REGISTRATION",
    "coordinator_out_of_sync": "is out of sync with the underlying log",
    "load_ignored_failed": "because context is in FAILED state",
}
LOAD_EPOCH = re.compile(
    r"Scheduling loading of metadata from __consumer_offsets-0 with epoch (\d+)"
)
_STAMP = r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] "
_ACTIVATED = re.compile(_STAMP + r".*Becoming the active controller", re.M)
_LOADED = re.compile(_STAMP + r".*Finished loading of metadata from __consumer_offsets-0 ", re.M)
_UNLOADING = re.compile(
    _STAMP + r".*Scheduling unloading of metadata for __consumer_offsets-0", re.M
)
# Seed 5's start after the broker's SIGKILL, as its log had it (shortened).
SEED_5_LOG = """\
[2026-12-03 21:09:06,463] INFO [QuorumController id=1] Becoming the active controller at epoch 4
[2026-12-03 21:09:18,300] INFO Scheduling loading of metadata from __consumer_offsets-0 with epoch 6
[2026-12-03 21:09:18,503] INFO Scheduling unloading of metadata for __consumer_offsets-0 epoch 7
[2026-12-03 21:09:19,307] INFO Scheduling loading of metadata from __consumer_offsets-0 with epoch 8
[2026-12-03 21:09:19,404] INFO Finished loading of metadata from __consumer_offsets-0 with epoch 6
"""


def _seconds(stamp: str) -> float:
    return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def load_margin(log: str) -> float | None:
    """Seconds from the end of the group coordinator's first load of
    ``__consumer_offsets-0`` in a start's log (after a crash, at the leader epoch the
    node had when it died) to the first unload scheduled after that load began (the
    fence of the dead incarnation brings it); negative when the unload came while the
    load still ran, the race that left the coordinator failed in seed 5. None when no
    unload followed the load.

    >>> load_margin(SEED_5_LOG)
    -0.901
    """
    activated = _ACTIVATED.search(log)
    scheduled = LOAD_EPOCH.search(log, activated.end() if activated else 0)
    if scheduled is None:
        return None
    loaded = _LOADED.search(log, scheduled.end())
    unloading = _UNLOADING.search(log, scheduled.end())
    if loaded is None or unloading is None:
        return None
    return round(_seconds(unloading.group(1)) - _seconds(loaded.group(1)), 3)


class Committer(threading.Thread):
    """A group member that commits every 20 ms, as the workers' ingest group does."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.stopping = threading.Event()
        self.commits = 0

    def run(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"crash-restart-committer-{uuid.uuid4().hex[:6]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            },
            logger=QUIET,
        )
        consumer.subscribe([self.topic])
        offset = 0
        while not self.stopping.is_set():
            consumer.poll(0.02)
            offset += 1
            try:
                consumer.commit(offsets=[TopicPartition(self.topic, 0, offset)], asynchronous=False)
                self.commits += 1
            except KafkaException:
                time.sleep(0.2)
        consumer.close()


def probe(bootstrap: str, topic: str, timeout_s: float) -> float | None:
    """Seconds until a new group's member is assigned and its commit succeeds; None if
    that did not happen within ``timeout_s``."""
    began = time.monotonic()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"crash-restart-probe-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        },
        logger=QUIET,
    )
    consumer.subscribe([topic])
    try:
        while time.monotonic() - began < timeout_s:
            consumer.poll(0.5)
            if not consumer.assignment():
                continue
            try:
                consumer.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
            except KafkaException as error:
                code = error.args[0].code() if error.args else None
                if code not in (
                    KafkaError.NOT_COORDINATOR,
                    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                ):
                    print(f"  probe commit: {error}")
                time.sleep(0.5)
                continue
            return time.monotonic() - began
        return None
    finally:
        consumer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--delay", type=float, default=2.5, help="seconds from kill to start")
    parser.add_argument("--report", default=None, help="a JSON file for the rounds")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    kafka = SERVERS["kafka"]
    print(kafka.start(settings))
    bootstrap = settings.kafka_bootstrap
    topic = f"crash-restart-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": bootstrap}, logger=QUIET)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap}, logger=QUIET)
    for index in range(1000):
        producer.produce(topic, str(index).encode())
    producer.flush(30)
    committer = Committer(bootstrap, topic)
    committer.start()
    log = kafka.log(settings)
    rounds: list[dict[str, Any]] = []
    for number in range(1, args.rounds + 1):
        time.sleep(5.0)  # commits pile up in __consumer_offsets-0 between rounds
        log_start = log.stat().st_size
        faults.kill(settings, "kafka")
        time.sleep(args.delay)
        began = time.monotonic()
        kafka.start(settings)
        started = time.monotonic() - began
        joined = probe(bootstrap, topic, PROBE_TIMEOUT_S)
        with log.open("rb") as handle:
            handle.seek(log_start)
            text = handle.read().decode(errors="replace")
        result: dict[str, Any] = {
            "round": number,
            "start_s": round(started, 1),
            "group_joined_and_committed_s": None if joined is None else round(joined, 1),
            "coordinator_load_epochs": [int(epoch) for epoch in LOAD_EPOCH.findall(text)],
            "first_load_to_unload_s": load_margin(text),
            **{name: text.count(marker) for name, marker in LOG_MARKERS.items()},
        }
        rounds.append(result)
        print(json.dumps(result), flush=True)
    committer.stopping.set()
    committer.join(10)
    admin.delete_topics([topic])[topic].result(30)
    if args.report:
        with open(args.report, "w") as out:
            json.dump(rounds, out, indent=1)
    stuck = [result["round"] for result in rounds if result["group_joined_and_committed_s"] is None]
    print(f"rounds: {len(rounds)}, a group could not join and commit after rounds {stuck}")
    return 1 if stuck else 0


if __name__ == "__main__":
    raise SystemExit(main())
