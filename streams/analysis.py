"""Reading failsoft's InfluxDB series for analysts: Flux queries and the shapes notebooks plot.

The notebooks in ``notebooks/`` share this module. ``SeriesReader`` runs one Flux query
per measurement (see ``streams.sinks.influx`` for the schema) and returns plain rows, one
per point, with the fields pivoted into columns next to the tags. A measurement that holds
no point for the query says so (``SeriesReader.empty``) instead of failing, because some
measurements are written only by agents a deployment may not run.

The rest is pure: ``flux_select`` builds the query, ``state_intervals`` and
``time_in_state`` turn the health transitions into how long each model spent in each
state, ``latest`` keeps the last row per key.

>>> window = Window.of("2026-11-28T12:00:00Z", "2026-11-28T13:00:00Z")
>>> print(flux_select("failsoft/autogen", "health", window, {"model": "ctr-002"}))
from(bucket: "failsoft/autogen")
  |> range(start: 2026-11-28T12:00:00.000Z, stop: 2026-11-28T13:00:00.000Z)
  |> filter(fn: (r) => r._measurement == "health")
  |> filter(fn: (r) => r["model"] == "ctr-002")
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> group()
  |> sort(columns: ["_time"])
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from streams.settings import Settings
from streams.sinks.influx import MEASUREMENTS
from streams.stack.influxdb import READER, user_token_file

__all__ = [
    "ANALYST_USER",
    "Row",
    "SeriesReader",
    "StateInterval",
    "Window",
    "analyst_settings",
    "column",
    "during",
    "flux_filter",
    "flux_select",
    "flux_string",
    "format_table",
    "group_by",
    "latest",
    "state_intervals",
    "time_in_state",
]

Row = dict[str, Any]

# Flux duration units, each before any unit it starts with ("ms" and "mo" before "m").
_UNITS = "ns|us|µs|ms|s|mo|m|h|d|w|y"
_DURATION = re.compile(rf"-?(\d+({_UNITS}))+")
# Columns of Flux's result tables that are bookkeeping, not tags or fields.
_FLUX_COLUMNS = frozenset({"result", "table", "_start", "_stop", "_measurement"})


def flux_string(value: str) -> str:
    r"""``value`` as a Flux string literal; quotes, backslashes and ``${`` are escaped.

    >>> print(flux_string('a "b" ${c}'))
    "a \"b\" \${c}"
    """
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def _flux_time(name: str, value: str | datetime) -> str:
    """A Flux time: a relative duration (``-6h``), ``now()``, or an absolute ISO 8601 time."""
    if isinstance(value, datetime):
        return _iso(value if value.tzinfo is not None else value.replace(tzinfo=UTC))
    text = value.strip()
    if text == "now()" or _DURATION.fullmatch(text):
        return text
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{name}={value!r}: expected a duration such as -6h, now(), or an ISO 8601 time"
        ) from None
    return _flux_time(name, moment)


@dataclasses.dataclass(frozen=True)
class Window:
    """The time range of a query, as Flux expressions (``start`` inclusive, ``stop`` not).

    >>> Window.of("-6h")
    Window(start='-6h', stop='now()')
    >>> Window.of("yesterday")
    Traceback (most recent call last):
    ...
    ValueError: start='yesterday': expected a duration such as -6h, now(), or an ISO 8601 time
    """

    start: str
    stop: str = "now()"

    @classmethod
    def of(cls, start: str | datetime, stop: str | datetime = "now()") -> Window:
        return cls(_flux_time("start", start), _flux_time("stop", stop))

    def stop_time(self, now: datetime) -> datetime:
        """The stop as a time, with relative stops (``now()``, ``-1h``) taken from ``now``.

        >>> now = datetime(2026, 1, 1, tzinfo=UTC)
        >>> Window.of("-2h", "-1h").stop_time(now).isoformat()
        '2025-12-31T23:00:00+00:00'
        """
        if self.stop == "now()":
            return now
        if _DURATION.fullmatch(self.stop):
            offset = _parse_duration(self.stop)
            return now - offset if self.stop.startswith("-") else now + offset
        return datetime.fromisoformat(self.stop.replace("Z", "+00:00"))


_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 604800,
    "mo": 2_592_000,
    "y": 31_536_000,
}


def _parse_duration(text: str) -> timedelta:
    """A Flux duration without its sign; months and years are taken as 30 and 365 days.

    >>> _parse_duration("1h30m")
    datetime.timedelta(seconds=5400)
    """
    return timedelta(
        seconds=sum(
            int(amount) * _UNIT_SECONDS[unit]
            for amount, unit in re.findall(rf"(\d+)({_UNITS})", text)
        )
    )


def flux_select(
    bucket: str,
    measurement: str,
    window: Window,
    tags: Mapping[str, str] | None = None,
    fields: Sequence[str] | None = None,
) -> str:
    """Flux for one measurement's points in ``window``: one row per point, fields as columns.

    ``tags`` keeps the points whose tags have those values; ``fields`` keeps only those
    fields (all by default). Rows come in time order, across every series.

    Raises
    ------
    ValueError
        When the measurement or a tag is not in failsoft's schema.
    """
    return "\n".join(
        [
            flux_filter(bucket, measurement, window, tags, fields),
            '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
            "  |> group()",
            '  |> sort(columns: ["_time"])',
        ]
    )


def flux_filter(
    bucket: str,
    measurement: str,
    window: Window,
    tags: Mapping[str, str] | None = None,
    fields: Sequence[str] | None = None,
) -> str:
    """Flux for one measurement's records in ``window``, one per field and point.

    Raises
    ------
    ValueError
        When the measurement or a tag is not in failsoft's schema.
    """
    allowed = MEASUREMENTS.get(measurement)
    if allowed is None:
        raise ValueError(f"measurement {measurement!r} is not one of {sorted(MEASUREMENTS)}")
    lines = [
        f"from(bucket: {flux_string(bucket)})",
        f"  |> range(start: {window.start}, stop: {window.stop})",
        f"  |> filter(fn: (r) => r._measurement == {flux_string(measurement)})",
    ]
    for tag, value in (tags or {}).items():
        if tag not in allowed:
            raise ValueError(f"tag {tag!r} is not one of {sorted(allowed)} for {measurement}")
        lines.append(f"  |> filter(fn: (r) => r[{flux_string(tag)}] == {flux_string(value)})")
    if fields:
        wanted = " or ".join(f"r._field == {flux_string(field)}" for field in fields)
        lines.append(f"  |> filter(fn: (r) => {wanted})")
    return "\n".join(lines)


# The local stack's read-only InfluxDB user.
ANALYST_USER = READER


def analyst_settings(settings: Settings) -> Settings:
    """``settings`` reading InfluxDB as the local stack's read-only user rather than with
    the default token (the stack's admin), when no other token was given
    (``FAILSOFT_INFLUXDB_TOKEN`` or ``_FILE``) and the stack has made that user; as they
    are otherwise. Against another server, give its read-only user's token."""
    if settings.secret("influxdb_token") != Settings().influxdb_token:
        return settings
    reader = user_token_file(settings, ANALYST_USER)
    if not reader.exists():
        return settings
    # The inline token stays the default, which a token file may stand beside.
    return dataclasses.replace(settings, influxdb_token_file=str(reader))


class SeriesReader:
    """Runs ``flux_select`` queries on one bucket; remembers which measurements were empty.

    ``client`` is an ``influxdb_client.InfluxDBClient``; ``from_settings`` opens one on the
    settings' URL, token and org (close it with ``close``). ``user`` is the InfluxDB user
    it reads as, for the record.
    """

    def __init__(self, client: Any, bucket: str, org: str, user: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.org = org
        self.user = user
        self.counts: dict[str, int] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> SeriesReader:
        from influxdb_client import InfluxDBClient

        token = settings.secret("influxdb_token")
        client = InfluxDBClient(url=settings.influxdb_url, token=token, org=settings.influxdb_org)
        # InfluxDB 1.8 takes ``user:password`` as the token.
        user = token.partition(":")[0]
        return cls(client, settings.influxdb_bucket, settings.influxdb_org, user)

    def close(self) -> None:
        self.client.close()

    @property
    def empty(self) -> list[str]:
        """The measurements read so far that held no point for their query."""
        return sorted(name for name, count in self.counts.items() if count == 0)

    def rows(
        self,
        measurement: str,
        window: Window,
        tags: Mapping[str, str] | None = None,
        fields: Sequence[str] | None = None,
    ) -> list[Row]:
        """The points as rows: ``time`` (a UTC datetime), the point's tags and fields.

        When nothing matches, prints why that may be and returns an empty list.
        """
        flux = flux_select(self.bucket, measurement, window, tags, fields)
        tables = self.client.query_api().query(flux, org=self.org)
        rows = [_row(record.values) for table in tables for record in table.records]
        self.counts[measurement] = self.counts.get(measurement, 0) + len(rows)
        if not rows:
            where = ", ".join(f"{tag}={value}" for tag, value in (tags or {}).items())
            print(
                f"No '{measurement}' points in {self.bucket} from {window.start} to "
                f"{window.stop}{' for ' + where if where else ''}: the pipeline does not "
                "write this measurement yet, or nothing happened in this range."
            )
        return rows

    def first_seen(
        self,
        measurement: str,
        field: str,
        window: Window,
        tags: Mapping[str, str] | None = None,
    ) -> dict[str, datetime]:
        """The time of each model's first value of ``field`` of ``measurement`` in ``window``."""
        flux = flux_filter(self.bucket, measurement, window, tags, [field]) + (
            '\n  |> group(columns: ["model"])\n  |> min(column: "_time")'
        )
        tables = self.client.query_api().query(flux, org=self.org)
        return {
            record.values["model"]: record.get_time()
            for table in tables
            for record in table.records
        }


def _row(values: Mapping[str, Any]) -> Row:
    row = {key: value for key, value in values.items() if key not in _FLUX_COLUMNS}
    row["time"] = row.pop("_time")
    return row


@dataclasses.dataclass(frozen=True)
class StateInterval:
    """A model in one health state from ``start`` until ``end``."""

    model: str
    state: str
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def state_intervals(
    health: Iterable[Row], stop: datetime, first_seen: Mapping[str, datetime] | None = None
) -> list[StateInterval]:
    """Each model's states between its transitions; the last one lasts until ``stop``.

    ``health`` rows are transitions (fields ``state``, tag ``model``), in any order. A
    model's health policy starts healthy, so a model in ``first_seen`` (e.g. the time of
    its first drift point) is healthy from then until its first transition, or until
    ``stop`` if it has none. Without it, time before a model's first transition is not
    counted.

    >>> t = lambda s: datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=s)
    >>> rows = [{"model": "a", "state": "degraded", "time": t(5)},
    ...         {"model": "a", "state": "fallback", "time": t(10)}]
    >>> [(i.model, i.state, i.seconds) for i in state_intervals(rows, t(40), {"b": t(0)})]
    [('a', 'degraded', 5.0), ('a', 'fallback', 30.0), ('b', 'healthy', 40.0)]
    """
    by_model: dict[str, list[Row]] = {model: [] for model in first_seen or {}}
    for row in health:
        by_model.setdefault(row["model"], []).append(row)
    intervals: list[StateInterval] = []
    for model, rows in sorted(by_model.items()):
        rows.sort(key=lambda row: row["time"])
        seen = (first_seen or {}).get(model)
        if seen is not None and (not rows or seen < rows[0]["time"]):
            rows.insert(0, {"model": model, "state": "healthy", "time": seen})
        ends = [row["time"] for row in rows[1:]] + [max(stop, rows[-1]["time"])]
        intervals += [
            StateInterval(model, row["state"], row["time"], end)
            for row, end in zip(rows, ends, strict=True)
        ]
    return intervals


def during(rows: Iterable[Row], intervals: Iterable[StateInterval], state: str) -> list[Row]:
    """The rows whose model was in ``state`` at the row's time.

    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> on = [StateInterval("a", "fallback", t, t + timedelta(seconds=10))]
    >>> rows = [{"model": "a", "time": t + timedelta(seconds=s)} for s in (5, 15)]
    >>> [row["time"].second for row in during(rows, on, "fallback")]
    [5]
    """
    spans: dict[str, list[StateInterval]] = {}
    for interval in intervals:
        if interval.state == state:
            spans.setdefault(interval.model, []).append(interval)
    return [
        row
        for row in rows
        if any(span.start <= row["time"] < span.end for span in spans.get(row.get("model", ""), []))
    ]


def time_in_state(intervals: Iterable[StateInterval]) -> dict[str, dict[str, float]]:
    """Seconds per model and state.

    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> time_in_state([StateInterval("a", "fallback", t, t + timedelta(seconds=5))] * 2)
    {'a': {'fallback': 10.0}}
    """
    seconds: dict[str, dict[str, float]] = {}
    for interval in intervals:
        per_state = seconds.setdefault(interval.model, {})
        per_state[interval.state] = per_state.get(interval.state, 0.0) + interval.seconds
    return seconds


def latest(rows: Iterable[Row], keys: Sequence[str]) -> list[Row]:
    """The last row (in time) of each combination of ``keys``, sorted by those keys.

    >>> rows = [{"feature": "f", "score": 1, "time": 1}, {"feature": "f", "score": 2, "time": 2}]
    >>> latest(rows, ["feature"])
    [{'feature': 'f', 'score': 2, 'time': 2}]
    """
    last: dict[tuple[Any, ...], Row] = {}
    for row in rows:
        key = tuple(row.get(name) for name in keys)
        if key not in last or row["time"] >= last[key]["time"]:
            last[key] = row
    return [last[key] for key in sorted(last, key=lambda key: tuple(map(str, key)))]


def group_by(rows: Iterable[Row], keys: Sequence[str]) -> dict[tuple[Any, ...], list[Row]]:
    """Rows per combination of ``keys`` (missing tags as ``""``), in key order.

    >>> rows = [{"model": "b", "time": 1}, {"model": "a", "time": 2}]
    >>> list(group_by(rows, ["model"]))
    [('a',), ('b',)]
    """
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(name, "") for name in keys), []).append(row)
    return dict(sorted(groups.items(), key=lambda item: tuple(map(str, item[0]))))


def column(rows: Iterable[Row], field: str) -> list[float]:
    """One numeric field of ``rows``, NaN where a row lacks it (matplotlib leaves a gap).

    >>> column([{"value": 1}, {}], "value")
    [1.0, nan]
    """
    return [float("nan") if row.get(field) is None else float(row[field]) for row in rows]


def format_table(rows: Sequence[Row], columns: Sequence[str]) -> str:
    """``rows`` as a fixed-width text table; floats with 4 significant digits.

    >>> print(format_table([{"model": "a", "p99_ms": 1234.5678}], ["model", "p99_ms"]))
    model  p99_ms
    a      1235
    """
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [
        max(len(text) for text in [column, *(r[i] for r in cells)])
        for i, column in enumerate(columns)
    ]
    lines = [list(columns), *cells]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, datetime):
        return _iso(value)
    return str(value)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
