"""The Alerta and InfluxDB sinks against the real servers of the local stack.

Outages are simulated with a TCP proxy in front of the real server (tests/streams/proxy.py):
the sink first sees a closed port, then the proxy opens and everything queued arrives at
the real server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from detectors.health.damping import AlertDamping
from streams.settings import Settings
from streams.sinks.alerta import (
    AlertaSink,
    Heartbeat,
    detector_alert,
    escalation_alert,
    escalation_cleared,
    health_alert,
    heartbeat_alerts,
)
from streams.sinks.buffer import ADOPT_EVERY, Backoff
from streams.sinks.influx import InfluxSink, Point, point
from tests.streams.proxy import TcpProxy, free_port

pytestmark = pytest.mark.integration

FAST = Backoff(initial=0.05, maximum=0.2)
ROOT = Path(__file__).resolve().parents[2]
# A sink of a worker whose server is down: half its items queued before a delivery failed,
# half after; it says so and waits to be killed, or to be stopped (SIGTERM) as a worker
# stops its sinks.
SINK_IN_AN_OUTAGE = """
import asyncio, signal, sys, time
from pathlib import Path
from streams.settings import Settings
from streams.sinks.alerta import AlertaSink, detector_alert
from streams.sinks.buffer import Backoff
from streams.sinks.influx import InfluxSink, point

kind, url, spool, name, count = sys.argv[1:]
settings = Settings.from_env()
fast = Backoff(initial=0.05, maximum=0.2)


