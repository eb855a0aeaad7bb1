"""The stack's fault functions on a broker of the test's own: pause, resume, kill."""

from __future__ import annotations

import pytest

from streams.stack import SERVERS, StackError, faults
from streams.stack.process import group_alive
from tests.conftest import PrivateKafka

pytestmark = pytest.mark.integration


def test_a_paused_broker_answers_nothing_until_resumed_and_a_killed_one_starts_again(
    private_kafka: PrivateKafka,
) -> None:
    settings = private_kafka.settings
    kafka = SERVERS["kafka"]
    pid = faults.pause(settings, "kafka")
    try:
        assert pid == kafka.pid_file(settings).live_pid()
        assert not kafka.healthy(settings)  # stopped: its port takes no answer
    finally:
        assert faults.resume(settings, "kafka") == pid
    assert kafka.status(settings).healthy

    assert faults.kill(settings, "kafka") == pid
    assert not group_alive(pid)
    assert kafka.status(settings).pid is None
    with pytest.raises(StackError, match="not running"):
        faults.pause(settings, "kafka")
    assert "started" in private_kafka.start()
    assert private_kafka.running
