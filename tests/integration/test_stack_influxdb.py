"""Points written through influxdb-client's /api/v2/write and read back with Flux."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streams.settings import Settings

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
SCORES = [0.25, 0.5, 0.75]


def flux_for(settings: Settings, measurement: str) -> str:
    return (
        f'from(bucket: "{settings.influxdb_bucket}")'
        f" |> range(start: -1h, stop: 1m)"
        f' |> filter(fn: (r) => r._measurement == "{measurement}")'
    )


def test_points_written_are_read_back_with_flux(
    influxdb_client: Any, stack_settings: Settings, unique_name: str
) -> None:
    from influxdb_client import Point
    from influxdb_client.client.write_api import SYNCHRONOUS

    points = [
        Point(unique_name)
        .tag("model", "ranker")
        .field("psi", score)
        .time(NOW - timedelta(seconds=len(SCORES) - i))
        for i, score in enumerate(SCORES)
    ]
    influxdb_client.write_api(write_options=SYNCHRONOUS).write(
        bucket=stack_settings.influxdb_bucket, record=points
    )

    tables = influxdb_client.query_api().query(flux_for(stack_settings, unique_name))
    rows = [(r.values["model"], r.get_field(), r.get_value()) for t in tables for r in t.records]
    assert rows == [("ranker", "psi", score) for score in SCORES]


async def test_async_client_writes_and_reads_back(
    influxdb_client: Any, stack_settings: Settings, unique_name: str
) -> None:
    """The workers' sink uses the async client; the same four settings address it."""
    from influxdb_client import Point
    from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

    async with InfluxDBClientAsync(
        url=stack_settings.influxdb_url,
        token=stack_settings.influxdb_token,
        org=stack_settings.influxdb_org,
    ) as client:
        written = await client.write_api().write(
            bucket=stack_settings.influxdb_bucket,
            record=Point(unique_name).tag("model", "ranker").field("lag_s", 3.5).time(NOW),
        )
        assert written is True
        tables = await client.query_api().query(flux_for(stack_settings, unique_name))
    assert [r.get_value() for t in tables for r in t.records] == [3.5]
