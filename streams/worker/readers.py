"""The worker's readers: an ingest agent per model-keyed input topic, and a batch reader.

Every message is processed or dead-lettered with its reason (``streams.worker.ingest``),
and counted per topic and reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import faust
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from schemas.codec import dead_letter, encode
from schemas.contracts import DecodeError
from streams.topics import PREDICTIONS
from streams.worker.ingest import Input, InputRecord, validate

if TYPE_CHECKING:
    from streams.worker.app import FailsoftApp

__all__ = ["INGEST_BATCH", "BatchReader", "add_ingest_agent"]

# Feature writes are read in batches of up to this many.
INGEST_BATCH = 1000


async def _admit(
    app: FailsoftApp,
    source: Input,
    dead_letters: faust.TopicT,
    message: faust.types.Message | ConsumerRecord[bytes, bytes],
) -> InputRecord | DecodeError:
    """The message's record, or the error it was dead-lettered with."""
    outcome = validate(source, message.value, app.portfolio)
    if isinstance(outcome, DecodeError):
        letter = dead_letter(
            outcome,
            raw=message.value,
            source_topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            seen_at=int(time.time() * 1000),
            key=message.key,
        )
        await dead_letters.send(key=message.topic.encode(), value=encode(letter))
    return outcome


def add_ingest_agent(
    app: FailsoftApp,
    source: Input,
    dead_letters: faust.TopicT,
    handler: Callable[[Any], Awaitable[None]],
) -> None:
    """The agent of one input topic: every event is processed or dead-lettered, and counted."""
    topic_name = source.spec.name(app.settings)
    counters = app.counters

    async def ingest(stream: faust.StreamT[bytes]) -> None:
        # One event at a time: tables find an event's partition through the current event.
        async for event in stream.events():
            outcome = await _admit(app, source, dead_letters, event.message)
            if not isinstance(outcome, DecodeError):
                await handler(outcome)
            counters.count(topic_name, outcome)

    app.agent(app.topic(topic_name), name=f"ingest-{source.spec.suffix}")(ingest)


class BatchReader:
    """Reads one input topic in batches with a plain aiokafka consumer.

    For a topic whose records touch no table where they arrive (feature writes are keyed by
    entity_id and forwarded by model): Faust's per-event path costs more than the work, and
    any worker may read any partition. The reader takes the partition numbers Faust gives
    this worker of the predictions topic (the topics have equal partition counts), so the
    workers split it along Faust's own assignment, with no second group protocol to
    rebalance beside Faust's. Every message is processed or dead-lettered, and counted, as
    in the ingest agents; offsets are committed (group ``<app id>-<topic suffix>``, never
    joined) after each batch.
    """

    def __init__(
        self,
        app: FailsoftApp,
        source: Input,
        dead_letters: faust.TopicT,
        handler: Callable[[list[Any]], Awaitable[None]],
    ) -> None:
        self.app = app
        self.source = source
        self.dead_letters = dead_letters
        self.handler = handler
        self.topic_name = source.spec.name(app.settings)
        self.consumer: AIOKafkaConsumer | None = None
        self.task: asyncio.Task[None] | None = None
        self.partitions: set[int] = set()
        app.on_partitions_assigned.connect(self._assigned)
        app.on_partitions_revoked.connect(self._revoked)

    async def _assigned(self, *args: Any, **kwargs: Any) -> None:
        # Faust sends (sender, set of topic partitions); its eager rebalance hands over the
        # whole assignment each time.
        _, assigned = args
        predictions = PREDICTIONS.name(self.app.settings)
        self.partitions = {tp.partition for tp in assigned if tp.topic == predictions}
        self._assign()

    async def _revoked(self, *args: Any, **kwargs: Any) -> None:
        self.partitions = set()
        self._assign()

    def _assign(self) -> None:
        if self.consumer is not None:
            self.consumer.assign(
                [TopicPartition(self.topic_name, number) for number in sorted(self.partitions)]
            )

    async def start(self) -> None:
        settings = self.app.settings
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=f"{settings.worker_app_id}-{self.source.spec.suffix}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await self.consumer.start()
        self._assign()
        self.task = asyncio.create_task(self._read(self.consumer))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.consumer is not None:
            await self.consumer.stop()

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                await self._read_batch(consumer)
        except Exception as error:
            # A bug of ours: the worker stops rather than silently losing this topic.
            await self.app.crash(error)
            raise

    async def _read_batch(self, consumer: AIOKafkaConsumer) -> None:
        batches = await consumer.getmany(timeout_ms=1000, max_records=INGEST_BATCH)
        outcomes = [
            await _admit(self.app, self.source, self.dead_letters, message)
            for messages in batches.values()
            for message in messages
        ]
        if not outcomes:
            return
        await self.handler([o for o in outcomes if not isinstance(o, DecodeError)])
        await consumer.commit()
        for outcome in outcomes:
            self.app.counters.count(self.topic_name, outcome)
