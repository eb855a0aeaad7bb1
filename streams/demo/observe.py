"""What the demo watches while it runs: the control topic, the serving node, and Alerta.

Each tap runs on a thread of its own, appends what it sees to a list the report reads
at the end (``ObservedCommand``, ``Switch``, ``AlertEvent``), and hands each new item to
``on_item`` for the live view. A tap never raises into the demo: a failed poll is
counted and tried again.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

from schemas.codec import decode_control_command
from schemas.contracts import ControlCommand
from streams.demo.report import (
    VERDICT_EVENTS,
    AlertEvent,
    ObservedCommand,
    Switch,
    parse_iso_ms,
)
from streams.settings import Settings
from streams.simulate.timeline import iso_utc
from streams.topics import CONTROL

__all__ = ["AlertaTap", "ControlTap", "SwitchTap"]

ALERTA_POLL_S = 2.0
# A health alert's text names its detector in brackets: "m is degraded (drift_psi): ...".
_DETECTOR_IN_TEXT = re.compile(r"\(([A-Za-z0-9_.:-]+)\)")


class _Tap:
    def __init__(self, on_item: Callable[[Any], None] | None) -> None:
        self.items: list[Any] = []
        self.errors = 0
        self.last_error: str | None = None
        self.on_item = on_item
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def _add(self, item: Any) -> None:
        with self._lock:
            self.items.append(item)
        if self.on_item is not None:
            self.on_item(item)

    def snapshot(self) -> list[Any]:
        with self._lock:
            return list(self.items)

    def _failed(self, error: Exception) -> None:
        self.errors += 1
        self.last_error = str(error)


class SwitchTap(_Tap):
    """The serving node's mode changes, timed on the listener thread as they happen."""

    def on_change(self, change: Any) -> None:
        """A ``ControlListener.on_change`` callback."""
        self._add(Switch(change.model_id, change.new, time.time_ns() // 1_000_000))


class ControlTap(_Tap):
    """Every command on the run's control topic, with the time it was produced."""

    def __init__(
        self, settings: Settings, on_item: Callable[[ObservedCommand], None] | None = None
    ) -> None:
        super().__init__(on_item)
        self.topic = CONTROL.name(settings)
        self._bootstrap = settings.kafka_bootstrap
        self._thread = threading.Thread(target=self._run, name="demo-control-tap", daemon=True)

    def start(self) -> ControlTap:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        consumer = Consumer(
            {
                "bootstrap.servers": self._bootstrap,
                "group.id": "failsoft-demo-tap",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
        )
        consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
        try:
            while not self._stopping.is_set():
                message = consumer.poll(0.2)
                if message is None:
                    continue
                if message.error() is not None:
                    self._failed(Exception(str(message.error())))
                    continue
                command = decode_control_command(message.value())
                if isinstance(command, ControlCommand):
                    _, produced_at = message.timestamp()
                    self._add(
                        ObservedCommand(
                            command.model_id,
                            command.action,
                            command.detector,
                            produced_at,
                            command.seq,
                            command.issued_at,
                            command.level,
                        )
                    )
        finally:
            consumer.close()


class AlertaTap(_Tap):
    """The history of every alert about the given models since ``since_ms``, polled.

    Alerta keeps one alert per model and detector and records each change of event or
    severity in its history, with the time it received it; those entries are the events.
    Only alerts of the settings' environment received since ``since_ms`` are read, and of
    those none with a customer other than the settings' ``alerta_customer``: runs whose
    workers set customers of their own never read each other's alerts. An alert without a
    customer comes from a worker that sets none, and is read.
    """

    def __init__(
        self,
        settings: Settings,
        models: Iterable[str],
        since_ms: int,
        on_item: Callable[[AlertEvent], None] | None = None,
    ) -> None:
        super().__init__(on_item)
        self._endpoint = settings.alerta_endpoint.rstrip("/")
        self._headers = {"Authorization": f"Key {settings.secret('alerta_api_key')}"}
        self._environment = settings.alerta_environment
        self._customer = settings.alerta_customer or None
        self._models = sorted(models)
        self._since_ms = since_ms
        self._seen_entries: set[tuple[str, str, str]] = set()
        self._last_receive: dict[str, str] = {}
        self._thread = threading.Thread(target=self._run, name="demo-alerta-tap", daemon=True)

    def start(self) -> AlertaTap:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._thread.join(timeout)

    def poll(self) -> None:
        """Read the alerts changed since the last poll and add their new history entries."""
        query = [
            ("environment", self._environment),
            ("from-date", iso_utc(self._since_ms)),
            ("page-size", "1000"),
        ]
        query += [("resource", model) for model in self._models]
        listing = self._get("/alerts?" + urllib.parse.urlencode(query))
        for alert in listing.get("alerts", []):
            if alert.get("customer") not in (None, self._customer):
                continue
            receive_id = str(alert.get("lastReceiveId"))
            if self._last_receive.get(alert["id"]) == receive_id:
                continue
            detail = self._get(f"/alert/{alert['id']}")["alert"]
            for entry in detail.get("history", []):
                self._entry(alert, entry)
            self._last_receive[alert["id"]] = receive_id

    def _entry(self, alert: dict[str, Any], entry: dict[str, Any]) -> None:
        if entry.get("type") not in ("new", "severity"):
            return
        at_ms = parse_iso_ms(entry["updateTime"])
        key = (alert["id"], str(entry.get("event")), entry["updateTime"])
        if at_ms < self._since_ms or key in self._seen_entries:
            return
        self._seen_entries.add(key)
        group = str(alert.get("group", ""))
        if group == "detector":
            detector: str | None = str(entry.get("event"))
            if detector in VERDICT_EVENTS:
                detector = f"{detector}:{entry.get('value')}"
        else:
            found = _DETECTOR_IN_TEXT.search(str(entry.get("text", "")))
            detector = found.group(1) if found else None
        self._add(
            AlertEvent(
                alert_id=alert["id"],
                model=alert["resource"],
                group=group,
                event=str(entry.get("event")),
                severity=str(entry.get("severity")),
                at_ms=at_ms,
                detector=detector,
            )
        )

    def _get(self, path: str) -> dict[str, Any]:
        request = urllib.request.Request(self._endpoint + path, headers=self._headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            body: dict[str, Any] = json.load(response)
        return body

    def _run(self) -> None:
        while not self._stopping.wait(ALERTA_POLL_S):
            try:
                self.poll()
            except Exception as error:  # an unreachable Alerta must not end the demo
                self._failed(error)
