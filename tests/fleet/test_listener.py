"""ControlListener without a reachable broker: defaults, fail static, prompt stop.

Bootstrap, commands and rejections against the real broker are in
tests/integration/test_fleet_control.py.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from schemas.signing import KeyPair
from streams.fleet import ControlListener
from streams.settings import Settings

NOWHERE = Settings(
    kafka_bootstrap="127.0.0.1:1",
    topic_prefix="unit.",
    control_public_keys=KeyPair.generate("unit").public_line(),
)


def test_without_a_broker_the_node_serves_defaults_and_counts_errors() -> None:
    listener = ControlListener(NOWHERE, default_mode="live").start()
    try:
        assert not listener.wait_bootstrapped(1.5)
        assert listener.mode("any-model") == "live"
        assert listener.modes == {}
        stats = listener.stats()
        assert stats.kafka_errors > 0 and stats.last_kafka_error
        assert not stats.bootstrapped and stats.applied == 0
    finally:
        started = time.monotonic()
        listener.stop()
    assert time.monotonic() - started < 5.0


def test_the_default_mode_is_configurable() -> None:
    assert ControlListener(NOWHERE, default_mode="fallback").mode("m") == "fallback"


def test_an_unknown_default_mode_is_refused_with_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"default_mode='Fallback'.*'fallback', 'live', 'shadow'"):
        ControlListener(NOWHERE, default_mode="Fallback")  # type: ignore[arg-type]


def test_a_node_without_control_keys_refuses_to_start() -> None:
    with pytest.raises(ValueError, match="no control public keys configured"):
        ControlListener(dataclasses.replace(NOWHERE, control_public_keys=""))


def test_a_node_with_hmac_secrets_but_hmac_off_refuses_to_start() -> None:
    legacy = dataclasses.replace(NOWHERE, control_keys="old=legacy-secret-0123456789")
    with pytest.raises(ValueError, match="FAILSOFT_CONTROL_ACCEPT_HMAC"):
        ControlListener(legacy)
    migrating = dataclasses.replace(legacy, control_public_keys="", control_accept_hmac=True)
    assert ControlListener(migrating).mode("m") == "live"


def test_a_failing_listener_thread_counts_the_failure_and_keeps_trying() -> None:
    # librdkafka refuses the property when the thread builds its consumer.
    listener = ControlListener(NOWHERE, consumer_config={"no.such.property": "x"}).start()
    try:
        deadline = time.monotonic() + 5.0
        while listener.stats().failures < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = listener.stats()
        assert stats.failures == 2
        assert "no.such.property" in (stats.last_failure or "")
        assert listener.mode("any-model") == "live"
    finally:
        started = time.monotonic()
        listener.stop()
    assert time.monotonic() - started < 5.0
