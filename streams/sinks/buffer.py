"""The bounded, retrying buffer that every sink is built on.

Agents call ``enqueue`` (synchronous, O(1), never blocks). A background task takes batches
from the buffer and hands them to ``deliver``; a delivery that fails with
``TransientSinkError`` (server down, timeout, 5xx) is retried with exponential backoff
until it succeeds, while new items keep queueing behind it. ``SinkRejected`` (the server
understood and refused, e.g. HTTP 400) is not retried: the batch is counted as rejected
and dropped, so one bad item cannot block the sink forever.

The buffer is bounded by ``capacity``, counting the batch in flight. When it is full the
oldest queued item is dropped: during an outage the newest state is the most useful.

Given a ``spool`` file, what is buffered also survives the process (a SIGKILL, a host's
supervisor, a deploy) while the server is out: from the first failed delivery until the
buffer is empty again, every item buffered is written to the spool as a JSON line the
moment it is queued (``Spool``), so a process killed mid-outage leaves it behind and the
next start queues its items first. The file is deleted once everything in it was
delivered; a kill while a replay drains sends the delivered part again, which InfluxDB
(same series and time) and Alerta (a duplicate) absorb. It is bounded by ``spool_bytes``:
an item that does not fit stays in memory only and is counted as ``unspooled``. Only a
kill while the server is up can lose items: what ``flush_interval`` held, a second's worth.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_SPOOL_BYTES",
    "Backoff",
    "BufferedSink",
    "SinkRejected",
    "SinkStats",
    "Spool",
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
# A spool's bound: about 200,000 points of InfluxDB, twice its sink's in-memory capacity.
DEFAULT_SPOOL_BYTES = 64 * 1024 * 1024


@dataclasses.dataclass
class SinkStats:
    """Counters of one sink since it started; ``buffered`` includes the batch in flight."""

    enqueued: int = 0
    delivered: int = 0
    dropped: int = 0
    rejected: int = 0
    failed_attempts: int = 0
    buffered: int = 0
    spooled: int = 0
    unspooled: int = 0
    restored: int = 0
    last_error: str | None = None


class Spool:
    """The buffered items of an outage, one JSON line each, in a file that outlives the
    process.

    ``encode`` turns an item into JSON-able data (None: not worth keeping across a
    restart), ``decode`` turns it back. Lines are written through a line-buffered file:
    each is in the kernel once ``add`` returns, which a killed process cannot take back.
    """

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        encode: Callable[[Any], Any],
        decode: Callable[[Any], Any],
    ) -> None:
        if max_bytes < 1:
            raise ValueError(f"Spool: max_bytes must be >= 1, got {max_bytes}")
        self.path = path
        self.max_bytes = max_bytes
        self._encode = encode
        self._decode = decode
        self._file: IO[str] | None = None
        self._size = 0

    @property
    def active(self) -> bool:
        """True while items are written to the file."""
        return self._file is not None

    def load(self) -> tuple[list[Any], int]:
        """The items a previous process left, oldest first, and how many lines did not
        decode (a line cut short by a host's crash); the file stays, and is written on."""
        items: list[Any] = []
        bad = 0
        if not self.path.exists():
            return items, bad
        with self.path.open(encoding="utf-8") as spooled:
            for line in spooled:
                try:
                    items.append(self._decode(json.loads(line)))
                except (ValueError, TypeError, KeyError):
                    bad += 1
        self._open()
        return items, bad

    def begin(self, items: Iterable[Any]) -> tuple[int, int]:
        """Start writing (a new file) with the items buffered now; (spooled, unspooled)."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", buffering=1, encoding="utf-8")
            self._size = 0
        lines = [line for line in map(self._line, items) if line is not None]
        fit = 0
        for line in lines:
            if self._size + len(line) > self.max_bytes:
                break
            self._size += len(line)
            fit += 1
        self._file.write("".join(lines[:fit]))
        return fit, len(lines) - fit

    def add(self, item: Any) -> bool | None:
        """Write one item: True, False when it would pass the bound, None when it is not
        kept (``encode`` said so)."""
        assert self._file is not None
        line = self._line(item)
        if line is None:
            return None
        if self._size + len(line) > self.max_bytes:
            return False
        self._file.write(line)
        self._size += len(line)
        return True

    def close(self, *, delete: bool) -> None:
        """Stop writing; ``delete`` when every item in the file was delivered."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if delete:
            self.path.unlink(missing_ok=True)

    def _open(self) -> None:
        self._file = self.path.open("a", buffering=1, encoding="utf-8")
        self._size = os.path.getsize(self.path)

    def _line(self, item: Any) -> str | None:
        data = self._encode(item)
        return None if data is None else json.dumps(data, separators=(",", ":")) + "\n"


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
    spool
        A file that keeps what is buffered during an outage across a restart (the module
        docstring); the subclass then implements ``encode_item`` and ``decode_item``.
    spool_bytes
        The spool's bound in bytes.
    """

    name = "sink"

    def __init__(
        self,
        *,
        capacity: int,
        batch_size: int,
        flush_interval: float,
        backoff: Backoff = DEFAULT_BACKOFF,
        spool: Path | None = None,
        spool_bytes: int = DEFAULT_SPOOL_BYTES,
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
        self._spool = (
            None if spool is None else Spool(spool, spool_bytes, self.encode_item, self.decode_item)
        )

    @property
    def stats(self) -> SinkStats:
        """A snapshot of the counters."""
        return dataclasses.replace(self._stats, buffered=self.buffered)

    @property
    def spooling(self) -> bool:
        """True while what is buffered is also written to the spool (an outage)."""
        return self._spool is not None and self._spool.active

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
        if self._spool is not None and self._spool.active:
            self._count_spooled(self._spool.add(item))
        if self.flush_interval == 0 or len(self._queue) >= self.batch_size:
            self._wakeup.set()
        return not dropped

    def start(self) -> None:
        """Start the draining task on the running loop, after queueing first what a previous
        process left in the spool."""
        if self._task is None:
            if self._spool is not None and not self._spool.active:
                self._restore(self._spool)
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
        if self._spool is not None:
            if self.buffered and not self._spool.active:
                self._begin_spool(self._spool)
            self._spool.close(delete=not self.buffered)
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

    def encode_item(self, item: T) -> Any:
        """The item as JSON-able data for the spool, or None to keep it in memory only."""
        raise NotImplementedError(f"{self.name}: a spool needs encode_item")

    def decode_item(self, data: Any) -> T:
        """The item ``encode_item`` made ``data`` of; raises ValueError, TypeError or
        KeyError on data it did not make."""
        raise NotImplementedError(f"{self.name}: a spool needs decode_item")

    def _restore(self, spool: Spool) -> None:
        items, bad = spool.load()
        if not items and not bad:
            return
        keep = items[-self.capacity :]
        self._stats.dropped += bad + len(items) - len(keep)
        self._stats.restored += len(keep)
        self._queue.extendleft(reversed(keep))
        log.info(
            "%s: %d item(s) restored from the spool %s (%d dropped: %d past capacity, "
            "%d unreadable)",
            self.name,
            len(keep),
            spool.path,
            bad + len(items) - len(keep),
            len(items) - len(keep),
            bad,
        )

    def _begin_spool(self, spool: Spool) -> None:
        spooled, unspooled = spool.begin([*self._in_flight, *self._queue])
        self._stats.spooled += spooled
        self._stats.unspooled += unspooled

    def _count_spooled(self, written: bool | None) -> None:
        if written:
            self._stats.spooled += 1
        elif written is not None:
            self._stats.unspooled += 1

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
                    if self._spool is not None and not self._spool.active:
                        self._begin_spool(self._spool)
                await asyncio.sleep(self.backoff.delay(attempt))
                continue
            except SinkRejected as error:
                self._stats.rejected += len(self._in_flight)
                self._stats.last_error = str(error)
                log.error("%s: %d item(s) rejected: %s", self.name, len(self._in_flight), error)
            else:
                if not self._stats.delivered:
                    # A sink that never delivers is otherwise silent until its buffer fills.
                    log.info("%s: first delivery, %d item(s)", self.name, len(self._in_flight))
                self._stats.delivered += len(self._in_flight)
                if attempt:
                    log.info("%s: delivered again after %d failed attempt(s)", self.name, attempt)
            self._in_flight = []
            if self._spool is not None and self._spool.active and not self._queue:
                self._spool.close(delete=True)
            return
