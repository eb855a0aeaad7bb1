"""The local InfluxDB's users: the workers' writer cannot read, the analysts' reader cannot
write, and a request without credentials is refused."""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

import pytest

from streams.settings import Settings
from streams.stack.influxdb import user_token_file

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def as_user(settings: Settings, user: str) -> Settings:
    return dataclasses.replace(settings, influxdb_token_file=str(user_token_file(settings, user)))


def client(settings: Settings) -> Any:
    from influxdb_client import InfluxDBClient

    return InfluxDBClient(
        url=settings.influxdb_url, token=settings.secret("influxdb_token"), org="failsoft"
    )


def query(settings: Settings, measurement: str) -> list[float]:
    flux = (
        f'from(bucket: "{settings.influxdb_bucket}") |> range(start: 2026-12-01T00:00:00Z)'
        f' |> filter(fn: (r) => r._measurement == "{measurement}")'
    )
    with client(settings) as reader:
        tables = reader.query_api().query(flux)
    return [record.get_value() for table in tables for record in table.records]


def write(settings: Settings, measurement: str, value: float) -> None:
    from influxdb_client import Point
    from influxdb_client.client.write_api import SYNCHRONOUS

    with client(settings) as writer:
        writer.write_api(write_options=SYNCHRONOUS).write(
            bucket=settings.influxdb_bucket,
            record=Point(measurement).tag("model", "ranker").field("psi", value).time(NOW),
        )


def test_the_writer_writes_but_cannot_read_and_the_reader_reads_but_cannot_write(
    stack_settings: Settings, influxdb_client: object, unique_name: str
) -> None:
    from influxdb_client.rest import ApiException

    writer = as_user(stack_settings, "failsoft-writer")
    reader = as_user(stack_settings, "failsoft-reader")
    write(writer, unique_name, 0.25)
    assert query(reader, unique_name) == [0.25]
    with pytest.raises(ApiException) as refused_read:
        query(writer, unique_name)
    # Flux reports the refusal as a failed query (HTTP 500), naming the privilege.
    error = json.loads(refused_read.value.body)["error"]
    assert error.endswith('user "failsoft-writer", requires READ for database "failsoft"')
    with pytest.raises(ApiException) as refused_write:
        write(reader, unique_name, 0.5)
    assert refused_write.value.status == 403
    assert query(stack_settings, unique_name) == [0.25]


def test_a_query_without_credentials_is_refused(
    stack_settings: Settings, influxdb_client: object
) -> None:
    data = urllib.parse.urlencode({"q": "SHOW DATABASES"}).encode()
    request = urllib.request.Request(f"{stack_settings.influxdb_url}/query", data=data)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401
