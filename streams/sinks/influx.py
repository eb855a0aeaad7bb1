"""InfluxDB: batched points for analysts, written through influxdb-client's async API.

Points are queued by agents and written in batches on a fixed cadence (every
``flush_interval`` seconds, or sooner when a full batch is waiting), never one request per
event. Timestamps are event time in milliseconds, so a replay lands where it happened.

Schema
------
Every point carries the tags that apply to it, from ``model``, ``version``, ``role``
(live, shadow or fallback), ``feature`` and ``detector``; ``pipeline`` points use
``agent``, ``topic``, ``reason`` and ``sink`` instead. Fields are numbers unless noted.

=========== ============================== ==================================================
measurement tags                           fields
=========== ============================== ==================================================
drift       model, version, role,          ``statistic`` (PSI, KS, ...), ``threshold``,
            feature, detector              ``drift`` (1 when detected), ``null_rate``
performance model, version, role, detector ``value`` (the metric named by detector),
                                           ``estimated`` (1 before labels, 0 measured),
                                           ``labels`` (labels seen so far)
write_lag   model, feature                 ``p50_ms``, ``p99_ms``, ``gap_rate``,
                                           ``future_values``
leak        model, feature, detector       ``score``, ``p_value``, ``flagged`` (0 or 1),
                                           ``labels``
shadow      model, version, detector       ``agreement``, ``loss_delta``, ``lower``,
                                           ``upper``, ``verdict`` (string: promote,
                                           keep_watching, reject)
health      model, detector                ``state`` (string), ``state_code`` (0 healthy,
                                           1 degraded, 2 probing, 3 fallback),
                                           ``on_fallback_s``
pipeline    agent, topic, reason, sink     ``consumed``, ``processed``, ``dead_lettered``,
                                           ``buffered``, ``dropped``, ``events_per_s``
serving     model, tier, level             ``predictions``, ``slow`` (over the SLO),
                                           ``trips`` (served by a tripped breaker),
                                           ``latency_mean_ms``, ``latency_max_ms``
=========== ============================== ==================================================

``health`` points of the detector ``ladder`` carry ``level`` instead: the fallback
ladder's level the fleet serves from then on. ``serving`` points exist for models with
an ``slo`` (``streams.monitor.serving_watch``).

``drift`` points of a model's outputs rather than a feature have no ``feature`` tag and
the detector ``score`` (a CUSUM on the live score) or ``error_rate`` (a CUSUM on requests
the fleet served by fallback because the model raised); their ``statistic`` is the CUSUM.

``streams.monitor.effects.point`` checks the measurement and tag names (a wrong one is a
bug in failsoft, so it raises); values are not inspected on the agents' path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.rest import ApiException

# Points are the monitors' effects (plain data, checked by ``point``); this module writes them.
from streams.monitor.effects import MEASUREMENTS, FieldValue, Point, point
from streams.sinks.buffer import (
    DEFAULT_BACKOFF,
    DEFAULT_SPOOL_BYTES,
    Backoff,
    BufferedSink,
    SinkRejected,
    TransientSinkError,
)

__all__ = ["MEASUREMENTS", "FieldValue", "InfluxSink", "Point", "point"]


class InfluxSink(BufferedSink[Point]):
    """Writes queued points in batches to one bucket (``db/rp`` on InfluxDB 1.8); with a
    ``spool`` folder, the points of an outage outlive the worker (``streams.sinks.buffer``)."""

    name = "influxdb"

    def __init__(
        self,
        url: str,
        token: str,
        org: str,
        bucket: str,
        *,
        capacity: int = 100_000,
        batch_size: int = 5_000,
        flush_interval: float = 1.0,
        request_timeout: float = 10.0,
        backoff: Backoff = DEFAULT_BACKOFF,
        spool: Path | None = None,
        spool_bytes: int = DEFAULT_SPOOL_BYTES,
    ) -> None:
        super().__init__(
            capacity=capacity,
            batch_size=batch_size,
            flush_interval=flush_interval,
            backoff=backoff,
            spool=spool,
            spool_bytes=spool_bytes,
        )
        self.url = url
        self.org = org
        self.bucket = bucket
        self._token = token
        self._timeout_ms = int(request_timeout * 1000)
        self._client: InfluxDBClientAsync | None = None

    async def deliver(self, batch: Sequence[Point]) -> None:
        if self._client is None:
            # The async client opens an aiohttp session, which must happen inside the loop.
            self._client = InfluxDBClientAsync(
                url=self.url, token=self._token, org=self.org, timeout=self._timeout_ms
            )
        records = [
            {
                "measurement": p.measurement,
                "tags": p.tags,
                "fields": p.fields,
                # Nanoseconds: the client's default precision (its typing rejects "ms").
                "time": p.time_ms * 1_000_000,
            }
            for p in batch
        ]
        try:
            await self._client.write_api().write(bucket=self.bucket, record=records)
        except ApiException as error:
            status = error.status or 0
            message = f"write: HTTP {status}: {str(error.body)[:200]}"
            if status in (408, 429) or status >= 500:
                raise TransientSinkError(message) from None
            raise SinkRejected(message) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise TransientSinkError(f"write: {type(error).__name__}: {error}") from None

    def encode_item(self, item: Point) -> Any:
        return [item.measurement, item.tags, item.fields, item.time_ms]

    def decode_item(self, data: Any) -> Point:
        measurement, tags, fields, time_ms = data
        return Point(measurement, tags, fields, time_ms)

    async def close_transport(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
