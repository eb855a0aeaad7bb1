"""A minimal Faust worker against the real broker: topics created, one event processed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PROCESS_TIMEOUT_S = 60.0


async def test_faust_worker_creates_its_topics_and_processes_one_event(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    import faust
    from confluent_kafka.admin import AdminClient

    app = faust.App(
        unique_name,
        broker=f"kafka://{kafka_bootstrap}",
        store="memory://",
        datadir=str(tmp_path),
        web_enabled=False,
        topic_partitions=1,
    )
    # internal=True: the worker creates the topic itself, as it does its changelogs.
    events = app.topic(f"{unique_name}-events", value_serializer="raw", internal=True)
    counts = app.Table("counts", default=int)
    processed: asyncio.Queue[tuple[bytes, int]] = asyncio.Queue()

    @app.agent(events)
    async def count(stream: faust.StreamT[bytes]) -> None:
        async for payload in stream:
            counts[payload] += 1
            await processed.put((payload, counts[payload]))

    await app.start()
    try:
        await events.send(value=b"model-a")
        assert await asyncio.wait_for(processed.get(), PROCESS_TIMEOUT_S) == (b"model-a", 1)
    finally:
        await app.stop()

    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
    assert f"{unique_name}-events" in topics
    assert f"{unique_name}-counts-changelog" in topics
