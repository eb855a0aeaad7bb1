"""The bounded, retrying buffer that every sink is built on.

Agents call ``enqueue`` (synchronous, O(1), never blocks). A background task takes batches
from the buffer and hands them to ``deliver``; a delivery that fails with
``TransientSinkError`` (server down, timeout, 5xx) is retried with exponential backoff
until it succeeds, while new items keep queueing behind it. ``SinkRejected`` (the server
understood and refused, e.g. HTTP 400) is not retried: the batch is counted as rejected
and dropped, so one bad item cannot block the sink forever.

The buffer is bounded by ``capacity``, counting the batch in flight. When it is full the
oldest queued item is dropped: during an outage the newest state is the most useful.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
import dataclasses
import logging
from collections.abc import Sequence
from typing import Generic, TypeVar

__all__ = [
    "DEFAULT_BACKOFF",
    "Backoff",
    "BufferedSink",
    "SinkRejected",
    "SinkStats",
    "TransientSinkError",
]

T = TypeVar("T")
log = logging.getLogger(__name__)


class TransientSinkError(Exception):
    """The server could not be reached or failed; the same batch is retried later."""


class SinkRejected(Exception):
    """The server refused the batch for good; it is counted and dropped."""


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Exponential backoff between retries: ``initial``, doubling, capped at ``maximum``."""

    initial: float = 0.5
    maximum: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError(
                f"Backoff: need 0 < initial <= maximum, got {self.initial}, {self.maximum}"
            )

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1 for the first retry)."""
        return float(min(self.maximum, self.initial * 2 ** min(attempt - 1, 62)))


DEFAULT_BACKOFF = Backoff()


@dataclasses.dataclass
class SinkStats:
    """Counters of one sink since it started; ``buffered`` includes the batch in flight."""

    enqueued: int = 0
    delivered: int = 0
    dropped: int = 0
    rejected: int = 0
    failed_attempts: int = 0
    buffered: int = 0
    last_error: str | None = None


class BufferedSink(abc.ABC, Generic[T]):
    """Bounded buffer plus a draining task; subclasses implement ``deliver``.

    Parameters
    ----------
    capacity
        Most items held, queued plus in flight.
    batch_size
        Most items handed to one ``deliver`` call.
    flush_interval
        Seconds between drains when fewer than ``batch_size`` items are queued. Zero drains
        as soon as anything is queued.
    backoff
        Delays between retries of a failed delivery.
    """

    name = "sink"

    def __init__(
        self,
        *,
        capacity: int,
        batch_size: int,
        flush_interval: float,
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        if not 1 <= batch_size <= capacity:
            raise ValueError(
                f"{self.name}: need 1 <= batch_size <= capacity, got {batch_size}, {capacity}"
            )
        if flush_interval < 0:
            raise ValueError(f"{self.name}: flush_interval must be >= 0, got {flush_interval}")
        self.capacity = capacity
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.backoff = backoff
        self._queue: collections.deque[T] = collections.deque()
        self._in_flight: list[T] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._stats = SinkStats()

    @property
    def stats(self) -> SinkStats:
        """A snapshot of the counters."""
        return dataclasses.replace(self._stats, buffered=self.buffered)

    @property
    def buffered(self) -> int:
        return len(self._queue) + len(self._in_flight)

    def enqueue(self, item: T) -> bool:
        """Queue ``item`` for delivery; never blocks. Returns False if an item was dropped."""
        self._stats.enqueued += 1
        dropped = False
        if self.buffered >= self.capacity:
            dropped = True
            self._stats.dropped += 1
            if not self._queue:
                # Only the batch in flight is held (capacity == batch_size): drop the newcomer.
                return False
            self._queue.popleft()
        self._queue.append(item)
        if self.flush_interval == 0 or len(self._queue) >= self.batch_size:
            self._wakeup.set()
        return not dropped

    def start(self) -> None:
        """Start the draining task on the running loop."""
        if self._task is None:
            self._closing = False
            self._task = asyncio.get_running_loop().create_task(self._drain(), name=self.name)

    async def stop(self, timeout: float = 5.0) -> None:
        """Deliver what is buffered for up to ``timeout`` seconds, then stop draining."""
        if self._task is None:
            return
        self._closing = True
        self._wakeup.set()
        task, self._task = self._task, None
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.close_transport()

    async def flush(self, timeout: float) -> bool:
        """Wait until the buffer is empty (True) or ``timeout`` seconds pass (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._wakeup.set()
        while self.buffered:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    @abc.abstractmethod
    async def deliver(self, batch: Sequence[T]) -> None:
        """Send one batch; raise TransientSinkError to retry it, SinkRejected to drop it."""

    async def close_transport(self) -> None:
        """Release connections; called once when the sink stops."""

    async def _drain(self) -> None:
        while self._queue or not self._closing:
            if not self._queue or (
                len(self._queue) < self.batch_size and self.flush_interval and not self._closing
            ):
                # Wait for the cadence, a full batch (enqueue wakes us) or stop().
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.flush_interval or None):
                        await self._wakeup.wait()
                self._wakeup.clear()
            while self._queue:
                take = min(self.batch_size, len(self._queue))
                self._in_flight = [self._queue.popleft() for _ in range(take)]
                await self._deliver_with_retry()

    async def _deliver_with_retry(self) -> None:
        attempt = 0
        while True:
            try:
                await self.deliver(self._in_flight)
            except TransientSinkError as error:
                attempt += 1
                self._stats.failed_attempts += 1
                self._stats.last_error = str(error)
                if attempt == 1:
                    log.warning("%s: delivery failed, retrying with backoff: %s", self.name, error)
                await asyncio.sleep(self.backoff.delay(attempt))
                continue
            except SinkRejected as error:
                self._stats.rejected += len(self._in_flight)
                self._stats.last_error = str(error)
                log.error("%s: %d item(s) rejected: %s", self.name, len(self._in_flight), error)
            else:
                self._stats.delivered += len(self._in_flight)
                if attempt:
                    log.info("%s: delivered again after %d failed attempt(s)", self.name, attempt)
            self._in_flight = []
            return
