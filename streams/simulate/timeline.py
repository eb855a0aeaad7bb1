"""The scenario's ground truth: what was injected, into which model or feature, and when.

One JSON object per line and per incident, with times on the compressed clock of the
messages, both in ISO 8601 (UTC) and in epoch seconds:

``index`` (1-based, as in the scenario file), ``kind``, ``model``, ``feature`` (or null),
``at``/``at_epoch``, ``until``/``until_epoch`` (null when it lasts to the end),
``recovers`` (false for an incident that lasts to the end, e.g. a model that stays
broken), ``nominal_at``/``nominal_until`` (offsets in the simulated world, in seconds),
and ``params`` (the kind's parameters; durations in nominal seconds).

>>> from datetime import timedelta
>>> from streams.simulate.scenario import Incident
>>> incident = Incident("label_leak", "fraud-001", timedelta(hours=1), "fraud-001.amount")
>>> record = timeline_records([incident], start_ms=1_800_000_000_000, time_scale=3600)[0]
>>> record["at"], record["at_epoch"], record["until"], record["recovers"]
('2027-01-15T08:00:01.000Z', 1800000001.0, None, False)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from streams.simulate.scenario import Incident
from streams.simulate.traffic import compressed_ms

__all__ = ["iso_utc", "timeline_records", "write_timeline"]


def iso_utc(epoch_ms: float) -> str:
    """ISO 8601 in UTC with milliseconds and a ``Z``."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def timeline_records(
    incidents: Sequence[Incident], *, start_ms: int, time_scale: float
) -> list[dict[str, Any]]:
    records = []
    for index, incident in enumerate(incidents, start=1):
        at_ms = start_ms + compressed_ms(incident.at, time_scale)
        until_ms = (
            None if incident.until is None else start_ms + compressed_ms(incident.until, time_scale)
        )
        records.append(
            {
                "index": index,
                "kind": incident.kind,
                "model": incident.model,
                "feature": incident.feature,
                "at": iso_utc(at_ms),
                "at_epoch": round(at_ms / 1000, 3),
                "until": None if until_ms is None else iso_utc(until_ms),
                "until_epoch": None if until_ms is None else round(until_ms / 1000, 3),
                "recovers": incident.recovers,
                "nominal_at": incident.at.total_seconds(),
                "nominal_until": None if incident.until is None else incident.until.total_seconds(),
                "params": {
                    key: value.total_seconds() if isinstance(value, timedelta) else value
                    for key, value in incident.params
                },
            }
        )
    return records


def write_timeline(path: str | Path, records: Sequence[dict[str, Any]]) -> None:
    """Write the records as JSON Lines, replacing the file."""
    with Path(path).open("w", encoding="utf-8") as stream:
        for record in records:
            stream.write(json.dumps(record, sort_keys=False) + "\n")
