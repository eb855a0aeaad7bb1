"""The demo's Alerta tap on the real server: a run with a customer of its own reads only its
own alerts, although another run alerts about the same model and detector at the same time.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from streams.demo.observe import AlertaTap
from streams.settings import Settings
from streams.sinks.alerta import AlertaSink, detector_alert

pytestmark = pytest.mark.integration


async def alarm(settings: Settings, customer: str, model: str, text: str) -> str:
    """One detector alarm about ``model`` sent as ``customer``; the id Alerta gave it."""
    sink = AlertaSink(
        settings.alerta_endpoint,
        settings.alerta_api_key,
        settings.alerta_environment,
        customer=customer,
        request_timeout=5.0,
    )
    sink.start()
    sink.enqueue(detector_alert(model, "team-test", "score", "warning", text))
    assert await sink.flush(timeout=20)
    await sink.stop()
    return sink.alert_ids[model, "score"]


async def test_each_run_reads_only_the_alerts_of_its_own_customer(
    alerta_client: Any, stack_settings: Settings, unique_name: str
) -> None:
    since_ms = time.time_ns() // 1_000_000 - 1000
    runs = {run: f"{unique_name}-{run}" for run in ("a", "b")}
    ids = {
        run: await alarm(stack_settings, customer, unique_name, run)
        for run, customer in runs.items()
    }

    # Same environment, resource and event: without customers they would be one alert.
    stored = {
        alert.id: alert.customer
        for alert in alerta_client.get_alerts(query=[("resource", unique_name)])
    }
    assert stored == {ids["a"]: runs["a"], ids["b"]: runs["b"]}
    for run, customer in runs.items():
        tap = AlertaTap(
            dataclasses.replace(stack_settings, alerta_customer=customer), [unique_name], since_ms
        )
        tap.poll()
        seen = [(event.alert_id, event.event, event.detector) for event in tap.snapshot()]
        assert seen == [(ids[run], "score", "score")]
    for alert_id in ids.values():
        alerta_client.delete_alert(alert_id)
