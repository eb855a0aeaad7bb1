"""``ControlListener``: a serving node's view of the control topic, kept on a background thread.

The serving thread reads ``listener.mode(model_id)``: one dict lookup, no lock (the
listener thread replaces single entries, which is atomic under the GIL). When Kafka is
unreachable the map keeps its last state (fail static); librdkafka reconnects by itself
and the listener resumes from its position, so it catches up when the broker returns.
Should the listener thread itself fail, it logs and counts the failure, then starts a new
consumer after the last message it took, so the node keeps following the topic.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeAlias

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as KafkaPartition

from schemas.codec import DecodeError, decode_control_command
from schemas.contracts import Action, ControlCommand
from schemas.signing import REJECT_REASONS, CommandGate, Keyring
from streams.fleet.kafka_config import listener_consumer_config
from streams.settings import Settings
from streams.topics import CONTROL

Mode: TypeAlias = Literal["live", "fallback", "shadow"]
"""Which model answers: the live one, its registered fallback, or its promoted shadow."""

MODE_OF_ACTION: Mapping[Action, Mode] = {
    "fallback": "fallback",
    "restore": "live",
    "promote_shadow": "shadow",
}

_log = logging.getLogger(__name__)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclasses.dataclass(frozen=True)
class ModeChange:
    """A model's mode or ladder level changed; ``bootstrap`` is true while the node reads
    the topic's past. ``level`` is the new one (see ``ControlListener.level``)."""

    model_id: str
    old: Mode
    new: Mode
    command: ControlCommand
    bootstrap: bool
    level: int = 0


@dataclasses.dataclass(frozen=True)
class ListenerStats:
    """Counters since start: commands applied, rejected by reason, and troubles."""

    applied: int
    rejected: Mapping[str, int]
    malformed: int
    callback_errors: int
    kafka_errors: int
    last_kafka_error: str | None
    bootstrapped: bool
    failures: int
    """Times the listener thread failed and restarted its consumer."""
    last_failure: str | None


