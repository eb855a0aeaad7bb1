"""A seeded chaos run: the chaos scenario through simulator, workers, a serving node and
the sinks, while a seeded schedule of faults hits them; then invariants, from outside.

    python -m tests.chaos.run --seed 1 --report chaos-1.json     # FAILSOFT_* settings

It kills and restarts the stack's servers named by the settings (through their pid files,
``streams.stack``), so point it at a stack of its own, never a shared one. It leaves every
server up and healthy when it ends. The run (``DemoRun`` does the common steps):

1. topics, a key pair and the portfolio of its own; one worker (``failsoft worker``, a
   child process); the serving node (``tests.chaos.node``, a child process); the taps of
   the control topic and Alerta; a poison producer (a malformed record on each input
   topic every ``POISON_EVERY_S``); a scraper of every worker's ``/metrics``; the
   simulator playing ``tests/chaos/scenario.toml``;
2. the faults of ``tests.chaos.schedule.plan(seed)``, each recorded with when it was
   injected and when it had recovered: a worker SIGKILLed and restarted (twice), the
   broker stopped with SIGTERM and with SIGKILL and started again, the broker paused with
   SIGSTOP for 15 s, a second worker joining and then leaving, and InfluxDB and Alerta
   each down for 30 s while one of the others is on. A worker that exits by itself is
   restarted, as its supervisor would, and recorded as a finding; so is a server whose
   process is gone outside its own faults (``ServerWatch``), so that the run goes on;
3. once the scenario is played and the workers have committed every input record, the
   invariants (``tests.chaos.invariants``), read with clients of their own: the control
   topic, the input and dead-letter topics, the ingest group's offsets, Alerta and
   InfluxDB, beside the workers' books and the node's own record. A check whose reads fail
   (a server down, a topic read short) fails with the error; the others are still judged;
4. a JSON report: the seed, the planned schedule, every fault and every invariant.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from streams.demo.report import (
    DETECTORS_BY_KIND,
    InjectedIncident,
    Switch,
    build_report,
)
from streams.demo.run import DETECTION_BOUNDS_S, DemoOptions, DemoRun, node_settings, settings_env
from streams.settings import Settings
from streams.simulate.timeline import iso_utc
from streams.stack import SERVERS, free_port, up
from streams.stack import faults as server_faults
from tests.chaos.invariants import (
    ControlRecord,
    Invariant,
    Window,
    books_balance,
    commands_once,
    extended_bounds_s,
    group_ready,
    percentile,
    serving_p99,
)
from tests.chaos.schedule import PlannedFault, plan

SCENARIO = Path(__file__).with_name("scenario.toml")
# The node reads the mode of this model of the scenario's portfolio on every call.
NODE_READS = "fraud-001"
# The worker's control signing key for the run (a node gets only its public key).
WORKER_KEY = "chaos=" + "c4" * 32
ALERTA_ENVIRONMENT = "Production"

READY_TIMEOUT_S = 300.0
RECOVERY_TIMEOUT_S = 240.0
DRAIN_TIMEOUT_S = 420.0
SETTLE_S = 20.0
SCRAPE_EVERY_S = 1.0
POISON_EVERY_S = 3.0
CHILD_STOP_TIMEOUT_S = 60.0
BOOKS_FRESH_MS = 2_000
NODE_START_TIMEOUT_S = 90.0
WATCH_EVERY_S = 2.0
READ_TIMEOUT_S = 300.0
# The faults that take each server's process down; outside them it must be running.
SERVER_FAULTS = {
    "kafka": frozenset({"broker_sigterm", "broker_sigkill"}),
    "influxdb": frozenset({"influxdb_outage"}),
    "alerta": frozenset({"alerta_outage"}),
    "postgres": frozenset(),
}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclasses.dataclass
class FaultRecord:
    kind: str
    planned: PlannedFault | None
    injected_ms: int
    recovered_ms: int | None = None
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: str | None = None

    @property
    def window(self) -> Window:
        return Window(self.kind, self.injected_ms, self.recovered_ms or now_ms())

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "planned": None if self.planned is None else self.planned.to_json(),
            "injected_at": iso_utc(self.injected_ms),
            "recovered_at": None if self.recovered_ms is None else iso_utc(self.recovered_ms),
            "down_s": None
            if self.recovered_ms is None
            else round((self.recovered_ms - self.injected_ms) / 1000, 1),
            "detail": self.detail,
            "error": self.error,
        }


class ServerWatch:
    """Tells when a server is down and the schedule did not do it: its process gone at two
    looks in a row, both outside its faults. One look is not enough: a fault's record is
    made before its stop, but a look may find the process gone just before the fault
    that started it again is recorded as recovered.

    >>> watch = ServerWatch()
    >>> [watch.down("kafka", alive=False, in_fault=True), watch.down("kafka", False, False)]
    [False, False]
    >>> watch.down("kafka", alive=False, in_fault=False)
    True
    >>> watch.down("kafka", alive=True, in_fault=False), watch.down("kafka", False, False)
    (False, False)
    """

    def __init__(self) -> None:
        self._gone: set[str] = set()

    def down(self, server: str, alive: bool, in_fault: bool) -> bool:
        if alive or in_fault:
            self._gone.discard(server)
            return False
        if server in self._gone:
            self._gone.discard(server)
            return True
        self._gone.add(server)
        return False


class Worker:
    """One incarnation of a ``failsoft worker`` process, and what its ``/metrics`` said."""

    def __init__(
        self, name: str, settings: Settings, log: Path, incarnation: int, loglevel: str = "warning"
    ) -> None:
        self.name = name
        self.settings = settings
        self.incarnation = incarnation
        self.started_ms = now_ms()
        self.ended_ms: int | None = None
        self.ended_by: str | None = None
        self.books: dict[str, dict[str, float]] = {}
        self.sinks: dict[str, dict[str, float]] = {}
        self.lag_records = 0.0
        self.partitions = 0.0
        self.scrapes = 0
        self.last_scrape_ms = 0
        self.unbalanced: list[Any] = []
        # (epoch ms, sink -> items buffered) at each scrape.
        self.buffered: list[tuple[int, dict[str, float]]] = []
        # Per sink, whether a spool file of this process was in the shared folder when it
        # exited: a sink deletes its own at its stop only once it holds nothing.
        self.spool_left: dict[str, bool] = {}
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--loglevel", loglevel],
            env=settings_env(settings),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.settings.worker_web_port}{path}"

    def scrape(self) -> bool:
        """Read ``/metrics`` once into the books; False when it did not answer."""
        from prometheus_client.parser import text_string_to_metric_families

        try:
            with urllib.request.urlopen(self.url("/metrics"), timeout=10) as response:
                text = response.read().decode()
        except OSError:
            return False
        books: dict[str, dict[str, float]] = {}
        sinks: dict[str, dict[str, float]] = {}
        lag = partitions = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                name, labels, value = sample.name, sample.labels, sample.value
                for book in ("consumed", "processed", "dead_lettered"):
                    if name == f"failsoft_messages_{book}_total":
                        counts = books.setdefault(
                            labels["topic"],
                            {"consumed": 0.0, "processed": 0.0, "dead_lettered": 0.0},
                        )
                        counts[book] += value
                if name.startswith("failsoft_sink_") and "sink" in labels:
                    field = name.removeprefix("failsoft_sink_").removesuffix("_total")
                    sinks.setdefault(labels["sink"], {})[field] = value
                if name == "failsoft_lag_records":
                    lag += value
                if name == "failsoft_partitions_assigned":
                    partitions = value
        checked, failures = books_balance([books])
        self.scrapes += checked
        self.unbalanced += failures
        self.books, self.sinks, self.lag_records = books, sinks, lag
        self.partitions = partitions
        self.last_scrape_ms = now_ms()
        self.buffered.append(
            (now_ms(), {sink: stats.get("buffered", 0.0) for sink, stats in sinks.items()})
        )
        return True

    def models(self) -> list[dict[str, Any]] | None:
        try:
            with urllib.request.urlopen(self.url("/failsoft/models"), timeout=60) as response:
                models: list[dict[str, Any]] = json.load(response)["models"]
        except (OSError, ValueError, KeyError):
            return None
        return models

    def kill(self) -> None:
        """SIGKILL, right after a last scrape (the books it dies with, give or take a read)."""
        self.scrape()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(CHILD_STOP_TIMEOUT_S)
        self._ended("SIGKILL")

    def stop(self) -> None:
        """SIGTERM, scraping until it no longer answers: its reader stops (and commits) before
        its web server does, so the last answer carries its final books."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + CHILD_STOP_TIMEOUT_S
        while self.process.poll() is None and time.monotonic() < deadline:
            self.scrape()
            time.sleep(0.05)
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(CHILD_STOP_TIMEOUT_S)
            self._ended("SIGTERM, then SIGKILL after 60 s")
        else:
            self._ended("SIGTERM")

    def _ended(self, how: str) -> None:
        self.ended_ms = now_ms()
        self.ended_by = how
        self._log.close()
        if self.settings.worker_spool_dir:
            folder = Path(self.settings.worker_spool_dir)
            self.spool_left = {
                sink: any(folder.glob(f"{sink}.*-{self.process.pid}-*.jsonl"))
                for sink in ("alerta", "influxdb")
            }

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "incarnation": self.incarnation,
            "started_at": iso_utc(self.started_ms),
            "ended_at": None if self.ended_ms is None else iso_utc(self.ended_ms),
            "ended_by": self.ended_by,
            "exit_code": self.process.returncode,
            "scrapes": self.scrapes,
            "books": self.books,
            "sinks": self.sinks,
        }


