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

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import numpy as np
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

__all__ = ["MEASUREMENTS", "FieldValue", "InfluxSink", "Point", "line_protocol", "point"]

# The escapes of influxdb-client's line protocol, so that a point lands as it did when the
# client wrote it from a dictionary (same series, same field types).
_MEASUREMENT_ESCAPES = str.maketrans(
    {",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"}
)
_KEY_ESCAPES = str.maketrans(
    {",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"}
)
_STRING_ESCAPES = str.maketrans({'"': r"\"", "\\": r"\\"})


def line_protocol(points: Iterable[Point]) -> bytes:
    """The points as one body of line protocol, times in nanoseconds.

    What influxdb-client writes for the same points given as dictionaries, without its
    ``Point`` objects. Fields are sorted by name, as are tags; a tag whose key or value is
    empty is left out, as is a field that is None or a float that is not finite, and a
    point left with no field.

    >>> print(line_protocol([Point("drift", {"model": "a b", "feature": "x=1"},
    ...     {"statistic": 0.25, "drift": 1, "state": 'say "hi"', "ok": True, "nan": math.nan},
    ...     1_000)]).decode())
    drift,feature=x\\=1,model=a\\ b drift=1i,ok=true,state="say \\"hi\\"",statistic=0.25 1000000000
    """
    lines = []
    for item in points:
        fields = []
        for name, value in sorted(item.fields.items()):
            kind = type(value)
            # Nearly every field is a float or an int: those are told apart first.
            if isinstance(value, float) or (kind is not int and isinstance(value, np.floating)):
                if not math.isfinite(value):
                    continue
                text = str(value)
                # influxdb-client trims a whole number's ".0".
                text = text[:-2] if text.endswith(".0") else text
            elif kind is bool:
                text = "true" if value else "false"
            elif kind is int or isinstance(value, _INTEGERS):
                text = f"{value}i"
            elif isinstance(value, str):
                text = f'"{value.translate(_STRING_ESCAPES)}"'
            elif value is None:
                continue
            else:
                raise ValueError(f"field {name!r}: a {type(value).__name__} is not a field value")
            key = _FIELD_KEYS.get(name)
            if key is None:
                key = _kept(_FIELD_KEYS, name, f"{_escaped(name, _KEY_ESCAPES)}=")
            fields.append(key + text)
        if fields:
            if _TEXT.issuperset(map(type, item.tags.values())):
                # Only tags of text are kept: 1, 1.0 and True are one key but three tags.
                written = (item.measurement, *item.tags.items())
                series = _SERIES.get(written)
                if series is None:
                    series = _kept(_SERIES, written, _series(item))
            else:
                series = _series(item)
            lines.append(f"{series} {','.join(fields)} {item.time_ms * 1_000_000}")
    return "\n".join(lines).encode()


def _series(item: Point) -> str:
    """The point's measurement and tags, escaped and sorted."""
    series = [_escaped(item.measurement, _MEASUREMENT_ESCAPES)]
    series += [_tag(key, tag) for key, tag in sorted(item.tags.items()) if tag is not None]
    return ",".join(filter(None, series))


# A tuple, not a union: ``int | np.integer`` would build a union on every field.
_INTEGERS = (int, np.integer)
_TEXT = frozenset({str})
# Escaped names and tags, by the escapes they took: a worker writes the same few over and
# over. Each cache is emptied when full.
_ESCAPED: dict[int, dict[str, str]] = {id(_KEY_ESCAPES): {}, id(_MEASUREMENT_ESCAPES): {}}
# A field's escaped name and its "=", and a series (measurement and tags, as a point gives
# them) as it is written, likewise.
_FIELD_KEYS: dict[str, str] = {}
_SERIES: dict[tuple[Any, ...], str] = {}
_MOST_ESCAPED = 100_000

_K = TypeVar("_K")


def _kept(cache: dict[_K, str], key: _K, text: str) -> str:
    """``text``, kept in ``cache`` under ``key``, which is emptied first when full."""
    if len(cache) >= _MOST_ESCAPED:
        cache.clear()
    cache[key] = text
    return text


def _escaped(text: str, escapes: dict[int, str]) -> str:
    cache = _ESCAPED[id(escapes)]
    found = cache.get(text)
    return _kept(cache, text, text.translate(escapes)) if found is None else found


def _tag(key: str, value: str) -> str:
    """``key=value`` escaped; empty if either is empty (left out)."""
    key, value = _escaped(key, _KEY_ESCAPES), _escaped(str(value), _KEY_ESCAPES)
    if not (key and value):
        return ""
    # A trailing backslash would escape the separator after it.
    return f"{key}={value} " if value.endswith("\\") else f"{key}={value}"


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
        try:
            # Nanoseconds: the client's default precision (its typing rejects "ms").
            await self._client.write_api().write(bucket=self.bucket, record=line_protocol(batch))
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
