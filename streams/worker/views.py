"""The worker's timers and web views.

- every ``PIPELINE_REPORT_INTERVAL`` seconds, the books and the sinks' state go to
  InfluxDB (measurement ``pipeline``);
- every ``HEARTBEAT_INTERVAL``, this worker's heartbeat goes to Alerta, and the leader
  raises an alert for a worker of this app whose heartbeat expired
  (``streams.sinks.alerta.heartbeat_alerts``);
- ``GET /failsoft/models``: each model's state, since when, why and its last evidence, as
  JSON (the models whose partitions this worker holds; the others show
  ``"state": "unknown"``);
- ``GET /metrics``, in Prometheus' text format (``streams.worker.metrics``).
"""

from __future__ import annotations

import socket
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from faust.web import Request, Response, View

from streams.monitor.effects import point
from streams.sinks.alerta import Heartbeat, heartbeat_alerts
from streams.worker.metrics import CONTENT_TYPE, render
from streams.worker.shell import Monitors

if TYPE_CHECKING:
    from streams.worker.app import FailsoftApp

__all__ = ["HEARTBEAT_INTERVAL", "PIPELINE_REPORT_INTERVAL", "add_timers", "add_views"]

PIPELINE_REPORT_INTERVAL = 10.0
HEARTBEAT_INTERVAL = 30.0
# Alerta calls the worker dead after three missed heartbeats.
HEARTBEAT_TIMEOUT = timedelta(seconds=3 * HEARTBEAT_INTERVAL)


def add_timers(app: FailsoftApp) -> None:
    origin_prefix = f"{app.settings.worker_app_id}/"
    origin = f"{origin_prefix}{socket.gethostname()}:{app.settings.worker_web_port}"

    async def report_pipeline() -> None:
        now_ms = int(time.time() * 1000)
        counters = app.counters
        for topic, consumed in counters.consumed.items():
            fields = {
                "consumed": consumed,
                "processed": counters.processed[topic],
                "dead_lettered": counters.dead_lettered_total(topic),
            }
            app.influx.enqueue(
                point("pipeline", {"agent": "ingest", "topic": topic}, fields, now_ms)
            )
        for sink in (app.alerta, app.influx):
            stats = sink.stats
            fields = {"buffered": stats.buffered, "dropped": stats.dropped}
            app.influx.enqueue(point("pipeline", {"sink": sink.name}, fields, now_ms))

    async def heartbeat() -> None:
        app.alerta.enqueue(Heartbeat(origin=origin, timeout=HEARTBEAT_TIMEOUT))

    async def watch_heartbeats() -> None:
        heartbeats = await app.alerta.fetch_heartbeats()
        for alert in heartbeat_alerts(heartbeats or [], origin_prefix):
            app.alerta.enqueue(alert)

    app.timer(PIPELINE_REPORT_INTERVAL, name="report-pipeline")(report_pipeline)
    app.timer(HEARTBEAT_INTERVAL, on_leader=True, name="watch-heartbeats")(watch_heartbeats)
    app.timer(HEARTBEAT_INTERVAL, name="heartbeat")(heartbeat)


def add_views(app: FailsoftApp, monitors: Monitors) -> None:
    @app.page("/failsoft/models")
    class Models(View):
        async def get(self, request: Request, **kwargs: Any) -> Response:
            models = [monitors.describe(model) for model in app.portfolio]
            return self.json({"worker": app.settings.worker_app_id, "models": models})

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request, **kwargs: Any) -> Response:
            return self.bytes(
                render(app.collector, app.full_collections), content_type=CONTENT_TYPE
            )
