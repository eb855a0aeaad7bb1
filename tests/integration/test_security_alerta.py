"""The local Alerta's scoped keys: the workers' key writes but cannot delete, the
analysts' key only reads."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from streams.settings import Settings
from streams.stack.alerta import scoped_key_file

pytestmark = pytest.mark.integration


def call(settings: Settings, key: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """The status and JSON answer of one request to Alerta with ``key``."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        settings.alerta_endpoint + path,
        data=data,
        method=method,
        headers={"Authorization": f"Key {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def key(settings: Settings, name: str) -> str:
    return scoped_key_file(settings, name).read_text().strip()


def drift_alert(resource: str) -> dict[str, Any]:
    """A minor drift alert on ``resource`` in the test environment."""
    return {
        "resource": resource,
        "event": "DriftDetected",
        "environment": "Development",
        "service": ["failsoft-test"],
        "severity": "minor",
    }


def test_the_worker_key_sends_alerts_and_heartbeats_but_cannot_delete_an_alert(
    stack_settings: Settings, alerta_client: object, unique_name: str
) -> None:
    worker = key(stack_settings, "worker")
    admin = stack_settings.secret("alerta_api_key")
    alert = drift_alert(unique_name)
    status, sent = call(stack_settings, worker, "POST", "/alert", alert)
    assert status == 201, sent
    alert_id = sent["id"]
    try:
        beat = {"origin": unique_name, "timeout": 60, "tags": ["failsoft-test"]}
        status, beat_sent = call(stack_settings, worker, "POST", "/heartbeat", beat)
        assert status == 201, beat_sent
        call(stack_settings, admin, "DELETE", f"/heartbeat/{beat_sent['id']}")
        assert call(stack_settings, worker, "GET", f"/alert/{alert_id}")[0] == 200
        status, refused = call(stack_settings, worker, "DELETE", f"/alert/{alert_id}")
        assert status == 403, refused
        assert call(stack_settings, worker, "GET", f"/alert/{alert_id}")[0] == 200
    finally:
        assert call(stack_settings, admin, "DELETE", f"/alert/{alert_id}")[0] == 200


def test_the_reader_key_reads_but_cannot_write(
    stack_settings: Settings, alerta_client: object, unique_name: str
) -> None:
    reader = key(stack_settings, "reader")
    status, listed = call(stack_settings, reader, "GET", "/alerts?environment=Development")
    assert status == 200, listed
    alert = drift_alert(unique_name)
    status, refused = call(stack_settings, reader, "POST", "/alert", alert)
    assert status == 403, refused
