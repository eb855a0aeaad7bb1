"""Fixtures of the streams tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.streams.proxy import TcpProxy


@pytest_asyncio.fixture(loop_scope="function")
async def proxies() -> AsyncIterator[list[TcpProxy]]:
    """Proxies a test opens are closed after it, even when it fails."""
    opened: list[TcpProxy] = []
    yield opened
    for proxy in opened:
        await proxy.close()