class ChaosRun:
    def __init__(
        self, settings: Settings, seed: int, run_dir: Path, say: Callable[[str], None] = print
    ) -> None:
        self.seed = seed
        self.say = say
        self.run_dir = run_dir
        self.plan = plan(seed)
        settings = dataclasses.replace(
            settings,
            control_private_key=WORKER_KEY,
            control_private_key_file="",
            alerta_environment=ALERTA_ENVIRONMENT,
        )
        options = DemoOptions(
            scenario=SCENARIO, run_id=f"chaos-{seed}-{os.urandom(3).hex()}", run_dir=run_dir
        )
        self.demo = DemoRun(settings, options, say=say)
        self.workers: list[Worker] = []
        self.faults: list[FaultRecord] = []
        self.findings: list[dict[str, Any]] = []
        self.node: subprocess.Popen[bytes] | None = None
        self.node_out = run_dir / "node.json"
        self._node_log: IO[bytes] | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._expected_exit: set[int] = set()
        self._judging = threading.Event()
        self.poison_sent: collections.Counter[str] = collections.Counter()
        self.started_ms = 0
        self.ended_ms = 0

    @property
    def settings(self) -> Settings:
        return self.demo.settings

    # Workers.

    def worker_settings(self, name: str) -> Settings:
        # One spool folder for the group, as on one host: what a worker that left during an
        # outage spooled is sent by one that stayed (streams.sinks.buffer).
        shared = dataclasses.replace(self.settings, worker_spool_dir=str(self.run_dir / "spool"))
        if name == "a":
            return shared
        return dataclasses.replace(
            shared,
            worker_web_port=free_port(),
            worker_data_dir=self.run_dir / f"worker-{name}",
        )

    def start_worker(
        self, name: str, settings: Settings | None = None, loglevel: str = "warning"
    ) -> Worker:
        incarnation = 1 + sum(1 for w in self.workers if w.name == name)
        settings = settings or self.worker_settings(name)
        log = self.run_dir / f"worker-{name}.log"
        worker = Worker(name, settings, log, incarnation, loglevel)
        with self._lock:
            self.workers.append(worker)
        return worker

    def live(self, name: str | None = None) -> list[Worker]:
        with self._lock:
            return [
                w for w in self.workers if w.ended_ms is None and (name is None or w.name == name)
            ]

    def group_members(self) -> int | None:
        """Members of the workers' consumer group once it is stable, else None."""
        from confluent_kafka import ConsumerGroupState, KafkaException

        from streams.topics import admin_client

        group = self.settings.worker_app_id
        # A client of its own each time: one that lived through a broker's SIGKILL was seen
        # to keep failing after the broker and the group were back.
        try:
            admin = admin_client(self.settings)  # held: its futures die with it
            description = admin.describe_consumer_groups([group])[group].result(timeout=10)
        except (KafkaException, TimeoutError):
            return None
        if description.state != ConsumerGroupState.STABLE:
            return None
        return len(description.members)

    def wait_until(self, what: str, ready: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
            time.sleep(1.0)

    def wait_workers_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Every live worker answers ``/metrics``, the group is stable with all of them in
        it, and their readers hold every partition (``group_ready``). (``/failsoft/models``
        can take seconds while a worker works off a backlog.)"""
        from streams.topics import PREDICTIONS

        def ready() -> bool:
            live = self.live()
            if not all(w.scrape() for w in live):
                return False
            assigned = [w.partitions for w in live]
            return group_ready(self.group_members(), assigned, PREDICTIONS.partitions)

        self.wait_until("workers ready", ready, timeout_s)

    # Start.

    def start(self) -> None:
        demo = self.demo
        demo.prepare()
        self.start_worker("a")
        self.wait_workers_ready()
        self.say(f"chaos: worker ready on port {self.settings.worker_web_port}")
        self.start_node()
        demo.start_taps(None, None)
        self._thread(self._scrape, "chaos-scraper")
        self._thread(self._watch_servers, "chaos-server-watch")
        self._thread(self._poison, "chaos-poison")
        demo.start_simulator()
        self.started_ms = now_ms()
        self.say(f"chaos: seed {self.seed}, scenario playing; plan {self.plan}")

    def start_node(self) -> None:
        self._node_log = (self.run_dir / "node.log").open("ab")
        self.node = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.chaos.node",
                "--model",
                NODE_READS,
                "--out",
                str(self.node_out),
            ],
            env=settings_env(node_settings(self.settings)),
            stdout=self._node_log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        ready = self.node_out.with_suffix(".ready")
        self.wait_until(
            "serving node",
            lambda: ready.exists() or self.node is None or self.node.poll() is not None,
            NODE_START_TIMEOUT_S,
        )
        if not ready.exists():
            raise RuntimeError(f"the serving node failed; see {self.run_dir / 'node.log'}")

    def _thread(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _scrape(self) -> None:
        while not self._stopping.wait(SCRAPE_EVERY_S):
            for worker in self.live():
                worker.scrape()

    def _poison(self) -> None:
        """A malformed record on each input topic every ``POISON_EVERY_S``: dead letters of
        every input topic, whatever the faults."""
        from confluent_kafka import Producer

        from streams.topics import FEATURE_WRITES, GROUND_TRUTH, PREDICTIONS

        producer = Producer(
            {
                "bootstrap.servers": self.settings.kafka_bootstrap,
                "acks": "all",
                "message.timeout.ms": 600_000,
                "partitioner": "murmur2_random",
            }
        )
        topics = [spec.name(self.settings) for spec in (PREDICTIONS, GROUND_TRUTH, FEATURE_WRITES)]
        count = 0
        while not self._stopping.wait(POISON_EVERY_S):
            for topic in topics:
                count += 1
                value = (
                    b'{"schema_version": 1, "model_id": "fraud-001", "trunc' + str(count).encode()
                )
                producer.produce(topic, value=value, key=b"fraud-001")
                self.poison_sent[topic] += 1
            producer.poll(0)
        producer.flush(120)

    # Faults.

    def inject_all(self) -> None:
        main = [fault for fault in self.plan if fault.overlaps is None]
        outages = [fault for fault in self.plan if fault.overlaps is not None]
        previous_recovered = 0.0
        for index, fault in enumerate(main):
            at = max(
                self.started_ms / 1000 + fault.at_s,
                previous_recovered + 8.0 if previous_recovered else 0.0,
            )
            self._sleep_until(at)
            for outage in outages:
                if outage.overlaps == index:
                    timer = threading.Timer(outage.at_s, self._outage, (outage,))
                    timer.daemon = True
                    timer.start()
                    self._threads.append(timer)
            self._inject(fault)
            previous_recovered = time.time()
        for thread in self._threads:
            if isinstance(thread, threading.Timer):
                thread.join()

    def _sleep_until(self, epoch_s: float) -> None:
        while time.time() < epoch_s:
            self.supervise()
            time.sleep(min(0.5, max(0.0, epoch_s - time.time())))

    def _record(self, kind: str, planned: PlannedFault | None, **detail: Any) -> FaultRecord:
        record = FaultRecord(kind, planned, now_ms(), detail=dict(detail))
        with self._lock:
            self.faults.append(record)
        self.say(f"chaos: {kind} injected {detail}")
        return record

    def _recovered(self, record: FaultRecord) -> None:
        record.recovered_ms = now_ms()
        self.say(
            f"chaos: {record.kind} recovered after "
            f"{(record.recovered_ms - record.injected_ms) / 1000:.1f} s"
        )

    def _inject(self, fault: PlannedFault) -> None:
        handler = {
            "worker_sigkill": self._worker_sigkill,
            "broker_sigterm": self._broker_restart,
            "broker_sigkill": self._broker_restart,
            "broker_pause": self._broker_pause,
            "worker_join_leave": self._worker_join_leave,
        }[fault.kind]
        try:
            handler(fault)
        except Exception as error:  # recorded, and the run goes on to its invariants
            with self._lock:
                record = self.faults[-1] if self.faults else None
            if record is not None and record.kind == fault.kind and record.recovered_ms is None:
                record.error = f"{type(error).__name__}: {error}"
            self.say(f"chaos: {fault.kind} failed: {error}")

    def _worker_sigkill(self, fault: PlannedFault) -> None:
        (worker,) = self.live("a")
        record = self._record(fault.kind, fault, pid=worker.process.pid)
        self._expected_exit.add(worker.process.pid)
        worker.kill()
        time.sleep(fault.hold_s)
        self.start_worker("a", worker.settings)
        self.wait_workers_ready(RECOVERY_TIMEOUT_S)
        self._recovered(record)

    def _broker_restart(self, fault: PlannedFault) -> None:
        kafka = SERVERS["kafka"]
        pid = kafka.pid_file(self.settings).live_pid()
        record = self._record(fault.kind, fault, pid=pid)
        if fault.kind == "broker_sigkill":
            server_faults.kill(self.settings, "kafka")
        else:
            record.detail["stop"] = kafka.stop(self.settings)
        time.sleep(fault.hold_s)
        record.detail["start"] = kafka.start(self.settings)
        record.detail["broker_up_after_s"] = round((now_ms() - record.injected_ms) / 1000, 1)
        self.wait_workers_ready(RECOVERY_TIMEOUT_S)
        self._recovered(record)

    def _broker_pause(self, fault: PlannedFault) -> None:
        pid = server_faults.pause(self.settings, "kafka")
        record = self._record(fault.kind, fault, pid=pid)
        try:
            time.sleep(fault.hold_s)
        finally:
            server_faults.resume(self.settings, "kafka")
        record.detail["resumed_after_s"] = round((now_ms() - record.injected_ms) / 1000, 1)
        self.wait_workers_ready(RECOVERY_TIMEOUT_S)
        self._recovered(record)

    def _worker_join_leave(self, fault: PlannedFault) -> None:
        record = self._record(fault.kind, fault)
        joined = self.start_worker("b")
        record.detail["pid"] = joined.process.pid
        self.wait_workers_ready(RECOVERY_TIMEOUT_S)
        record.detail["joined_after_s"] = round((now_ms() - record.injected_ms) / 1000, 1)
        time.sleep(fault.hold_s)
        self._expected_exit.add(joined.process.pid)
        joined.stop()
        record.detail["left_after_s"] = round((now_ms() - record.injected_ms) / 1000, 1)
        self.wait_workers_ready(RECOVERY_TIMEOUT_S)
        self._recovered(record)

    def _outage(self, fault: PlannedFault) -> None:
        name = {"influxdb_outage": "influxdb", "alerta_outage": "alerta"}[fault.kind]
        server = SERVERS[name]
        record = self._record(fault.kind, fault, server=name)
        try:
            record.detail["stop"] = server.stop(self.settings)
            time.sleep(max(0.0, record.injected_ms / 1000 + fault.hold_s - time.time()))
            record.detail["start"] = server.start(self.settings)
            self._recovered(record)
        except Exception as error:
            record.error = f"{type(error).__name__}: {error}"
            self.say(f"chaos: {fault.kind} failed: {error}")

    def supervise(self) -> None:
        """Restart a worker that exited by itself, as its supervisor would; a finding."""
        for worker in self.live():
            if worker.alive or worker.process.pid in self._expected_exit:
                continue
            worker._ended(f"exited by itself with code {worker.process.returncode}")
            finding = {
                "what": "worker exited by itself",
                "worker": worker.name,
                "incarnation": worker.incarnation,
                "exit_code": worker.process.returncode,
                "at": iso_utc(worker.ended_ms or now_ms()),
            }
            self.findings.append(finding)
            self.say(f"chaos: {finding}; restarting it")
            if worker.name == "a":
                self.start_worker("a", worker.settings)

    def _watch_servers(self) -> None:
        watch = ServerWatch()
        while not self._judging.wait(WATCH_EVERY_S):
            for name, kinds in SERVER_FAULTS.items():
                if watch.down(name, self._running(name), self._in_fault(kinds, now_ms())):
                    self._revive(name)

    def _running(self, name: str) -> bool:
        """Whether the server's process (its pid file's) is alive."""
        return SERVERS[name].pid_file(self.settings).live_pid() is not None

    def _in_fault(self, kinds: frozenset[str], at_ms: int) -> bool:
        with self._lock:
            return any(
                record.kind in kinds
                and record.injected_ms <= at_ms
                and (record.recovered_ms is None or at_ms <= record.recovered_ms)
                for record in self.faults
            )

    def _revive(self, name: str) -> None:
        """A server down that no fault took down: a finding; started again, as its
        supervisor would, so that the run and its judge can go on."""
        finding: dict[str, Any] = {"what": "server down outside its faults", "server": name}
        finding["at"] = iso_utc(now_ms())
        try:
            finding["start"] = SERVERS[name].start(self.settings)
        except Exception as error:  # the finding says it; the judge's reads will too
            finding["start_failed"] = f"{type(error).__name__}: {error}"
        self.findings.append(finding)
        self.say(f"chaos: {finding}")

    # The end.

    def drain(self) -> None:
        """Until the simulator is done, every input record is committed by the ingest group,
        and ``SETTLE_S`` more passed (the last commands, alerts and points)."""
        simulate = self.demo._children["simulate"]
        deadline = time.monotonic() + DRAIN_TIMEOUT_S + self.demo.duration_ms / 1000
        while simulate.poll() is None:
            self.supervise()
            if time.monotonic() > deadline:
                raise TimeoutError("the simulator did not finish")
            time.sleep(1.0)
        if simulate.returncode != 0:
            self.findings.append({"what": "simulator failed", "exit_code": simulate.returncode})
        self._stopping.set()  # the poison producer flushes and stops
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while True:
            self.supervise()
            behind = self.uncommitted()
            if behind == 0:
                break
            if time.monotonic() > deadline:
                self.findings.append({"what": "not drained", "uncommitted_records": behind})
                break
            time.sleep(2.0)
        time.sleep(SETTLE_S)

    def uncommitted(self) -> int:
        """Records of the input topics after the ingest group's committed offsets."""
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.kafka_bootstrap,
                "group.id": f"{self.settings.worker_app_id}-ingest",
                "enable.auto.commit": False,
            }
        )
        try:
            partitions = [
                TopicPartition(topic, number)
                for topic in self.input_topics()
                for number in range(self.partitions(consumer, topic))
            ]
            committed = consumer.committed(partitions, timeout=30)
            behind = 0
            for tp in committed:
                _, high = consumer.get_watermark_offsets(tp, timeout=30)
                behind += high - max(tp.offset, 0)
            return behind
        except KafkaException:
            return -1
        finally:
            consumer.close()

    def input_topics(self) -> list[str]:
        from streams.topics import FEATURE_WRITES, GROUND_TRUTH, PREDICTIONS

        return [spec.name(self.settings) for spec in (PREDICTIONS, GROUND_TRUTH, FEATURE_WRITES)]

    @staticmethod
    def partitions(consumer: Any, topic: str) -> int:
        return len(consumer.list_topics(topic, timeout=30).topics[topic].partitions)

    def finish(self) -> dict[str, Any]:
        """Stop everything in order and judge the run; the report."""
        worker_models: dict[str, dict[str, Any]] = {}
        for worker in self.live():
            worker.scrape()
            for entry in worker.models() or []:
                if entry.get("state") != "unknown":
                    worker_models[entry["model_id"]] = entry
        node = self.stop_node()
        demo = self.demo
        if demo.alerta is not None:
            demo.alerta.stop()
            with contextlib.suppress(OSError):
                demo.alerta.poll()
        if demo.control is not None:
            demo.control.stop()
        for worker in self.live():
            self._expected_exit.add(worker.process.pid)
            worker.stop()
        self.ended_ms = now_ms()
        self._judging.set()
        # No fault is on now: a server not running here went down by itself.
        for name in SERVER_FAULTS:
            if not self._running(name):
                self._revive(name)
        invariants = self.judge(worker_models, node)
        return {
            "seed": self.seed,
            "scenario": str(SCENARIO.name),
            "run_id": demo.options.run_id,
            "started_at": iso_utc(self.started_ms),
            "ended_at": iso_utc(self.ended_ms),
            "plan": [fault.to_json() for fault in self.plan],
            "faults": [record.to_json() for record in self.faults],
            "findings": self.findings,
            "workers": [worker.to_json() for worker in self.workers],
            "invariants": [invariant.to_json() for invariant in invariants],
            "passed": all(invariant.passed for invariant in invariants),
        }

    def stop_node(self) -> dict[str, Any]:
        node = self.node
        if node is None:
            return {}
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGTERM)
        try:
            node.wait(CHILD_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait(10)
        self.node = None
        if self._node_log is not None:
            self._node_log.close()
        if not self.node_out.exists():
            return {}
        document: dict[str, Any] = json.loads(self.node_out.read_text())
        return document

    def close(self) -> None:
        """Stop what still runs and bring every server back up (healthy) for what follows."""
        self._stopping.set()
        self._judging.set()
        for worker in self.live():
            self._expected_exit.add(worker.process.pid)
            worker.stop()
        self.stop_node()
        with contextlib.suppress(Exception):
            server_faults.resume(self.settings, "kafka")
        up(self.settings, report=self.say)
        self.demo.close()

    # Judging.

    def judge(
        self, worker_models: dict[str, dict[str, Any]], node: dict[str, Any]
    ) -> list[Invariant]:
        windows = [record.window for record in self.faults]
        invariants = [
            self.judge_faults(),
            self.judge_incidents(node, windows),
            *judged("control", lambda: self.judge_control(worker_models, node)),
            *judged("books", lambda: self.judge_accounting(node)),
            *judged("sinks", self.judge_outages),
        ]
        serving = serving_p99(
            {int(second): samples for second, samples in node.get("latency_us", {}).items()},
            windows,
        )
        first = node.get("first_call_us", [])
        invariants.append(
            dataclasses.replace(
                serving,
                numbers={
                    **serving.numbers,
                    "first_call_after_pause_p99_us": percentile(first, 0.99) if first else None,
                },
            )
        )
        return invariants

    def judge_control(
        self, worker_models: dict[str, dict[str, Any]], node: dict[str, Any]
    ) -> list[Invariant]:
        control = read_control(self.settings)
        return [commands_once(control), self.judge_final_state(worker_models, node, control)]

    def judge_faults(self) -> Invariant:
        kinds = collections.Counter(record.kind for record in self.faults)
        planned = collections.Counter(fault.kind for fault in self.plan)
        failed = [
            record.to_json() for record in self.faults if record.error or not record.recovered_ms
        ]
        return Invariant(
            "faults: every planned fault injected and recovered, no worker exited by itself",
            kinds == planned and not failed and not self.findings,
            {
                "injected": dict(kinds),
                "planned": dict(planned),
                "failed": failed,
                "findings": self.findings,
            },
        )

    def judge_incidents(self, node: dict[str, Any], windows: Sequence[Window]) -> Invariant:
        demo = self.demo
        incidents = [InjectedIncident.from_record(r) for r in demo.timeline]
        bounds = extended_bounds_s(incidents, DETECTION_BOUNDS_S, windows)
        switches = [Switch(model, mode, at) for model, mode, at in node.get("switches", [])]
        report = build_report(
            demo.timeline,
            demo.control.snapshot() if demo.control else [],
            switches,
            demo.alerta.snapshot() if demo.alerta else [],
            scenario="chaos",
            started_at=self.started_ms,
            ended_at=self.ended_ms,
            bounds_s=bounds,
        )
        (self.run_dir / "incidents.md").write_text(report.to_markdown())
        rows = []
        for row in report.incidents:
            rows.append(
                {
                    "kind": row.kind,
                    "model": row.model,
                    "bound_s": bounds[row.kind],
                    "detected_after_s": None
                    if row.detected_at is None
                    else round((row.detected_at - row.injected_at) / 1000, 1),
                    "detector": row.detector,
                    "command_after_s": None
                    if row.command_at is None
                    else round((row.command_at - row.injected_at) / 1000, 1),
                    "alert_id": row.alert_id,
                }
            )
        return Invariant(
            "incidents: each detected within its bound plus the downtime that overlapped it",
            # The short scenario's eight models declare no SLO, so it has no latency jump
            # (as in tests/integration/test_end_to_end.py).
            {row.kind for row in report.incidents} == set(DETECTORS_BY_KIND) - {"latency_jump"}
            and all(row.detected for row in report.incidents),
            {
                "incidents": rows,
                "missed": [f"{row.kind} on {row.model}" for row in report.missed],
                "false_fallbacks": [entry.to_json() for entry in report.false_fallbacks],
            },
        )

    def judge_final_state(
        self,
        worker_models: dict[str, dict[str, Any]],
        node: dict[str, Any],
        control: Sequence[ControlRecord],
    ) -> Invariant:
        """The node's final mode of each model is what the worker's state says, and the
        worker's last seq is the control topic's."""
        modes = node.get("modes", {})
        last: dict[str, ControlRecord] = {}
        for record in sorted(control, key=lambda r: r.offset):
            last[record.model] = record
        mismatches = []
        for model in self.demo.models:
            entry = worker_models.get(model)
            if entry is None:
                mismatches.append({"model": model, "worker": "unknown"})
                continue
            serves_fallback = entry["state"] in ("fallback", "probing") and entry["automatic"]
            expected = "fallback" if serves_fallback else "live"
            node_mode = modes.get(model, "live")
            topic_seq = last[model].seq if model in last else None
            worker_seq = entry.get("last_seq") if model in last else None
            if node_mode != expected or topic_seq != worker_seq:
                mismatches.append(
                    {
                        "model": model,
                        "worker_state": entry["state"],
                        "node_mode": node_mode,
                        "worker_last_seq": entry.get("last_seq"),
                        "topic_last_seq": topic_seq,
                    }
                )
        return Invariant(
            "control: no command lost (the node's final mode is the worker's state)",
            not mismatches and bool(modes or not last),
            {"models": len(self.demo.models), "mismatches": mismatches, "node_modes": modes},
        )

    def judge_accounting(self, node: dict[str, Any]) -> list[Invariant]:
        from streams.portfolio import load_portfolio

        portfolio = load_portfolio(self.settings.portfolio_path)
        on_topics = read_inputs(self.settings, portfolio)
        letters = read_dead_letters(self.settings)
        books: dict[str, collections.Counter[str]] = {}
        unbalanced = []
        scrapes = 0
        # Books are complete when every worker's last scrape came within a second or two
        # of its end (a killed worker's last reads are otherwise unknown).
        stale = {
            f"{w.name}#{w.incarnation}": round((w.ended_ms - w.last_scrape_ms) / 1000, 1)
            for w in self.workers
            if w.ended_ms is not None and w.ended_ms - w.last_scrape_ms > BOOKS_FRESH_MS
        }
        for worker in self.workers:
            scrapes += worker.scrapes
            unbalanced += worker.unbalanced
            for topic, counts in worker.books.items():
                books.setdefault(topic, collections.Counter()).update(
                    {k: int(v) for k, v in counts.items()}
                )
        balance = Invariant(
            "books: consumed = processed + dead-lettered at every scrape of every worker",
            scrapes > 0 and not unbalanced,
            {"scrapes": scrapes, "unbalanced": unbalanced[:20]},
        )
        rows = {}
        every_record = True
        for topic in self.input_topics():
            expected = on_topics.get(topic, {"records": 0, "dead": 0})
            distinct = letters["distinct"].get(topic, 0)
            counted = books.get(topic, collections.Counter())
            excess = counted["consumed"] - expected["records"]
            rows[topic] = {
                "records_on_topic": expected["records"],
                "dead_expected": expected["dead"],
                "dead_letters_distinct": distinct,
                "dead_letters_copies": letters["copies"].get(topic, 0),
                "workers_consumed": counted["consumed"],
                "workers_processed": counted["processed"],
                "workers_dead_lettered": counted["dead_lettered"],
                "redelivered": excess,
            }
            every_record = (
                every_record
                and distinct == expected["dead"]
                and (excess >= 0 or bool(stale))
                and counted["dead_lettered"] >= expected["dead"]
                and counted["processed"] >= expected["records"] - expected["dead"]
            )
        uncommitted = self.uncommitted()
        logger = node.get("logger", {})
        node_model = rows.get(self.input_topics()[0], {})
        accounting = Invariant(
            "books: per input topic, every record consumed and processed or dead-lettered "
            "(each bad one exactly once on the dead-letter topic); redelivery counted",
            every_record and uncommitted == 0,
            {
                "topics": rows,
                "uncommitted_at_end": uncommitted,
                "books_stale_s": stale,
                "poison_sent": dict(self.poison_sent),
                "node_predictions_delivered": logger.get("delivered"),
                "node_predictions_dropped": logger.get("dropped"),
                "node_predictions_failed": logger.get("failed"),
                "predictions_dead_expected": node_model.get("dead_expected"),
            },
        )
        return [balance, accounting]

    def judge_outages(self) -> list[Invariant]:
        invariants = []
        for record in self.faults:
            if record.kind == "influxdb_outage" and record.recovered_ms:
                invariants.append(self.judge_influx_outage(record))
            elif record.kind == "alerta_outage" and record.recovered_ms:
                invariants.append(self.judge_alerta_outage(record))
        dropped = {
            f"{w.name}#{w.incarnation}": {s: st.get("dropped", 0) for s, st in w.sinks.items()}
            for w in self.workers
        }
        invariants.append(
            Invariant(
                "sinks: nothing dropped by any worker's sink buffers",
                all(not any(v for v in d.values()) for d in dropped.values()),
                {"dropped": dropped},
            )
        )
        return invariants

    def through(self, record: FaultRecord, sink: str) -> dict[str, dict[str, Any]]:
        """The workers alive during an outage: the most their ``sink`` held during it, at
        their last scrape what it held (and how much of it a spool does not keep), had
        dropped, had retried and had spooled (and whether it was spooling), and for one
        that ended what the workers after it adopted from the spool folder they share (all
        of it: several that ended share the count)."""
        assert record.recovered_ms is not None
        found = {}
        for w in self.workers:
            if w.started_ms > record.recovered_ms or (
                w.ended_ms is not None and w.ended_ms < record.injected_ms
            ):
                continue
            during = [
                held.get(sink, 0.0)
                for at, held in w.buffered
                if record.injected_ms <= at <= record.recovered_ms
            ]
            after = [held.get(sink, 0.0) for at, held in w.buffered if at > record.recovered_ms]
            stats = w.sinks.get(sink, {})
            later = [
                s.sinks.get(sink, {}).get("restored") or 0
                for s in self.workers
                if w.ended_ms is not None and s is not w and (s.ended_ms or 2**63) > w.ended_ms
            ]
            found[f"{w.name}#{w.incarnation}"] = {
                "ended_at": None if w.ended_ms is None else iso_utc(w.ended_ms),
                "ended_by": w.ended_by,
                "buffered_max_during": max(during, default=None),
                "buffered_at_end": stats.get("buffered"),
                "not_spooled_at_end": stats.get("buffered_not_spooled"),
                # Empty at some scrape after the outage: all it held then was delivered.
                "emptied_after": 0.0 in after,
                "dropped": stats.get("dropped"),
                "failed_attempts": stats.get("failed_attempts"),
                "spooling_at_end": bool(stats.get("spooling")),
                "spooled": stats.get("spooled"),
                "unspooled": stats.get("unspooled"),
                "restored_after": sum(later) if later else None,
                "spool_left_at_exit": w.spool_left.get(sink),
            }
        return found

    @staticmethod
    def emptied(through: dict[str, dict[str, Any]]) -> bool:
        """Every worker alive during an outage emptied its buffer after it (at some scrape:
        the last one may catch a heartbeat in flight) without a drop, or ended while
        spooling (SIGKILLed, or SIGTERMed: its stop spools what it holds): then everything
        it held was in its spool (none unspooled) and the workers after it adopted at least
        what it spooled. (One killed while its server
        answered loses what its flush cadence held, a second's worth.) Not what it held:
        Alerta's heartbeats are held but never spooled (seed 7: a#1 held 7, spooled and
        its successor adopted 6). ``spooled`` counts every outage of the worker's life,
        so two outages before its SIGKILL fail this although nothing was lost.

        >>> killed = {"ended_by": "SIGKILL", "spooling_at_end": True, "buffered_at_end": 7,
        ...           "spooled": 6, "unspooled": 0, "restored_after": 6}
        >>> ChaosRun.emptied({"a#1": killed})
        True
        >>> ChaosRun.emptied({"a#1": {**killed, "restored_after": 5}})
        False
        >>> left = {**killed, "ended_by": "SIGTERM", "emptied_after": False, "dropped": 0}
        >>> ChaosRun.emptied({"b#1": left})
        True
        >>> ChaosRun.emptied({"b#1": {**left, "restored_after": 0}})
        False

        A worker scraped while it stops reads ``spooling`` 0 once its stop has spooled what
        it held and closed the spool (seed 10: b#1 held 298, spooled 298, and the workers
        after it adopted 1,535): it ended spooling all the same, unless it spooled less
        than it held of what a spool keeps (``not_spooled_at_end``: the heartbeats it
        held; a report from before workers exported it counts none).

        >>> stopped = {**left, "spooling_at_end": False, "buffered_at_end": 298,
        ...            "spooled": 298, "restored_after": 1535}
        >>> ChaosRun.emptied({"b#1": stopped})
        True
        >>> ChaosRun.emptied({"b#1": {**stopped, "spooled": 200}})
        False

        Seed 11: a worker SIGTERMed in Alerta's outage held 17 items, spooled 16 and the
        workers after it adopted 16; the 17th was a heartbeat, which no spool keeps.

        >>> held = {**stopped, "buffered_at_end": 17, "not_spooled_at_end": 1,
        ...         "spooled": 16, "restored_after": 16}
        >>> ChaosRun.emptied({"a#2": held})
        True
        >>> ChaosRun.emptied({"a#2": {**held, "not_spooled_at_end": 0}})
        False
        >>> before = {k: v for k, v in held.items() if k != "not_spooled_at_end"}
        >>> ChaosRun.emptied({"a#2": before})  # a report from before the gauge
        False
        >>> ChaosRun.emptied({"a#2": {**held, "restored_after": 15}})
        False

        A worker that emptied its buffer after the outage without a drop delivered all it
        held through it, however it ended and whatever it holds at its last scrape (seed
        11: a#3 spooled 12 alerts during Alerta's outage, emptied after, and was SIGTERMed
        at the run's end holding 1 new item; no worker came after it to adopt 12).

        >>> last = {**stopped, "buffered_at_end": 1, "spooled": 12, "restored_after": None,
        ...         "emptied_after": True}
        >>> ChaosRun.emptied({"a#3": last})
        True
        >>> ChaosRun.emptied({"a#3": {**last, "emptied_after": False}})
        False

        A worker that ended while spooling but whose spool file was gone when it exited,
        adopted by none, deleted it itself: its stop delivered all it held, since a sink
        deletes its file only then (seed 11 at c2726cd: b#1, SIGTERMed 2 s after Alerta
        came back, spooled 11, held 1 at its last scrape; none adopted, its file gone).

        >>> delivered = {**left, "buffered_at_end": 1, "spooled": 11, "restored_after": 0,
        ...              "spool_left_at_exit": False}
        >>> ChaosRun.emptied({"b#1": delivered})
        True
        >>> ChaosRun.emptied({"b#1": {**delivered, "spool_left_at_exit": True}})
        False
        >>> ChaosRun.emptied({"b#1": {**delivered, "unspooled": 1}})
        False
        """
        for e in through.values():
            if e.get("emptied_after") and not e.get("dropped"):
                continue
            held = e["buffered_at_end"]
            keepable = (held or 0) - (e.get("not_spooled_at_end") or 0)
            stopped_spooling = bool(held) and e["spooled"] >= keepable
            if e["ended_by"] is not None and (e["spooling_at_end"] or stopped_spooling):
                adopted = (e["restored_after"] or 0) >= e["spooled"]
                delivered_at_stop = e.get("spool_left_at_exit") is False
                if e["unspooled"] or not (adopted or delivered_at_stop):
                    return False
            elif e["ended_by"] != "SIGKILL" and (e["buffered_at_end"] != 0 or e["dropped"]):
                return False
        return True

    def judge_influx_outage(self, record: FaultRecord) -> Invariant:
        """Points stamped while InfluxDB was down (the workers' pipeline books, every 10 s)
        are in it now, and the workers that lived through the outage emptied their buffer
        without a drop."""
        from streams.topics import PREDICTIONS

        assert record.recovered_ms is not None
        topic = PREDICTIONS.name(self.settings)
        database = self.settings.influxdb_bucket.split("/")[0]
        query = (
            f"SELECT count(consumed) FROM pipeline WHERE topic = '{topic}' "
            f"AND time >= {record.injected_ms}ms AND time <= {record.recovered_ms}ms"
        )
        url = f"{self.settings.influxdb_url}/query?" + urllib.parse.urlencode(
            {"db": database, "q": query}
        )
        # The stack's InfluxDB asks for credentials: the token's user is its admin.
        token = {"Authorization": f"Token {self.settings.secret('influxdb_token')}"}
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=token), timeout=30
        ) as response:
            body = json.load(response)
        series = body["results"][0].get("series", [])
        count = int(series[0]["values"][0][1]) if series else 0
        through = self.through(record, "influxdb")
        # A worker whose writes failed had points waiting during the outage; some were
        # stamped inside it (its pipeline books, every 10 s). Without one, the outage
        # tested nothing, which fails too: the run did not show what it is meant to.
        tried = any(e["failed_attempts"] for e in through.values())
        return Invariant(
            "influxdb: the points buffered during its outage arrived after it",
            tried and self.emptied(through) and count > 0,
            {
                "exercised": tried,
                "down_s": (record.recovered_ms - record.injected_ms) / 1000,
                "pipeline_points_stamped_in_outage": count,
                "workers_through_outage": through,
            },
        )

    def judge_alerta_outage(self, record: FaultRecord) -> Invariant:
        """The workers that lived through Alerta's outage emptied their buffer without a
        drop, and every fallback on the control topic has its health alert in Alerta."""
        assert record.recovered_ms is not None
        through = self.through(record, "alerta")
        alerts = self.demo.alerta.snapshot() if self.demo.alerta else []
        commands = self.demo.control.snapshot() if self.demo.control else []
        missing = [
            {"model": command.model, "seq": command.seq}
            for command in commands
            if command.action == "fallback"
            and not any(
                a.model == command.model and a.event == "ModelFallback" and a.group == "health"
                for a in alerts
            )
        ]
        return Invariant(
            "alerta: the alerts buffered during its outage arrived after it",
            bool(through) and self.emptied(through) and not missing,
            {
                "down_s": (record.recovered_ms - record.injected_ms) / 1000,
                "workers_through_outage": through,
                "fallbacks": sum(1 for c in commands if c.action == "fallback"),
                "fallbacks_without_alert": missing,
            },
        )