class ControlListener:
    """Keeps ``model_id -> mode`` from the control topic; see the module docstring.

    Parameters
    ----------
    settings
        Kafka address, topic prefix and control keys (``Keyring.from_settings``): a node
        needs only the public keys, and should hold nothing else.
    keyring
        The keys to verify commands with; default: from ``settings``. Without any key
        the constructor raises ``ValueError``, since no command could ever be applied.
    default_mode
        The mode of a model the topic says nothing about.
    consumer_config
        Overrides of the librdkafka consumer settings.
    clock
        Milliseconds since the epoch; decides whether a command has expired.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        keyring: Keyring | None = None,
        default_mode: Mode = "live",
        consumer_config: Mapping[str, Any] | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        if default_mode not in MODE_OF_ACTION.values():
            # A misspelt mode ("Fallback") would route like "live" without a word.
            raise ValueError(
                f"default_mode={default_mode!r}: expected one of {sorted(MODE_OF_ACTION.values())}"
            )
        self.topic = CONTROL.name(settings)
        self.default_mode: Mode = default_mode
        self._config = {
            **listener_consumer_config(settings),
            "error_cb": self._on_kafka_error,
            **(consumer_config or {}),
        }
        keyring = keyring or Keyring.from_settings(settings)
        if not keyring.can_verify:
            # Such a node would reject every command as forged: fail at deploy time instead.
            raise ValueError(
                "no control public keys configured (FAILSOFT_CONTROL_PUBLIC_KEYS or "
                "FAILSOFT_CONTROL_PUBLIC_KEYS_FILE): this node could not verify any control command"
            )
        self._gate = CommandGate(keyring)
        self._clock = clock
        self._modes: dict[str, Mode] = {}
        self._levels: dict[str, int] = {}
        self._commands: dict[str, ControlCommand] = {}
        self._callbacks: list[Callable[[ModeChange], None]] = []
        self._rejected: Counter[str] = Counter({reason: 0 for reason in REJECT_REASONS})
        self._applied = 0
        self._malformed = 0
        self._callback_errors = 0
        self._kafka_errors = 0
        self._last_kafka_error: str | None = None
        self._failures = 0
        self._last_failure: str | None = None
        # Partition -> offset after the last message taken, where a restarted consumer resumes.
        self._resume_at: dict[int, int] = {}
        self._bootstrapped = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="failsoft-control", daemon=True)

    # The serving path.

    def mode(self, model_id: str) -> Mode:
        """The mode ``model_id`` is in now: O(1), lock-free, never blocks or raises."""
        return self._modes.get(model_id, self.default_mode)

    def level(self, model_id: str) -> int:
        """The level of its fallback ladder that ``model_id`` serves in ``fallback`` mode
        (1 for a ``fallback`` command without one, the first fallback), 0 otherwise: O(1),
        lock-free, never blocks or raises."""
        return self._levels.get(model_id, 1 if self.default_mode == "fallback" else 0)

    @property
    def modes(self) -> dict[str, Mode]:
        """A snapshot of the mode of every model the topic named."""
        return dict(self._modes)  # copied in one step under the GIL, so never torn

    def command(self, model_id: str) -> ControlCommand | None:
        """The last command applied for ``model_id``."""
        return self._commands.get(model_id)

    # Life cycle.

    def on_change(self, callback: Callable[[ModeChange], None]) -> None:
        """Call ``callback`` on the listener thread whenever a model's mode changes.

        A callback that raises is logged and counted; it never stops the listener.
        """
        self._callbacks.append(callback)

    def start(self) -> ControlListener:
        self._thread.start()
        return self

    def wait_bootstrapped(self, timeout: float | None = None) -> bool:
        """Whether the node has read the whole topic as it was at start, waiting up to
        ``timeout`` seconds. Until then, models not yet read are in ``default_mode``."""
        return self._bootstrapped.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> ControlListener:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stats(self) -> ListenerStats:
        return ListenerStats(
            applied=self._applied,
            rejected=dict(self._rejected),
            malformed=self._malformed,
            callback_errors=self._callback_errors,
            kafka_errors=self._kafka_errors,
            last_kafka_error=self._last_kafka_error,
            bootstrapped=self._bootstrapped.is_set(),
            failures=self._failures,
            last_failure=self._last_failure,
        )

    # The listener thread.

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._consume()
            except Exception as error:
                # A failure here (our bug, librdkafka, the clock) must not leave the node
                # deaf to the topic for good: count it, say it, start a new consumer.
                self._failures += 1
                self._last_failure = f"{type(error).__name__}: {error}"
                _log.exception("control listener failed; restarting its consumer")
                # Backing off (1 s, doubling to 30 s) keeps a lasting cause from flooding logs.
                self._stopping.wait(min(30.0, 2.0 ** min(self._failures - 1, 5)))

    def _consume(self) -> None:
        consumer = Consumer(self._config)
        try:
            ends = self._assign(consumer)
            while not self._stopping.is_set():
                message = consumer.poll(0.1)
                if message is not None:
                    # Noted before it is applied: a message that makes the listener fail
                    # is skipped on restart rather than failing it again forever.
                    _note_taken(self._resume_at, message)
                    self._receive(message)
                    if ends:
                        _note_offset(ends, message)
                elif ends:
                    # Idle before reaching an end: the last offsets may hold no record
                    # (e.g. transaction markers), so ask where the consumer stands.
                    _note_positions(ends, consumer, self.topic)
                if ends is not None and not ends:
                    self._bootstrapped.set()
                    ends = None
        finally:
            consumer.close()

    def _assign(self, consumer: Consumer) -> dict[int, int] | None:
        """Assign every partition from the start (after a failure: after the last message
        taken); return each one's end offset at start.

        Retries until the topic is reachable (the node serves its defaults meanwhile).
        """
        while not self._stopping.is_set():
            try:
                topic = consumer.list_topics(self.topic, timeout=1.0).topics[self.topic]
                if topic.error is not None:
                    raise KafkaException(topic.error)
                ends = {}
                for partition in topic.partitions:
                    low, high = consumer.get_watermark_offsets(
                        KafkaPartition(self.topic, partition), timeout=1.0
                    )
                    if high > low:
                        ends[partition] = high
            except KafkaException as error:
                self._on_kafka_error(error.args[0] if error.args else error)
                self._stopping.wait(0.5)
                continue
            consumer.assign(
                [
                    KafkaPartition(self.topic, p, self._resume_at.get(p, OFFSET_BEGINNING))
                    for p in topic.partitions
                ]
            )
            return ends
        return None

    def _receive(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            self._on_kafka_error(error)
            return
        command = decode_control_command(message.value())
        if isinstance(command, DecodeError):
            # Tombstones land here too: unsigned, so they never change a mode.
            self._malformed += 1
            return
        rejection = self._gate.admit(command, self._clock())
        if rejection is not None:
            self._rejected[rejection] += 1
            return
        self._applied += 1
        self._commands[command.model_id] = command
        new = MODE_OF_ACTION[command.action]
        old = self._modes.get(command.model_id, self.default_mode)
        old_level = self.level(command.model_id)
        level = (command.level or 1) if new == "fallback" else 0
        # The level first: a serving thread that sees the new mode sees its level too.
        self._levels[command.model_id] = level
        self._modes[command.model_id] = new
        if new != old or level != old_level:
            change = ModeChange(
                command.model_id, old, new, command, not self._bootstrapped.is_set(), level
            )
            for callback in self._callbacks:
                try:
                    callback(change)
                except Exception:
                    self._callback_errors += 1
                    _log.exception("control on-change callback failed for %s", change.model_id)

    def _on_kafka_error(self, error: KafkaError | Exception) -> None:
        self._kafka_errors += 1
        self._last_kafka_error = str(error)


def _note_taken(resume_at: dict[int, int], message: Message) -> None:
    partition, offset = message.partition(), message.offset()
    if message.error() is None and partition is not None and offset is not None:
        resume_at[partition] = offset + 1


def _note_offset(ends: dict[int, int], message: Message) -> None:
    partition, offset = message.partition(), message.offset()
    if partition in ends and offset is not None and offset + 1 >= ends[partition]:
        del ends[partition]


def _note_positions(ends: dict[int, int], consumer: Consumer, topic: str) -> None:
    try:
        positions = consumer.position([KafkaPartition(topic, p) for p in ends])
    except KafkaException:
        return  # asked again at the next idle poll
    for position in positions:
        if position.offset >= ends[position.partition]:
            del ends[position.partition]
