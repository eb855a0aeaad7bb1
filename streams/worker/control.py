"""The commands already on the control topic: the highest seq per model.

A worker restored from a checkpoint taken before a command it sent makes that command
again, with the same seq (``streams.worker.shell``). The fleet would drop it as a replay,
but the control topic must hold one command per decision: ``SentCommands`` reads the
topic (compacted, keyed by model_id: about one command per model) from its start up to
its end offsets of that moment, and the shell skips a command whose seq is at or below
what the topic holds for its model. The reader reads it again before feeding a new
assignment (``streams.worker.readers``): another worker may have sent commands for the
models that come here. Commands are rare, so the read costs one fetch of a small topic
per rebalance, off the path of each record.
"""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.codec import decode_control_command
from schemas.contracts import ControlCommand
from streams.kafka_security import aiokafka_security
from streams.settings import Settings
from streams.topics import CONTROL

__all__ = ["SentCommands"]

log = logging.getLogger(__name__)
# How long one getmany waits for the records up to the end offsets.
FETCH_TIMEOUT_MS = 1000


class SentCommands:
    """The highest seq on the control topic per model, as of the last read and the
    commands sent since."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.last_seq: dict[str, int] = {}

    def sent(self, model_id: str, seq: int) -> bool:
        """Whether the topic already holds a command for the model at or after ``seq``."""
        return seq <= self.last_seq.get(model_id, 0)

    def note(self, model_id: str, seq: int) -> None:
        """Book a command the worker sent (and the broker acknowledged)."""
        self.last_seq[model_id] = max(seq, self.last_seq.get(model_id, 0))

    async def catch_up(self) -> None:
        """Read the topic from its start to its end offsets of now, without a group."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            **aiokafka_security(self.settings),
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            # The partitions the worker creates it with (``streams.topics.ensure_topics``).
            tps = [TopicPartition(self.topic, number) for number in range(CONTROL.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            waiting = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
            while waiting:
                batches = await consumer.getmany(*waiting, timeout_ms=FETCH_TIMEOUT_MS)
                for tp, messages in batches.items():
                    for message in messages:
                        if message.offset < ends[tp]:
                            self._read(message.value)
                    if await consumer.position(tp) >= ends[tp]:
                        waiting.discard(tp)
        finally:
            await consumer.stop()
        log.info("control topic %s read: commands of %d models", self.topic, len(self.last_seq))

    def _read(self, raw: bytes | None) -> None:
        command = decode_control_command(raw)
        # Not ours to judge here: the fleet rejects and counts it.
        if isinstance(command, ControlCommand):
            self.note(command.model_id, command.seq)
