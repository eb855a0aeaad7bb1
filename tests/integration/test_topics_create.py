"""``failsoft topics create`` on the real broker: creates, then changes nothing, then repairs."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from streams.cli import main
from streams.settings import Settings
from streams.topics import CATALOGUE, CONTROL, PREDICTIONS, admin_client, ensure_topics
from tests.fleet.helpers import wait_for

pytestmark = pytest.mark.integration


def test_topics_create_is_idempotent_and_reports_changes(
    stack_settings: Settings,
    kafka_bootstrap: str,
    unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = dataclasses.replace(
        stack_settings, kafka_bootstrap=kafka_bootstrap, topic_prefix=f"{unique_name}."
    )
    monkeypatch.setenv("FAILSOFT_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("FAILSOFT_TOPIC_PREFIX", settings.topic_prefix)
    admin = admin_client(settings)
    names = [spec.name(settings) for spec in CATALOGUE]
    try:
        assert main(["topics", "create"]) == 0
        first = capsys.readouterr().out.splitlines()
        assert [line.split(":")[0] for line in first] == [f"created {name}" for name in names]
        assert "cleanup.policy=compact" in first[CATALOGUE.index(CONTROL)]

        assert wait_for(lambda: set(names) <= set(admin.list_topics(timeout=10).topics))
        topics = admin.list_topics(timeout=10).topics
        assert len(topics[CONTROL.name(settings)].partitions) == CONTROL.partitions
        assert len(topics[PREDICTIONS.name(settings)].partitions) == PREDICTIONS.partitions

        assert main(["topics", "create"]) == 0
        assert capsys.readouterr().out.splitlines() == [f"unchanged {name}" for name in names]

        control = ConfigResource(
            ResourceType.TOPIC,
            CONTROL.name(settings),
            incremental_configs=[
                ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SET)
            ],
        )
        admin.incremental_alter_configs([control])[control].result(timeout=30)
        repaired = {change.topic: change for change in ensure_topics(settings)}
        assert repaired[CONTROL.name(settings)].action == "updated"
        assert repaired[CONTROL.name(settings)].changes == ("cleanup.policy delete -> compact",)
        assert {change.action for name, change in repaired.items() if name != control.name} == {
            "unchanged"
        }
    finally:
        for future in admin.delete_topics(names).values():
            future.result(timeout=30)


def test_workers_starting_together_each_create_or_find_every_topic(
    stack_settings: Settings, kafka_bootstrap: str, unique_name: str
) -> None:
    # Two workers of one group start at once: one creates a topic, the other is told it
    # exists and may describe it before the broker knows it (UNKNOWN_TOPIC_OR_PART).
    settings = dataclasses.replace(
        stack_settings, kafka_bootstrap=kafka_bootstrap, topic_prefix=f"{unique_name}."
    )
    names = [spec.name(settings) for spec in CATALOGUE]
    admin = admin_client(settings)
    try:
        with ThreadPoolExecutor(4) as pool:
            reports = list(pool.map(lambda _: ensure_topics(settings), range(4)))
        assert all([change.topic for change in report] == names for report in reports)
        created = [
            sum(report[i].action == "created" for report in reports) for i in range(len(names))
        ]
        assert created == [1] * len(names)
    finally:
        for future in admin.delete_topics(names).values():
            future.result(timeout=30)
