"""Alerta: one alert per model and detector, following the model's health.

How failsoft uses Alerta's de-duplication and correlation (both match on environment and
resource; the resource is always the model_id):

- **Health.** One alert per model. Its event names the state (``ModelHealthy``,
  ``ModelDegraded``, ``ModelFallback``, ``ModelProbing``) and every state event is in the
  others' ``correlate`` list, so a state change updates the same alert. Severity follows
  the state: degraded is warning, fallback major, probing minor, and healthy is normal,
  which closes the alert: a restore closes the fallback alert.
- **Detectors.** One alert per model and detector: event = the detector's name (for
  example ``drift`` or ``label_leak``), with the feature in the text and attributes. The
  same event again with the same severity is a duplicate (Alerta counts it); with severity
  normal it closes.
- **Escalation.** A model on fallback past its escalation limit raises a separate critical
  alert, ``FallbackEscalated``, so that it pages even if the fallback alert was
  acknowledged; ``EscalationCleared`` (normal) closes it when the model is restored.
- **Heartbeat.** Workers send ``Heartbeat`` records with a timeout. Alerta only marks a
  late heartbeat ``expired``; it never alerts by itself. The leader worker therefore reads
  the heartbeats of its app's workers (``fetch_heartbeats``) and turns them into alerts
  with ``heartbeat_alerts``: ``HeartbeatFail`` (resource = the worker's origin) when one
  expired, ``HeartbeatOK`` (normal, closes it) when it beats again. These are the events
  and attributes that ``alerta heartbeats --alert`` uses, so running that command from cron
  instead (if every worker is down, nobody is left to raise the alarm) is equivalent.

Sending is asynchronous and never blocks the caller; see ``streams.sinks.buffer``.

Damping. Given a ``detectors.AlertDamping``, the sink holds back an alert's changes that
are not escalations for the damping period (one alert per resource, group and, for
detector alerts, event): a detector that crosses its threshold back and forth pages once,
and its newest state follows when the period has passed. The period is wall-clock time
(the sink's clock), because it spaces out pages to people: event time runs far ahead of
it in a replay, a backlog, or the demo's compressed days. Held alerts are released every
second and, newest state first, when the sink stops; a worker that crashes loses them, and
Alerta then shows the last state sent until the next change.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp

from detectors.health.damping import AlertDamping

# The alerts themselves are the monitors' effects (plain data); this module sends them.
from streams.monitor.effects import (
    HEALTH_EVENTS,
    HEALTH_SEVERITIES,
    SERVICE,
    Alert,
    detector_alert,
    escalation_alert,
    escalation_cleared,
    health_alert,
)
from streams.sinks.buffer import (
    DEFAULT_BACKOFF,
    DEFAULT_SPOOL_BYTES,
    Backoff,
    BufferedSink,
    SinkRejected,
    TransientSinkError,
)

__all__ = [
    "HEALTH_EVENTS",
    "HEALTH_SEVERITIES",
    "Alert",
    "AlertaSink",
    "Heartbeat",
    "detector_alert",
    "escalation_alert",
    "escalation_cleared",
    "health_alert",
    "heartbeat_alerts",
]

HEARTBEAT_EVENTS = ("HeartbeatFail", "HeartbeatSlow", "HeartbeatOK")
# Alerta caps a page; a large one keeps the leader's periodic watch to a request or two.
HEARTBEAT_PAGE_SIZE = 1000
# How often held alerts are looked at (seconds); the damping period is minutes.
DAMPING_RELEASE_INTERVAL = 1.0


@dataclasses.dataclass(frozen=True)
class Heartbeat:
    """A worker's sign of life; Alerta marks it expired after ``timeout``."""

    origin: str
    timeout: timedelta
    severity: str = "major"


