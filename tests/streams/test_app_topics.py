"""The worker app's own topics: it creates each one it uses before its consumer starts,
and a bug in an agent stops the worker instead of Faust restarting the agent past the
event it failed on."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from streams.demo.run import settings_env
from streams.settings import Settings
from streams.topics import (
    CHANGELOG_SEGMENT_BYTES,
    PREDICTIONS,
    STATE_TABLE,
    admin_client,
    changelog,
    worker_topics,
)
from streams.worker.app import create_app

ROOT = Path(__file__).resolve().parents[2]
PORTFOLIO = ROOT / "deploy" / "portfolio.example.toml"
START_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 60.0
BUG = "a bug in the monitor"
# `failsoft worker`, with the monitors' observe() replaced by one that raises. The bug is
# one that records meet, so the warm-up, which observes a made-up batch before the worker
# consumes, is skipped (it would stop the worker before it made its topics).
BROKEN_WORKER = f"""
import sys
import streams.monitor.warm_up
from streams.monitor import Monitor

def observe(*args):
    raise RuntimeError({BUG!r})

Monitor.observe = observe
streams.monitor.warm_up.warm_up = lambda models=(): None
from streams.cli import main
sys.exit(main(["worker", "--loglevel", "warning"]))
"""


def test_every_topic_the_app_reads_or_declares_is_one_it_creates(tmp_path: Path) -> None:
    settings = dataclasses.replace(
        Settings.from_env({}),
        topic_prefix="acme.",
        worker_app_id="fs-1",
        portfolio_path=PORTFOLIO,
        worker_data_dir=tmp_path,
    )
    app = create_app(settings)
    specs = {spec.name(settings): spec for spec in worker_topics(settings)}
    for agent in app.agents.values():
        assert agent.channel.get_topic_name() in specs
    assert len(app.tables) == 1
    for table in app.tables.values():
        topic = table.changelog_topic
        spec = specs[topic.get_topic_name()]
        # FAILSOFT_TOPIC_PREFIX reaches the topics Faust names after the app id too.
        assert spec.name(settings) == f"acme.fs-1-{table.name}-changelog"
        assert spec.partitions == topic.partitions == PREDICTIONS.partitions
        configs = {key: str(value) for key, value in (topic.config or {}).items()}
        assert dict(spec.configs) == {"cleanup.policy": "compact", **configs}
        assert topic.compacting and not topic.deleting
    leader = app._leader_assignor._leader_topic.get_topic_name()
    assert leader == "acme.fs-1-__assignor-__leader"
    assert specs[leader].partitions == 1


@pytest.mark.integration
def test_the_worker_creates_its_topics_and_a_bug_in_an_agent_stops_it(
    worker_settings: Settings, confluent_producer_config: dict[str, Any], tmp_path: Path
) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import ConfigResource, ResourceType

    settings = dataclasses.replace(worker_settings, portfolio_path=PORTFOLIO)
    names = {spec.name(settings): spec.partitions for spec in worker_topics(settings)}
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-c", BROKEN_WORKER],
            cwd=ROOT,
            env=settings_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        admin = admin_client(settings)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            existing = admin.list_topics(timeout=30).topics
            if names.keys() <= existing.keys() or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert {name: len(existing[name].partitions) for name in names} == names
        # Segments small enough that the broker compacts the changelog as the worker runs.
        state = ConfigResource(ResourceType.TOPIC, changelog(settings, STATE_TABLE).name(settings))
        configs = admin.describe_configs([state])[state].result(30)
        assert configs["cleanup.policy"].value == "compact"
        assert configs["segment.bytes"].value == str(CHANGELOG_SEGMENT_BYTES) == "33554432"
        example = json.loads((ROOT / "schemas" / "prediction.example.json").read_text())
        prediction = json.dumps(example | {"model_id": "home-recommender"})
        producer = Producer(confluent_producer_config)
        producer.produce(PREDICTIONS.name(settings), key="home-recommender", value=prediction)
        assert producer.flush(30) == 0
        assert worker.wait(EXIT_TIMEOUT_S) == 1
    finally:
        worker.kill()
        worker.wait()
    assert f"RuntimeError: {BUG}" in log_path.read_text()
