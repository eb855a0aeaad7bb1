"""A serving node while its broker is stopped and started again (a private broker)."""

from __future__ import annotations

import time

import pytest

from streams.control import publish_command
from streams.fleet import ControlListener, PredictionLogger
from streams.settings import Settings
from tests.conftest import PrivateKafka
from tests.fleet.helpers import command, fleet_topics, wait_for
from tests.fleet.test_prediction_logger import example_prediction

pytestmark = pytest.mark.integration

SEQ = 1_795_000_000_000
BUFFER = 1_000
OFFERED_WHILE_DOWN = 5_000


def test_node_keeps_serving_in_its_last_state_and_catches_up(
    private_kafka: PrivateKafka, stack_settings: Settings, unique_name: str
) -> None:
    prediction = example_prediction()
    with (
        fleet_topics(stack_settings, private_kafka.bootstrap, unique_name) as settings,
        ControlListener(settings) as listener,
        PredictionLogger(settings, max_buffered=BUFFER, delivery_timeout_s=300) as logger,
    ):
        assert listener.wait_bootstrapped(30)
        publish_command(settings, command(settings, "recs", "fallback", SEQ))
        assert wait_for(lambda: listener.mode("recs") == "fallback")
        for _ in range(10):
            assert logger.log(prediction)
        assert logger.flush(10) == 0

        private_kafka.stop()
        assert not private_kafka.running

        # Fail static: the node keeps its last state while the broker is away...
        time.sleep(2)
        assert listener.mode("recs") == "fallback"
        assert listener.stats().kafka_errors > 0
        # ...and logging neither blocks nor raises: the buffer fills, the rest is dropped.
        slowest = 0.0
        started = time.monotonic()
        for _ in range(OFFERED_WHILE_DOWN):
            before = time.perf_counter()
            logger.log(prediction)
            slowest = max(slowest, time.perf_counter() - before)
        elapsed = time.monotonic() - started
        # Generous bounds: one call that waited for the broker would take seconds.
        assert slowest < 0.5 and elapsed < 5.0, (slowest, elapsed)
        stats = logger.stats()
        assert stats.delivered == 10
        assert stats.in_flight == BUFFER
        assert stats.dropped == OFFERED_WHILE_DOWN - BUFFER
        assert stats.offered == 10 + OFFERED_WHILE_DOWN
        assert listener.mode("recs") == "fallback"

        # A node that starts while the broker is away serves its defaults meanwhile.
        late = ControlListener(settings).start()
        assert not late.wait_bootstrapped(1)
        assert late.mode("recs") == "live"

        private_kafka.start()
        # Catching up: the late node bootstraps once the broker is back; a command sent
        # after that reaches both nodes; the predictions held in the buffer are delivered.
        try:
            assert late.wait_bootstrapped(60)
            assert late.mode("recs") == "fallback"
            publish_command(settings, command(settings, "recs", "restore", SEQ + 1), timeout=60)
            assert wait_for(lambda: late.mode("recs") == "live", timeout=60)
        finally:
            late.stop()
        assert wait_for(lambda: listener.mode("recs") == "live", timeout=60)
        assert wait_for(lambda: logger.stats().delivered == 10 + BUFFER, timeout=60)
        assert logger.stats().failed == 0