def heartbeat_alerts(heartbeats: Iterable[Mapping[str, Any]], origin_prefix: str) -> list[Alert]:
    """Alerts for the heartbeats (as Alerta lists them) whose origin starts with the prefix.

    >>> beats = [{"origin": "w/a", "status": "expired", "timeout": 90, "since": 200},
    ...          {"origin": "w/b", "status": "ok", "timeout": 90, "since": 3},
    ...          {"origin": "other/c", "status": "expired", "timeout": 90, "since": 999}]
    >>> [(a.resource, a.event, a.severity) for a in heartbeat_alerts(beats, "w/")]
    [('w/a', 'HeartbeatFail', 'major'), ('w/b', 'HeartbeatOK', 'normal')]
    """
    alerts = []
    for beat in heartbeats:
        origin = str(beat.get("origin", ""))
        if not origin.startswith(origin_prefix):
            continue
        status = beat.get("status")
        silent = f"last heartbeat {beat.get('since')} s ago, timeout {beat.get('timeout')} s"
        if status == "expired":
            event, severity, text = HEARTBEAT_EVENTS[0], "major", f"{origin} is silent: {silent}"
        elif status == "ok":
            event, severity, text = HEARTBEAT_EVENTS[2], "normal", f"{origin} is alive"
        else:
            # "slow" is about network latency; the worker is alive.
            continue
        alerts.append(
            Alert(
                resource=origin,
                event=event,
                severity=severity,
                group="heartbeat",
                text=text,
                correlate=HEARTBEAT_EVENTS,
            )
        )
    return alerts


