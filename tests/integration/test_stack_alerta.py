"""Alerts through the real Alerta server, which requires the stack's API key."""

from __future__ import annotations

from typing import Any

import pytest

from streams.settings import Settings
from streams.stack.base import http_status

pytestmark = pytest.mark.integration


def test_alert_is_stored_read_back_and_its_duplicate_counted(
    alerta_client: Any, stack_settings: Settings, unique_name: str
) -> None:
    alert = {
        "resource": unique_name,
        "event": "FallbackEngaged",
        "environment": stack_settings.alerta_environment,
        "service": ["failsoft"],
        "severity": "major",
        "correlate": ["FallbackEngaged", "FallbackLifted"],
        "text": "model on fallback",
    }
    alert_id, first, _ = alerta_client.send_alert(**alert)
    assert first.duplicate_count == 0

    stored = alerta_client.get_alert(alert_id)
    assert (stored.resource, stored.event, stored.severity) == (
        unique_name,
        "FallbackEngaged",
        "major",
    )
    assert stored.environment == stack_settings.alerta_environment

    again_id, again, _ = alerta_client.send_alert(**alert)
    assert again_id == alert_id
    assert again.duplicate_count == 1

    closing_id, closed, _ = alerta_client.send_alert(
        **{**alert, "event": "FallbackLifted", "severity": "normal"}
    )
    assert closing_id == alert_id
    assert closed.status == "closed"


def test_alerta_rejects_requests_without_the_key(
    alerta_client: Any, stack_settings: Settings
) -> None:
    assert http_status(f"{stack_settings.alerta_endpoint}/alerts") == 401
    assert http_status(f"{stack_settings.alerta_endpoint}/management/gtg") == 200