class ShortRead(Exception):
    """A topic read that did not reach the end offsets it was asked for."""


def judged(name: str, judge: Callable[[], list[Invariant]]) -> list[Invariant]:
    """``judge()``'s invariants; if what it reads cannot be read (a server down, a topic
    read short), one failed invariant saying so, so that the other checks are still made.

    >>> def unreadable():
    ...     raise ShortRead("failsoft.control: partition 0 read to 3 of 7")
    >>> (failed,) = judged("control", unreadable)
    >>> failed.passed, failed.numbers["error"]
    (False, 'ShortRead: failsoft.control: partition 0 read to 3 of 7')
    """
    from confluent_kafka import KafkaException

    try:
        return judge()
    except (KafkaException, OSError, ShortRead) as error:
        return [
            Invariant(
                f"{name}: what the check reads could be read",
                False,
                {"error": f"{type(error).__name__}: {error}"},
            )
        ]


def _read_all(settings: Settings, topic: str) -> list[Any]:
    """Every message of ``topic``, from the beginning to its end now.

    Raises
    ------
    ShortRead
        When a partition was not read to its end within ``READ_TIMEOUT_S``.
    """
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"failsoft-chaos-reader-{os.urandom(4).hex()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    messages = []
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        ends = {}
        for number in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, number), timeout=30)
            if high > low:
                ends[number] = high
        consumer.assign([TopicPartition(topic, number, 0) for number in ends])
        deadline = time.monotonic() + READ_TIMEOUT_S
        while ends and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=1.0):
                if message.error() is not None:
                    continue
                messages.append(message)
                if message.offset() + 1 >= ends.get(message.partition(), 0):
                    ends.pop(message.partition(), None)
        if ends:
            raise ShortRead(f"{topic}: partitions {sorted(ends)} not read to their ends")
    finally:
        consumer.close()
    return messages


