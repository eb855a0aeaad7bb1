"""The ladder end to end on the real broker: a monitor's signed commands step a node's
router down to the static default and back up one level at a time, every one in seq."""

from __future__ import annotations

import pytest

from schemas.signing import Keyring
from streams.control import publish_command
from streams.fleet import ControlListener, ModeChange, Router
from streams.monitor import Batch, CommandToSign, Monitor
from streams.settings import Settings
from tests.fleet.helpers import fleet_topics, node_settings, wait_for
from tests.streams.test_ladder import ladder_model
from tests.streams.test_watch import shifted_then_normal

pytestmark = pytest.mark.integration


def ladder_commands() -> list[CommandToSign]:
    """The GPU model drifts and falls back, its CPU fallback goes bad and recovers, and the
    drift ends (tests/streams/test_ladder.py pins these four commands)."""
    monitor = Monitor(ladder_model())
    records = shifted_then_normal(7)
    made = list(monitor.observe(Batch.from_records("ranker", records[:3000])).commands)
    made += monitor.level_health("ranker-cpu", True, 4_000.5).commands
    made += monitor.level_health("ranker-cpu", False, 4_010.0).commands
    for n in range(3000, len(records), 250):
        made += monitor.observe(Batch.from_records("ranker", records[n : n + 250])).commands
    return made


def test_the_fleet_steps_down_the_ladder_and_climbs_back_by_signed_commands(
    stack_settings: Settings, kafka_bootstrap: str, unique_name: str
) -> None:
    commands = ladder_commands()
    assert [(c.action, c.level) for c in commands] == [
        ("fallback", 1),
        ("fallback", 2),
        ("fallback", 1),
        ("restore", 0),
    ]
    with fleet_topics(stack_settings, kafka_bootstrap, unique_name) as settings:
        signer = Keyring.from_settings(settings)
        listener = ControlListener(node_settings(settings))
        changes: list[ModeChange] = []
        listener.on_change(changes.append)
        ranker = Router(listener).register(
            "ranker", live=lambda u: f"gpu:{u}", fallback=[lambda u: f"cpu:{u}", lambda u: "top"]
        )
        served = []
        with listener:
            assert listener.wait_bootstrapped(30)
            served.append(ranker.route("u")[::3])
            for command in commands:
                publish_command(settings, command.signed(signer))
                assert wait_for(lambda c=command: listener.level("ranker") == c.level, 30)
                served.append(ranker.route("u")[::3])
            stats = listener.stats()
    assert served == [("gpu:u", 0), ("cpu:u", 1), ("top", 2), ("cpu:u", 1), ("gpu:u", 0)]
    assert [(c.new, c.level, c.command.seq) for c in changes] == [
        ("fallback", 1, commands[0].seq),
        ("fallback", 2, commands[1].seq),
        ("fallback", 1, commands[2].seq),
        ("live", 0, commands[3].seq),
    ]
    assert [c.seq for c in commands] == sorted(set(c.seq for c in commands))
    assert stats.applied == 4 and sum(stats.rejected.values()) == stats.malformed == 0
