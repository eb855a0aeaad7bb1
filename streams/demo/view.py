"""The demo's live view: each model's state, and what happens as it happens (rich).

On a terminal it is a ``rich.live.Live`` screen: a table of the models (what the serving
node serves, the worker's health state, the incident injected now) over a log of the last
events. Elsewhere (a CI log, a pipe) each event is printed as one line instead.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from streams.demo.report import AlertEvent, InjectedIncident, ObservedCommand, Switch
from streams.simulate.timeline import iso_utc

__all__ = ["DemoView"]

EVENT_LINES = 14
STATE_STYLES = {
    "healthy": "green",
    "degraded": "yellow",
    "probing": "cyan",
    "fallback": "bold red",
    "live": "green",
    "shadow": "magenta",
    "unknown": "dim",
}


class DemoView:
    """The state shown on screen; the taps and the demo's loop feed it from their threads."""

    def __init__(
        self,
        console: Console,
        title: str,
        models: Sequence[str],
        incidents: Sequence[InjectedIncident],
        started_ms: int,
        duration_ms: int,
    ) -> None:
        self.console = console
        self.title = title
        self.models = list(models)
        self.incidents = list(incidents)
        self.started_ms = started_ms
        self.duration_ms = duration_ms
        self.serving: dict[str, str] = {}
        self.health: dict[str, Mapping[str, Any]] = {}
        self.status = "starting"
        self._events: collections.deque[Text] = collections.deque(maxlen=EVENT_LINES)
        self._announced: set[int] = set()
        self._lock = threading.Lock()

    # Feeding the view.

    def event(self, at_ms: int, text: str, style: str = "") -> None:
        line = Text(f"{iso_utc(at_ms)[11:23]}  ", style="dim") + Text(text, style=style)
        with self._lock:
            self._events.append(line)
        if not self.console.is_terminal:
            self.console.print(line, soft_wrap=True)

    def set_status(self, status: str) -> None:
        """What the demo is doing; off a terminal, printed when it changes."""
        if status != self.status and not self.console.is_terminal:
            self.console.print(f"demo: {status}", markup=False, highlight=False)
        self.status = status

    def on_command(self, command: ObservedCommand) -> None:
        style = "bold red" if command.action == "fallback" else "green"
        self.event(
            command.at_ms,
            f"command  {command.action} {command.model} by {command.detector} (seq {command.seq})",
            style,
        )

    def on_switch(self, switch: Switch) -> None:
        self.serving[switch.model] = switch.mode
        self.event(
            switch.at_ms,
            f"node     {switch.model} now serves {switch.mode}",
            STATE_STYLES.get(switch.mode, ""),
        )

    def on_alert(self, alert: AlertEvent) -> None:
        style = "yellow" if alert.alarm else "dim"
        self.event(
            alert.at_ms,
            f"alert    {alert.event} {alert.model} [{alert.severity}] {alert.alert_id[:8]}",
            style,
        )

    def set_health(self, models: Iterable[Mapping[str, Any]]) -> None:
        self.health = {entry["model_id"]: entry for entry in models}

    def announce_injections(self, now_ms: int) -> None:
        """An event for each incident whose injection time has come."""
        for index, incident in enumerate(self.incidents):
            if index not in self._announced and incident.at_ms <= now_ms:
                self._announced.add(index)
                target = incident.model + (f" / {incident.feature}" if incident.feature else "")
                self.event(incident.at_ms, f"inject   {incident.kind} on {target}", "bold magenta")

    # Drawing it.

    def render(self, now_ms: int | None = None) -> RenderableType:
        now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        elapsed = max(0, now_ms - self.started_ms) / 1000
        header = Text.assemble(
            (self.title, "bold"),
            f"   {elapsed:5.0f} s of {self.duration_ms / 1000:.0f} s   ",
            (self.status, "italic"),
        )
        table = Table(expand=True, box=None, pad_edge=False, header_style="bold")
        for column in ("model", "node serves", "worker state", "why", "incident now"):
            table.add_column(column)
        for model in self.models:
            serving = self.serving.get(model, "live")
            entry = self.health.get(model, {})
            state = str(entry.get("state", "unknown"))
            table.add_row(
                model,
                Text(serving, style=STATE_STYLES.get(serving, "")),
                Text(state, style=STATE_STYLES.get(state, "")),
                Text(str(entry.get("why") or ""), overflow="ellipsis", no_wrap=True),
                self._incident_now(model, now_ms),
            )
        with self._lock:
            events = list(self._events)
        return Group(
            header,
            table,
            Panel(Group(*events) if events else Text("nothing yet", style="dim"), title="events"),
        )

    def _incident_now(self, model: str, now_ms: int) -> Text:
        for incident in self.incidents:
            ended = incident.until_ms is not None and incident.until_ms < now_ms
            if incident.model == model and incident.at_ms <= now_ms and not ended:
                return Text(incident.kind, style="magenta")
        return Text("")
