"""Session fixtures for tests that talk to the real local stack, and clients for each server.

Each server fixture uses the server if it already runs (``failsoft stack up``) and starts
it otherwise; servers a session started are stopped when the session ends, the ones it
found running are left alone. Ports and folders come from ``Settings.from_env()``, so the
same tests run against a stack on other ports (``FAILSOFT_KAFKA_BOOTSTRAP=...``).

Fixtures for others:

- ``stack_settings``: the session's :class:`Settings`.
- ``kafka_bootstrap``: the shared broker's address; ``kafka_topic``: a fresh topic, deleted
  after the test; ``confluent_producer_config`` / ``confluent_consumer_config``.
- ``influxdb_client``, ``alerta_client``, ``postgres_dsn``.
- ``unique_name``: a name no other test run uses (topics, groups, apps, measurements).
- ``private_kafka``: a throwaway broker of the test's own (own ports and state folder),
  which the test can ``stop()`` and ``start()`` again without touching the shared one.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.settings import Settings
from streams.stack import SERVERS, private_settings
from streams.topics import KEY_PARTITIONER

KAFKA_ADMIN_TIMEOUT_S = 30.0


class StackGuard:
    """Starts servers on demand for one test session and stops only those it started."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started: list[str] = []

    def ensure(self, name: str) -> None:
        server = SERVERS[name]
        for required in server.requires:
            self.ensure(required)
        if server.status(self.settings).healthy:
            return
        server.start(self.settings)
        self.started.append(name)

    def stop_started(self) -> None:
        for name in reversed(self.started):
            SERVERS[name].stop(self.settings)


class PrivateKafka:
    """A broker of one test's own, on free ports, with its state under the test's tmp dir."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bootstrap = settings.kafka_bootstrap

    def start(self) -> str:
        return SERVERS["kafka"].start(self.settings)

    def stop(self) -> str:
        return SERVERS["kafka"].stop(self.settings)

    @property
    def running(self) -> bool:
        return SERVERS["kafka"].status(self.settings).healthy


@pytest.fixture(scope="session")
def stack_settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def stack(stack_settings: Settings) -> Iterator[StackGuard]:
    guard = StackGuard(stack_settings)
    yield guard
    guard.stop_started()


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: StackGuard) -> str:
    stack.ensure("kafka")
    return stack.settings.kafka_bootstrap


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """``failsoft-test-<test name>-<random>``, safe as a Kafka topic or group name."""
    test = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:80].strip("-")
    return f"failsoft-test-{test}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def kafka_topic(kafka_bootstrap: str, unique_name: str) -> Iterator[str]:
    """A new topic with one partition, deleted after the test."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    created = admin.create_topics([NewTopic(unique_name, num_partitions=1, replication_factor=1)])
    created[unique_name].result(timeout=KAFKA_ADMIN_TIMEOUT_S)
    yield unique_name
    admin.delete_topics([unique_name])[unique_name].result(timeout=KAFKA_ADMIN_TIMEOUT_S)


@pytest.fixture
def confluent_producer_config(kafka_bootstrap: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": kafka_bootstrap,
        "acks": "all",
        "linger.ms": 0,
        "partitioner": KEY_PARTITIONER,
    }


@pytest.fixture
def confluent_consumer_config(kafka_bootstrap: str, unique_name: str) -> dict[str, Any]:
    """A consumer in a group of its own, reading each topic from the beginning."""
    return {
        "bootstrap.servers": kafka_bootstrap,
        "group.id": unique_name,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }


@pytest.fixture(scope="session")
def influxdb_client(stack: StackGuard) -> Iterator[Any]:
    """An ``influxdb_client.InfluxDBClient`` on the settings' URL, token and org."""
    from influxdb_client import InfluxDBClient

    stack.ensure("influxdb")
    settings = stack.settings
    with InfluxDBClient(
        url=settings.influxdb_url, token=settings.influxdb_token, org=settings.influxdb_org
    ) as client:
        yield client


@pytest.fixture(scope="session")
def postgres_dsn(stack: StackGuard) -> str:
    from streams.stack.postgres import HOST, SUPERUSER

    stack.ensure("postgres")
    return f"postgresql://{SUPERUSER}@{HOST}:{stack.settings.postgres_port}/postgres"


@pytest.fixture(scope="session")
def alerta_client(stack: StackGuard) -> Any:
    """An ``alertaclient.api.Client`` authenticated with the settings' API key."""
    from alertaclient.api import Client

    stack.ensure("alerta")
    settings = stack.settings
    return Client(endpoint=settings.alerta_endpoint, key=settings.alerta_api_key, timeout=10)


@pytest.fixture
def private_kafka(stack_settings: Settings, tmp_path: Path) -> Iterator[PrivateKafka]:
    """A running broker of this test's own; stopped (no process left) after the test."""
    broker = PrivateKafka(private_settings(stack_settings, tmp_path / "stack"))
    broker.start()
    yield broker
    broker.stop()