def read_control(settings: Settings) -> list[ControlRecord]:
    from schemas.codec import decode_control_command
    from schemas.contracts import ControlCommand
    from streams.topics import CONTROL

    records = []
    for message in _read_all(settings, CONTROL.name(settings)):
        command = decode_control_command(message.value())
        if isinstance(command, ControlCommand):
            records.append(
                ControlRecord(command.model_id, command.action, command.seq, message.offset())
            )
    return records


def read_inputs(settings: Settings, portfolio: Any) -> dict[str, dict[str, int]]:
    """Per input topic: its records (a batch message counts its records) and how many of
    them the contracts and the portfolio refuse."""
    from streams.worker.ingest import INPUTS

    found = {}
    for source in INPUTS.values():
        topic = source.spec.name(settings)
        records = dead = 0
        for message in _read_all(settings, topic):
            admitted, errors = _admit(source, message.value(), portfolio)
            records += admitted + errors
            dead += errors
        found[topic] = {"records": records, "dead": dead}
    return found


def _admit(source: Any, raw: bytes | None, portfolio: Any) -> tuple[int, int]:
    from streams.worker.ingest import admit

    records, errors = admit(source, raw, portfolio)
    return len(records), len(errors)


def read_dead_letters(settings: Settings) -> dict[str, collections.Counter[str]]:
    """Per source topic: distinct dead letters (partition, offset, index) and all copies."""
    from schemas.codec import decode_dead_letter
    from schemas.contracts import DeadLetter
    from streams.topics import DEAD_LETTERS

    seen: set[tuple[str, int, int, int | None]] = set()
    distinct: collections.Counter[str] = collections.Counter()
    copies: collections.Counter[str] = collections.Counter()
    for message in _read_all(settings, DEAD_LETTERS.name(settings)):
        letter = decode_dead_letter(message.value())
        if not isinstance(letter, DeadLetter):
            continue
        copies[letter.source_topic] += 1
        key = (letter.source_topic, letter.partition, letter.offset, letter.error.index)
        if key not in seen:
            seen.add(key)
            distinct[letter.source_topic] += 1
    return {"distinct": distinct, "copies": copies}


def run(
    settings: Settings, seed: int, run_dir: Path, say: Callable[[str], None] = print
) -> dict[str, Any]:
    """One chaos run; its report. Every server is up and healthy when it returns."""
    run_dir.mkdir(parents=True, exist_ok=True)
    chaos = ChaosRun(settings, seed, run_dir, say)
    try:
        chaos.start()
        chaos.inject_all()
        chaos.drain()
        return chaos.finish()
    finally:
        chaos.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--report", type=Path, required=True, help="where to write the JSON")
    parser.add_argument(
        "--run-dir", type=Path, default=None, help="logs of the run (default: beside the report)"
    )
    args = parser.parse_args(argv)
    # A SIGTERM (a CI time-out) stops the run as Ctrl-C does: its children and servers too.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    run_dir = args.run_dir or args.report.with_suffix("")
    report = run(Settings.from_env(), args.seed, run_dir)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    for invariant in report["invariants"]:
        print(f"{'PASS' if invariant['passed'] else 'FAIL'}  {invariant['name']}")
    print(f"chaos seed {args.seed}: {'passed' if report['passed'] else 'FAILED'}; {args.report}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
