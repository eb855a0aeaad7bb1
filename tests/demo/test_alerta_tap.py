"""The demo's Alerta tap on the real server: a run with a customer of its own reads none of
another run's alerts, although both alert about the same model and detector at once.
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


async def alarm(settings: Settings, customer: str | None, model: str) -> str:
    """One detector alarm about ``model`` sent as ``customer``; the id Alerta gave it."""
    sink = AlertaSink(
        settings.alerta_endpoint,
        settings.alerta_api_key,
        settings.alerta_environment,
        customer=customer,
        request_timeout=5.0,
    )
    sink.start()
    sink.enqueue(detector_alert(model, "team-test", "score", "warning", f"sent as {customer}"))
    assert await sink.flush(timeout=20)
    await sink.stop()
    return sink.alert_ids[model, "score"]


async def test_a_run_reads_its_own_alerts_and_none_of_another_customer(
    alerta_client: Any, stack_settings: Settings, unique_name: str
) -> None:
    since_ms = time.time_ns() // 1_000_000 - 1000
    customers = {"a": f"{unique_name}-a", "b": f"{unique_name}-b", "none": None}
    ids = {
        run: await alarm(stack_settings, customer, unique_name)
        for run, customer in customers.items()
    }

    # Same environment, resource and event: without customers they would be one alert.
    listed = alerta_client.get_alerts(query=[("resource", unique_name)])
    assert {alert.id: alert.customer for alert in listed} == {
        ids[run]: customer for run, customer in customers.items()
    }
    for run in ("a", "b"):
        settings = dataclasses.replace(stack_settings, alerta_customer=f"{unique_name}-{run}")
        tap = AlertaTap(settings, [unique_name], since_ms)
        tap.poll()
        # A worker that sets no customer may be this run's: its alert is read too.
        assert sorted(event.alert_id for event in tap.snapshot()) == sorted([ids[run], ids["none"]])
    for alert_id in ids.values():
        alerta_client.delete_alert(alert_id)
