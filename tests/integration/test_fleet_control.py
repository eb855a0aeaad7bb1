"""The fleet client against the real broker: bootstrap, rejection, and the operator command."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest

from schemas.codec import encode
from schemas.contracts import Action, ControlCommand
from schemas.signing import KeyPair, Keyring, MissingKeyError, hmac_signature
from streams.cli import main
from streams.control import publish_command
from streams.fleet import ControlListener, ModeChange, PredictionLogger
from streams.fleet.listener import MODE_OF_ACTION, now_ms
from streams.settings import Settings
from streams.topics import CONTROL, PREDICTIONS
from tests.fleet.helpers import command, fleet_settings, fleet_topics, node_settings, wait_for
from tests.fleet.test_prediction_logger import example_prediction

pytestmark = pytest.mark.integration

SEQ = 1_795_000_000_000


@pytest.fixture
def settings(
    stack_settings: Settings, kafka_bootstrap: str, unique_name: str
) -> Iterator[Settings]:
    with fleet_topics(stack_settings, kafka_bootstrap, unique_name) as fleet:
        yield fleet


def test_a_node_started_after_ten_commands_learns_all_ten_states(settings: Settings) -> None:
    expected = {}
    actions: tuple[Action, ...] = ("fallback", "restore", "promote_shadow")
    for i in range(10):
        model = f"model-{i}"
        action = actions[i % 3]
        # An older, superseded command for each model too: the latest one must win.
        publish_command(settings, command(settings, model, "fallback", SEQ + i))
        publish_command(settings, command(settings, model, action, SEQ + 100 + i))
        expected[model] = MODE_OF_ACTION[action]

    changes: list[ModeChange] = []
    listener = ControlListener(node_settings(settings))
    listener.on_change(changes.append)
    with listener:
        assert listener.wait_bootstrapped(30)
        assert dict(listener.modes) == expected
        assert [listener.mode(f"model-{i}") for i in range(3)] == ["fallback", "live", "shadow"]
        assert listener.mode("never-commanded") == "live"
        stats = listener.stats()
        assert stats.applied == 20
        assert sum(stats.rejected.values()) == stats.malformed == 0
        assert all(change.bootstrap for change in changes)


def test_forged_replayed_expired_and_unsigned_commands_are_rejected_and_counted(
    settings: Settings,
) -> None:
    changes: list[ModeChange] = []
    listener = ControlListener(node_settings(settings))
    listener.on_change(changes.append)
    with listener:
        assert listener.wait_bootstrapped(30)
        genuine = command(settings, "recs", "fallback", SEQ)
        publish_command(settings, genuine)
        assert wait_for(lambda: listener.mode("recs") == "fallback")
        assert changes == [
            ModeChange("recs", "live", "fallback", genuine, bootstrap=False, level=1)
        ]

        restore = command(settings, "recs", "restore", SEQ + 1)
        attacks: list[ControlCommand] = [
            msgspec.structs.replace(restore, reason="trust me"),  # forged: changed after signing
            command(fleet_settings(settings, "", "x"), "recs", "restore", SEQ + 2),  # other key
            *forgeries_of_a_node(node_settings(settings), SEQ + 2),
            genuine,  # replayed as is
            command(settings, "recs", "restore", SEQ - 5),  # replayed: an old seq
            command(settings, "recs", "restore", SEQ + 3, expires_at=1_000),  # expired
            msgspec.structs.replace(restore, signature=None),  # unsigned
        ]
        for attack in attacks:
            publish_command(settings, attack)
        publish_command(settings, restore)
        assert wait_for(lambda: listener.mode("recs") == "live")
        assert wait_for(lambda: listener.stats().applied == 2)
        stats = listener.stats()
        assert stats.rejected == {"forged": 4, "replayed": 2, "expired": 1, "unsigned": 1}
        assert listener.command("recs") == restore
        assert [change.new for change in changes] == ["fallback", "live"]


def forgeries_of_a_node(node: Settings, seq: int) -> list[ControlCommand]:
    """The best a node holding only public keys can make: a command with its key id and an
    HMAC keyed with the public key, or an Ed25519 signature with the public key as seed."""
    keyring = Keyring.from_settings(node)
    with pytest.raises(MissingKeyError):
        command(node, "recs", "restore", seq)
    ((key_id, public_key),) = keyring.public_keys.items()
    public = public_key.public_bytes_raw()
    unsigned = msgspec.structs.replace(
        command(fleet_settings(node, "", "x"), "recs", "restore", seq), key_id=key_id
    )
    as_hmac = msgspec.structs.replace(unsigned, signature=hmac_signature(public, unsigned))
    as_seed = Keyring(signing_key=KeyPair.from_line(f"{key_id}={public.hex()}")).sign(unsigned)
    return [as_hmac, as_seed]


def test_a_node_holding_only_public_keys_cannot_command_another_node(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    node = node_settings(settings)
    with ControlListener(node) as other:
        assert other.wait_bootstrapped(30)
        # The operator command run with a node's settings refuses before touching Kafka...
        monkeypatch.setenv("FAILSOFT_KAFKA_BOOTSTRAP", settings.kafka_bootstrap)
        monkeypatch.setenv("FAILSOFT_TOPIC_PREFIX", settings.topic_prefix)
        monkeypatch.setenv("FAILSOFT_CONTROL_PUBLIC_KEYS", node.control_public_keys)
        assert main(["control", "fallback", "recs", "--reason", "from a node"]) == 1
        assert "no control signing key" in capsys.readouterr().err
        # ...and what it can forge by hand reaches the other node and is rejected.
        for forgery in forgeries_of_a_node(node, SEQ):
            publish_command(settings, forgery)
        assert wait_for(lambda: other.stats().rejected["forged"] == 2)
        assert other.mode("recs") == "live" and other.stats().applied == 0


def test_a_listener_that_fails_restarts_after_the_message_that_failed(
    settings: Settings,
) -> None:
    publish_command(settings, command(settings, "first", "fallback", SEQ))
    publish_command(settings, command(settings, "second", "fallback", SEQ))
    calls = 0

    def clock_failing_once() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("clock broke")
        return now_ms()

    with ControlListener(node_settings(settings), clock=clock_failing_once) as listener:
        assert wait_for(lambda: listener.mode("second") == "fallback")
        assert listener.wait_bootstrapped(30)
        stats = listener.stats()
        assert (stats.failures, stats.last_failure) == (1, "RuntimeError: clock broke")
        assert stats.applied == 1
        assert listener.mode("first") == "live"


def test_garbage_on_the_control_topic_is_counted_and_ignored(settings: Settings) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for value in (b"not json", b'{"schema_version": 2}', None):
        producer.produce(CONTROL.name(settings), value, b"recs")
    # The compacted topic refuses keyless records, so every one here carries the key.
    valid = encode(command(settings, "recs", "fallback", SEQ))
    producer.produce(CONTROL.name(settings), valid, b"recs")
    assert producer.flush(10) == 0
    with ControlListener(node_settings(settings)) as listener:
        assert listener.wait_bootstrapped(30)
        assert listener.stats().malformed == 3, listener.stats()
        assert listener.mode("recs") == "fallback"


def test_operator_command_reaches_a_running_node(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAILSOFT_KAFKA_BOOTSTRAP", settings.kafka_bootstrap)
    monkeypatch.setenv("FAILSOFT_TOPIC_PREFIX", settings.topic_prefix)
    monkeypatch.setenv("FAILSOFT_CONTROL_PRIVATE_KEY", settings.control_private_key)
    with ControlListener(node_settings(settings)) as listener:
        assert listener.wait_bootstrapped(30)
        assert main(["control", "fallback", "recs", "--reason", "bad deploy"]) == 0
        assert wait_for(lambda: listener.mode("recs") == "fallback")
        assert listener.level("recs") == 1
        assert main(["control", "fallback", "recs", "--level", "2", "--reason", "cpu too"]) == 0
        assert wait_for(lambda: listener.level("recs") == 2)
        assert main(["control", "restore", "recs", "--reason", "rolled back"]) == 0
        assert wait_for(lambda: listener.mode("recs") == "live")
        assert listener.level("recs") == 0
        sent = capsys.readouterr().out
        assert "sent fallback for recs" in sent and "sent restore for recs" in sent
        assert "sent fallback level 2 for recs" in sent
        assert listener.command("recs").reason == "rolled back"  # type: ignore[union-attr]
        assert main(["control", "status"]) == 0
        assert "recs  restore" in capsys.readouterr().out


def test_prediction_logger_delivers_to_the_predictions_topic(settings: Settings) -> None:
    from confluent_kafka import Consumer, TopicPartition

    prediction = example_prediction()
    with PredictionLogger(settings) as logger:
        for _ in range(100):
            assert logger.log(prediction)
        assert logger.flush(10) == 0
        stats = logger.stats()
        assert (stats.delivered, stats.failed, stats.dropped, stats.in_flight) == (100, 0, 0, 0)

    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "unused"})
    topic = PREDICTIONS.name(settings)
    counts = [
        consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        for p in range(PREDICTIONS.partitions)
    ]
    consumer.close()
    # Keyed by model_id: every batch of one model lands in one partition (batches and
    # their contents: tests/fleet/test_prediction_logger_kafka.py).
    assert sorted(counts)[-1] == stats.batches and sum(counts) == stats.batches
