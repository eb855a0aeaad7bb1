"""Fixtures of the streams tests."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from streams.settings import Settings
from streams.topics import ensure_topics
from tests.streams.proxy import TcpProxy, free_port


@pytest_asyncio.fixture(loop_scope="function")
async def proxies() -> AsyncIterator[list[TcpProxy]]:
    """Proxies a test opens are closed after it, even when it fails."""
    opened: list[TcpProxy] = []
    yield opened
    for proxy in opened:
        await proxy.close()


@pytest.fixture
def worker_settings(
    stack_settings: Settings, kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> Iterator[Settings]:
    """A worker of the test's own: its topics (created here, deleted after), app id, data
    folder, web port and a memory store. Tests replace more fields as they need."""
    from confluent_kafka.admin import AdminClient

    settings = dataclasses.replace(
        stack_settings,
        topic_prefix=f"{unique_name}.",
        worker_app_id=unique_name,
        worker_store="memory://",
        worker_data_dir=tmp_path / "worker",
        worker_web_port=free_port(),
    )
    ensure_topics(settings)  # the inputs, which tests may fill before the app starts
    yield settings
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    ours = [name for name in admin.list_topics(timeout=30).topics if unique_name in name]
    for future in admin.delete_topics(ours).values():
        future.result(timeout=30)