async def main():
    if kind == "influxdb":
        sink = InfluxSink(url, settings.influxdb_token, settings.influxdb_org,
                          settings.influxdb_bucket, request_timeout=2.0, backoff=fast,
                          spool=Path(spool))
        items = [point("pipeline", {"agent": name}, {"consumed": n}, 1_000_000 + n)
                 for n in range(int(count))]
    else:
        sink = AlertaSink(url, settings.alerta_api_key, settings.alerta_environment,
                          request_timeout=2.0, backoff=fast, spool=Path(spool))
        items = [detector_alert(f"{name}-{n}", "team-test", "drift", "minor", "x")
                 for n in range(int(count))]
    sink.start()
    for item in items[: len(items) // 2]:
        sink.enqueue(item)
    while not sink.stats.failed_attempts:
        await asyncio.sleep(0.01)
    for item in items[len(items) // 2 :]:
        sink.enqueue(item)
    stopped = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set)
    print("in an outage", flush=True)
    await stopped.wait()
    await sink.stop(1.0)


asyncio.run(main())
"""


def kill_sink_in_an_outage(
    kind: str, spool: Path, name: str, count: int, sig: signal.Signals = signal.SIGKILL
) -> None:
    """Run a sink against a closed port until a delivery has failed, then SIGKILL it, or
    SIGTERM it (it stops its sink) and wait for it to exit."""
    closed = f"http://127.0.0.1:{free_port()}"
    child = subprocess.Popen(
        [sys.executable, "-c", SINK_IN_AN_OUTAGE, kind, closed, str(spool), name, str(count)],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "in an outage\n"
        os.kill(child.pid, sig)
        assert child.wait(timeout=10) == (-sig if sig == signal.SIGKILL else 0)
    finally:
        child.kill()
        child.wait()


def alerta_sink(settings: Settings, endpoint: str | None = None, capacity: int = 100) -> AlertaSink:
    return AlertaSink(
        endpoint or settings.alerta_endpoint,
        settings.alerta_api_key,
        settings.alerta_environment,
        capacity=capacity,
        request_timeout=2.0,
        backoff=FAST,
    )


class CountingInfluxSink(InfluxSink):
    """Counts write requests, to show that points go in batches."""

    requests = 0

    async def deliver(self, batch: Sequence[Point]) -> None:
        self.requests += 1
        await super().deliver(batch)


def influx_sink(settings: Settings, url: str | None = None, **kwargs: Any) -> CountingInfluxSink:
    kwargs.setdefault("backoff", FAST)
    return CountingInfluxSink(
        url or settings.influxdb_url,
        settings.influxdb_token,
        settings.influxdb_org,
        settings.influxdb_bucket,
        request_timeout=2.0,
        **kwargs,
    )


def alerts_of(alerta_client: Any, resource: str) -> list[Any]:
    return list(alerta_client.get_alerts(query=[("resource", resource)]))


def influx_rows(influxdb_client: Any, settings: Settings, measurement: str, model: str) -> list:
    flux = f"""
        from(bucket: "{settings.influxdb_bucket}")
          |> range(start: -1h)
          |> filter(fn: (r) => r._measurement == "{measurement}" and r.model == "{model}")
    """
    tables = influxdb_client.query_api().query(flux, org=settings.influxdb_org)
    return [record for table in tables for record in table.records]


async def test_alerta_duplicate_is_counted_and_closing_alert_closes_it(
    alerta_client: Any, stack_settings: Settings, unique_name: str
) -> None:
    sink = alerta_sink(stack_settings)
    sink.start()
    alert = detector_alert(unique_name, "team-test", "label_leak", "major", "leak", "last_login")
    sink.enqueue(alert)
    sink.enqueue(alert)
    assert await sink.flush(timeout=10)

    [stored] = alerts_of(alerta_client, unique_name)
    assert (stored.event, stored.severity, stored.status) == ("label_leak", "major", "open")
    assert stored.duplicate_count == 1
    assert stored.attributes["feature"] == "last_login"
    assert stored.environment == stack_settings.alerta_environment
    assert sink.alert_ids[unique_name, "label_leak"] == stored.id

    sink.enqueue(detector_alert(unique_name, "team-test", "label_leak", "normal", "quiet"))
    assert await sink.flush(timeout=10)
    [closed] = alerts_of(alerta_client, unique_name)
    assert (closed.id, closed.status) == (stored.id, "closed")
    assert sink.stats.delivered == 3
    assert sink.stats.rejected == sink.stats.dropped == 0
    await sink.stop()


async def test_alerta_health_follows_state_and_restore_closes_fallback_alert(
    alerta_client: Any, stack_settings: Settings, unique_name: str
) -> None:
    sink = alerta_sink(stack_settings)
    sink.start()
    model = unique_name
    sink.enqueue(health_alert(model, "team-test", "degraded", "drift", "psi 0.25 on age"))
    sink.enqueue(health_alert(model, "team-test", "fallback", "drift", "psi 0.41 on age"))
    sink.enqueue(escalation_alert(model, "team-test", timedelta(days=3, hours=2)))
    assert await sink.flush(timeout=10)

    by_group = {alert.group: alert for alert in alerts_of(alerta_client, model)}
    assert set(by_group) == {"health", "escalation"}
    health, escalation = by_group["health"], by_group["escalation"]
    assert (health.event, health.severity, health.status) == ("ModelFallback", "major", "open")
    assert (escalation.event, escalation.severity) == ("FallbackEscalated", "critical")

    sink.enqueue(health_alert(model, "team-test", "probing", "drift", "quiet for 10 min"))
    sink.enqueue(health_alert(model, "team-test", "healthy", "drift", "restored"))
    sink.enqueue(escalation_cleared(model, "team-test"))
    assert await sink.flush(timeout=10)

    after = {alert.group: alert for alert in alerts_of(alerta_client, model)}
    assert after["health"].id == health.id  # one alert per model, correlated across states
    assert (after["health"].event, after["health"].status) == ("ModelHealthy", "closed")
    assert after["escalation"].id == escalation.id
    assert after["escalation"].status == "closed"
    await sink.stop()


async def test_alerta_damping_pages_a_flapping_detector_once_and_sends_its_last_state(
    alerta_client: Any, stack_settings: Settings, unique_name: str
) -> None:
    now = [0.0]
    sink = AlertaSink(
        stack_settings.alerta_endpoint,
        stack_settings.alerta_api_key,
        stack_settings.alerta_environment,
        request_timeout=2.0,
        backoff=FAST,
        damping=AlertDamping(period=300.0),
        clock=lambda: now[0],
    )
    sink.start()
    model = unique_name
    # The score detector toggles every 5 s for two minutes, as in the demo of 2026-12-03.
    for step in range(24):
        now[0] = 5.0 * step
        severity = "warning" if step % 2 == 0 else "normal"
        sink.enqueue(detector_alert(model, "team-test", "score", severity, f"score {severity}"))
    assert await sink.flush(timeout=10)
    [score] = alerts_of(alerta_client, model)
    # Opened once, never closed by a flap: its history has no change of severity.
    assert (score.event, score.severity, score.status) == ("score", "warning", "open")
    history = alerta_client.get_alert(score.id).history
    assert [entry["type"] for entry in history] == ["new"]
    # Its last word was "normal": held, it goes out when the sink stops.
    assert sink.held == 1
    await sink.stop()
    [closed] = [a for a in alerts_of(alerta_client, model) if a.event == "score"]
    assert (closed.id, closed.status) == (score.id, "closed")


async def test_alerta_heartbeat_is_recorded(
    alerta_client: Any, stack_settings: Settings, unique_name: str
) -> None:
    sink = alerta_sink(stack_settings)
    sink.start()
    sink.enqueue(Heartbeat(origin=unique_name, timeout=timedelta(seconds=30)))
    assert await sink.flush(timeout=10)
    [beat] = alerta_client.get_heartbeats(query=[("origin", unique_name)])
    assert beat.timeout == 30
    assert beat.attributes["environment"] == stack_settings.alerta_environment
    assert beat.status == "ok"
    alerta_client.delete_heartbeat(beat.id)
    await sink.stop()


async def test_alerta_expired_heartbeat_raises_an_alert_and_a_new_beat_closes_it(
    alerta_client: Any, stack_settings: Settings, unique_name: str
) -> None:
    sink = alerta_sink(stack_settings)
    sink.start()
    origin = f"{unique_name}/host:1"

    async def watch() -> list[tuple[str, str]]:
        heartbeats = await sink.fetch_heartbeats()
        assert heartbeats is not None
        alerts = heartbeat_alerts(heartbeats, f"{unique_name}/")
        for alert in alerts:
            sink.enqueue(alert)
        assert await sink.flush(timeout=10)
        return [(alert.resource, alert.event) for alert in alerts]

    sink.enqueue(Heartbeat(origin=origin, timeout=timedelta(seconds=1)))
    assert await sink.flush(timeout=10)
    await asyncio.sleep(2.5)  # the worker "dies": no beat within its 1 s timeout
    assert await watch() == [(origin, "HeartbeatFail")]
    [failed] = alerts_of(alerta_client, origin)
    assert (failed.event, failed.severity, failed.status) == ("HeartbeatFail", "major", "open")

    sink.enqueue(Heartbeat(origin=origin, timeout=timedelta(seconds=60)))
    assert await sink.flush(timeout=10)
    assert await watch() == [(origin, "HeartbeatOK")]
    [closed] = alerts_of(alerta_client, origin)
    assert (closed.id, closed.status) == (failed.id, "closed")
    for beat in alerta_client.get_heartbeats():
        if beat.origin == origin:
            alerta_client.delete_heartbeat(beat.id)
    await sink.stop()


async def test_alerta_outage_never_blocks_stays_bounded_and_delivers_after(
    alerta_client: Any, stack_settings: Settings, unique_name: str, proxies: list[TcpProxy]
) -> None:
    proxy = TcpProxy.in_front_of(stack_settings.alerta_endpoint)
    proxies.append(proxy)
    sink = alerta_sink(stack_settings, endpoint=proxy.url, capacity=20)
    sink.start()

    # enqueue is synchronous: no await here, so nothing can wait on the closed port.
    for n in range(50):
        sink.enqueue(detector_alert(f"{unique_name}-{n}", "team-test", "drift", "minor", "x"))
    await asyncio.sleep(0.5)  # the drainer keeps failing against the closed port

    assert sink.buffered == 20
    assert sink.stats.dropped == 30
    assert sink.stats.failed_attempts >= 2
    assert sink.stats.delivered == 0

    await proxy.open()
    assert await sink.flush(timeout=15)
    assert sink.stats.delivered == 20
    # The oldest 30 were dropped; the newest 20 reached the real server.
    assert alerts_of(alerta_client, f"{unique_name}-29") == []
    for n in (30, 49):
        [stored] = alerts_of(alerta_client, f"{unique_name}-{n}")
        assert stored.event == "drift"
    await sink.stop()


async def test_influx_points_are_batched_and_read_back_with_flux(
    influxdb_client: Any, stack_settings: Settings, unique_name: str
) -> None:
    sink = influx_sink(stack_settings, batch_size=1000, flush_interval=0.5)
    sink.start()
    now_ms = int(time.time() * 1000)
    for n in range(200):
        tags = {"model": unique_name, "version": "v1", "role": "live", "feature": "age"}
        fields = {"statistic": n / 100, "drift": int(n >= 150)}
        sink.enqueue(point("drift", tags | {"detector": "psi"}, fields, now_ms - 200 + n))
    sink.enqueue(point("health", {"model": unique_name}, {"state": "fallback"}, now_ms))
    assert await sink.flush(timeout=10)
    assert sink.requests == 1  # 201 points, one write on the cadence
    assert sink.stats.delivered == 201

    rows = influx_rows(influxdb_client, stack_settings, "drift", unique_name)
    statistic = sorted(r.get_value() for r in rows if r.get_field() == "statistic")
    assert statistic == [n / 100 for n in range(200)]
    assert {r.values["feature"] for r in rows} == {"age"}
    assert {r.values["detector"] for r in rows} == {"psi"}
    [state] = influx_rows(influxdb_client, stack_settings, "health", unique_name)
    assert state.get_value() == "fallback"
    await sink.stop()


async def test_influx_outage_never_blocks_stays_bounded_and_delivers_after(
    influxdb_client: Any, stack_settings: Settings, unique_name: str, proxies: list[TcpProxy]
) -> None:
    proxy = TcpProxy.in_front_of(stack_settings.influxdb_url)
    proxies.append(proxy)
    sink = influx_sink(stack_settings, url=proxy.url, capacity=300, batch_size=100)
    sink.start()
    now_ms = int(time.time() * 1000)

    for n in range(1000):
        sink.enqueue(point("pipeline", {"agent": unique_name}, {"consumed": n}, now_ms + n))
    await asyncio.sleep(0.5)

    assert sink.buffered == 300
    assert sink.stats.dropped == 700
    assert sink.stats.failed_attempts >= 2

    await proxy.open()
    assert await sink.flush(timeout=15)
    assert sink.stats.delivered == 300
    flux = f"""
        from(bucket: "{stack_settings.influxdb_bucket}")
          |> range(start: -1h, stop: 1h)
          |> filter(fn: (r) => r._measurement == "pipeline" and r.agent == "{unique_name}")
    """
    tables = influxdb_client.query_api().query(flux, org=stack_settings.influxdb_org)
    values = sorted(record.get_value() for table in tables for record in table.records)
    assert values == list(range(700, 1000))  # the newest 300 survived the outage
    await sink.stop()


async def test_fetch_heartbeats_reads_past_alertas_first_page(
    alerta_client: Any, stack_settings: Settings, unique_name: str
) -> None:
    # More beats than Alerta's default page (50): the leader must see every one of them.
    origins = [f"{unique_name}/host:{i}" for i in range(60)]
    ids = [alerta_client.heartbeat(origin=origin, timeout=60).id for origin in origins]
    sink = alerta_sink(stack_settings)
    try:
        heartbeats = await sink.fetch_heartbeats()
        assert heartbeats is not None
        assert set(origins) <= {beat["origin"] for beat in heartbeats}
    finally:
        for heartbeat_id in ids:
            alerta_client.delete_heartbeat(heartbeat_id)
        await sink.close_transport()


def pipeline_values(influxdb_client: Any, settings: Settings, agent: str) -> list[Any]:
    """The values of every ``pipeline`` point the ``agent`` tag marks, sorted."""
    flux = f"""
        from(bucket: "{settings.influxdb_bucket}")
          |> range(start: 0)
          |> filter(fn: (r) => r._measurement == "pipeline" and r.agent == "{agent}")
    """
    tables = influxdb_client.query_api().query(flux, org=settings.influxdb_org)
    return sorted(record.get_value() for table in tables for record in table.records)


async def test_influx_points_of_an_outage_outlive_a_sigkill_of_their_worker(
    influxdb_client: Any, stack_settings: Settings, unique_name: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    kill_sink_in_an_outage("influxdb", spool, unique_name, 400)

    successor = influx_sink(stack_settings, spool=spool)
    successor.start()
    assert await successor.flush(timeout=15)
    assert successor.stats.restored == 400
    values = pipeline_values(influxdb_client, stack_settings, unique_name)
    assert values == list(range(400))
    assert not list(spool.glob("*.jsonl"))
    await successor.stop()


async def test_alerta_alerts_of_an_outage_outlive_a_sigkill_of_their_worker(
    alerta_client: Any, stack_settings: Settings, unique_name: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    kill_sink_in_an_outage("alerta", spool, unique_name, 6)

    successor = AlertaSink(
        stack_settings.alerta_endpoint,
        stack_settings.alerta_api_key,
        stack_settings.alerta_environment,
        request_timeout=2.0,
        backoff=FAST,
        spool=spool,
    )
    successor.start()
    assert await successor.flush(timeout=15)
    assert successor.stats.restored == 6
    for n in range(6):
        [stored] = alerts_of(alerta_client, f"{unique_name}-{n}")
        assert (stored.event, stored.severity) == ("drift", "minor")
    assert not list(spool.glob("*.jsonl"))
    await successor.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
async def test_influx_points_of_a_worker_that_left_in_an_outage_are_sent_by_one_that_stayed(
    influxdb_client: Any,
    stack_settings: Settings,
    unique_name: str,
    tmp_path: Path,
    proxies: list[TcpProxy],
    sig: signal.Signals,
) -> None:
    # Two workers share a spool folder, InfluxDB is down for both; one leaves for good.
    proxy = TcpProxy.in_front_of(stack_settings.influxdb_url)
    proxies.append(proxy)
    stays = influx_sink(stack_settings, url=proxy.url, spool=tmp_path)
    stays.start()
    stays.enqueue(point("pipeline", {"agent": unique_name}, {"consumed": 400}, 1_000_400))
    kill_sink_in_an_outage("influxdb", tmp_path, unique_name, 400, sig)

    await proxy.open()
    await adopted(stays, 400)
    assert await stays.flush(timeout=15)
    values = pipeline_values(influxdb_client, stack_settings, unique_name)
    assert values == list(range(401))
    assert not list(tmp_path.glob("*.jsonl"))
    await stays.stop()


async def test_alerta_alerts_of_a_worker_that_left_in_an_outage_are_sent_by_one_that_stayed(
    alerta_client: Any,
    stack_settings: Settings,
    unique_name: str,
    tmp_path: Path,
    proxies: list[TcpProxy],
) -> None:
    proxy = TcpProxy.in_front_of(stack_settings.alerta_endpoint)
    proxies.append(proxy)
    stays = AlertaSink(
        proxy.url,
        stack_settings.alerta_api_key,
        stack_settings.alerta_environment,
        request_timeout=2.0,
        backoff=FAST,
        spool=tmp_path,
    )
    stays.start()
    kill_sink_in_an_outage("alerta", tmp_path, unique_name, 6, signal.SIGTERM)

    await proxy.open()
    await adopted(stays, 6)
    assert await stays.flush(timeout=15)
    for n in range(6):
        [stored] = alerts_of(alerta_client, f"{unique_name}-{n}")
        assert (stored.event, stored.severity) == ("drift", "minor")
    assert not list(tmp_path.glob("*.jsonl"))
    await stays.stop()


async def adopted(sink: InfluxSink | AlertaSink, count: int) -> None:
    """Wait for a running sink to adopt ``count`` items: within its next look or two."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3 * ADOPT_EVERY
    while sink.stats.restored < count:
        assert loop.time() < deadline, "the spool of the worker that left was not adopted"
        await asyncio.sleep(0.1)