class AlertaSink(BufferedSink[Alert | Heartbeat]):
    """Posts alerts and heartbeats to Alerta's HTTP API, one request per item, in order.

    ``alert_ids`` maps (resource, event) to the id Alerta gave the last alert sent with
    them; correlated and duplicate alerts keep one id. A ``customer`` goes with every
    alert: Alerta de-duplicates and correlates within a customer only, so two runs with
    customers of their own never update each other's alerts. ``damping`` holds back
    alerts' flaps (see the module docstring); ``clock`` is its time in seconds. With a
    ``spool`` folder, the alerts of an outage outlive the worker (``streams.sinks.buffer``);
    heartbeats do not: a dead worker's would say it is alive.
    """

    name = "alerta"

    def __init__(
        self,
        endpoint: str,
        api_key: str,
        environment: str,
        *,
        customer: str | None = None,
        capacity: int = 10_000,
        request_timeout: float = 5.0,
        backoff: Backoff = DEFAULT_BACKOFF,
        damping: AlertDamping | None = None,
        clock: Callable[[], float] = time.monotonic,
        spool: Path | None = None,
        spool_bytes: int = DEFAULT_SPOOL_BYTES,
    ) -> None:
        super().__init__(
            capacity=capacity,
            batch_size=1,
            flush_interval=0,
            backoff=backoff,
            spool=spool,
            spool_bytes=spool_bytes,
        )
        self.endpoint = endpoint.rstrip("/")
        self.environment = environment
        self.customer = customer or None
        self.damping = damping
        self.clock = clock
        self._releaser: asyncio.Task[None] | None = None
        self.alert_ids: dict[tuple[str, str], str] = {}
        self._headers = {"Authorization": f"Key {api_key}"}
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._session: aiohttp.ClientSession | None = None

    def enqueue(self, item: Alert | Heartbeat) -> bool:
        """Queue ``item``, unless damping holds it back; never blocks. False if one was dropped."""
        if self.damping is None or not isinstance(item, Alert):
            return super().enqueue(item)
        key = item.resource, item.group, item.event if item.group == "detector" else ""
        passed = self.damping.offer("/".join(key), item.severity, self.clock(), item)
        kept = True
        for alert in passed:
            kept = super().enqueue(alert) and kept
        return kept

    @property
    def held(self) -> int:
        """Alerts that damping holds back for now."""
        return 0 if self.damping is None else self.damping.held

    def start(self) -> None:
        super().start()
        if self.damping is not None and self._releaser is None:
            self._releaser = asyncio.get_running_loop().create_task(
                self._release_held(), name=f"{self.name}-damping"
            )

    async def stop(self, timeout: float = 5.0) -> None:
        if self._releaser is not None:
            self._releaser.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._releaser
            self._releaser = None
        if self.damping is not None:
            # On-call is left with each alert's newest state, not the last one paged.
            for alert in self.damping.release(math.inf):
                super().enqueue(alert)
        await super().stop(timeout)

    async def _release_held(self) -> None:
        assert self.damping is not None
        while True:
            await asyncio.sleep(DAMPING_RELEASE_INTERVAL)
            for alert in self.damping.release(self.clock()):
                super().enqueue(alert)

    async def deliver(self, batch: Sequence[Alert | Heartbeat]) -> None:
        for item in batch:
            if isinstance(item, Alert):
                body = await self._post("/alert", self._alert_body(item))
                self.alert_ids[item.resource, item.event] = body["id"]
            else:
                await self._post("/heartbeat", self._heartbeat_body(item))

    def keeps(self, item: Alert | Heartbeat) -> bool:
        return isinstance(item, Alert)

    def encode_item(self, item: Alert | Heartbeat) -> Any:
        return dataclasses.asdict(item)

    def decode_item(self, data: Any) -> Alert | Heartbeat:
        data["correlate"] = tuple(data["correlate"])
        data["service"] = tuple(data["service"])
        return Alert(**data)

    async def fetch_heartbeats(self) -> list[dict[str, Any]] | None:
        """Alerta's heartbeats with their status; None when Alerta cannot be asked now.

        Alerta pages its list (50 a page by default); a watch that read only the first
        page would never see the workers beyond it die, so every page is read.
        """
        heartbeats: list[dict[str, Any]] = []
        page = 1
        while True:
            params = {"page": str(page), "page-size": str(HEARTBEAT_PAGE_SIZE)}
            try:
                async with self._client().get(
                    self.endpoint + "/heartbeats", params=params
                ) as response:
                    if response.status != 200:
                        return None
                    body = await response.json()
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
                return None
            listed = body.get("heartbeats") if isinstance(body, dict) else None
            if not isinstance(listed, list):
                return None
            heartbeats.extend(listed)
            if not body.get("more"):
                return heartbeats
            page += 1

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self._session

    async def close_transport(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _alert_body(self, alert: Alert) -> dict[str, Any]:
        body = {
            "resource": alert.resource,
            "event": alert.event,
            "environment": self.environment,
            "severity": alert.severity,
            "correlate": list(alert.correlate),
            "service": list(alert.service),
            "group": alert.group,
            "value": alert.value,
            "text": alert.text,
            "attributes": dict(alert.attributes),
            "origin": SERVICE,
            "type": "failsoftAlert",
        }
        if self.customer is not None:
            body["customer"] = self.customer
        return body

    def _heartbeat_body(self, heartbeat: Heartbeat) -> dict[str, Any]:
        return {
            "origin": heartbeat.origin,
            "timeout": max(1, round(heartbeat.timeout.total_seconds())),
            "tags": [SERVICE],
            # The keys `alerta heartbeats --alert` reads to build the expiry alert.
            "attributes": {
                "environment": self.environment,
                "severity": heartbeat.severity,
                "service": [SERVICE],
                "group": "heartbeat",
            },
        }

    async def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            async with self._client().post(self.endpoint + path, json=payload) as response:
                text = await response.text()
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise TransientSinkError(f"POST {path}: {type(error).__name__}: {error}") from None
        if status in (408, 429) or status >= 500:
            raise TransientSinkError(f"POST {path}: HTTP {status}: {text[:200]}")
        if status >= 400:
            raise SinkRejected(f"POST {path}: HTTP {status}: {text[:200]}")
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise SinkRejected(f"POST {path}: HTTP {status} with a body that is not a JSON object")
        return body
