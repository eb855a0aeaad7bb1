"""The bounded, retrying buffer that every sink is built on.

Agents call ``enqueue`` (synchronous, O(1), never blocks). A background task takes batches
from the buffer and hands them to ``deliver``; a delivery that fails with
``TransientSinkError`` (server down, timeout, 5xx) is retried with exponential backoff
until it succeeds, while new items keep queueing behind it. ``SinkRejected`` (the server
understood and refused, e.g. HTTP 400) is not retried: the batch is counted as rejected
and dropped, so one bad item cannot block the sink forever.

The buffer is bounded by ``capacity``, counting the batch in flight. When it is full the
oldest queued item is dropped: during an outage the newest state is the most useful.

Given a ``spool`` folder, what is buffered also survives the process (a SIGKILL, a
host's supervisor, a deploy, a scale-down) while the server is out: from the first failed
delivery until the buffer is empty again, every item buffered is written to the
process's spool file as a JSON line the moment it is queued (``Spool``), and a stop that
could not deliver everything writes the rest. A process that stops or dies leaves its
file, unlocked, in the folder; every sink of that name whose spool is the same folder
adopts such files when it starts and every ``ADOPT_EVERY`` seconds while it runs: the
worker itself when it comes back, or any other worker of the app that shares the folder
when it does not, which is what keeps a worker that left for good during an outage from
stranding its items. Adopted items are queued first and written to the adopter's own
spool before the orphan is deleted. A file is deleted once everything in it was
delivered; a kill while a replay drains sends the delivered part again, which InfluxDB
(same series and time) and Alerta (a duplicate) absorb. A spool is bounded by
``spool_bytes``: an item that does not fit stays in memory only and is counted as
``unspooled``. A sink may keep some kinds of items in memory only (``keeps``: Alerta's
heartbeats, since a dead worker's would say it is alive); ``buffered_not_spooled`` counts
those it holds, so what a stop during an outage spooled can be checked against what it
held. Only a kill while the server is up can lose items: what ``flush_interval``
held, a second's worth.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
import dataclasses
import fcntl
import itertools
import json
import logging
import os
import secrets
import socket
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

__all__ = [
    "ADOPT_EVERY",
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
# Seconds between a running sink's looks for spools that no live process holds: about the
# time a worker that left during an outage leaves its items undelivered once its server is
# back (a glob of one folder each time).
ADOPT_EVERY = 5.0


@dataclasses.dataclass
class SinkStats:
    """Counters of one sink since it started; ``buffered`` includes the batch in flight,
    ``buffered_not_spooled`` is how many of those a spool does not keep (``keeps``)."""

    enqueued: int = 0
    delivered: int = 0
    dropped: int = 0
    rejected: int = 0
    failed_attempts: int = 0
    buffered: int = 0
    buffered_not_spooled: int = 0
    spooled: int = 0
    unspooled: int = 0
    restored: int = 0
    last_error: str | None = None


class Spool:
    """The buffered items of an outage, one JSON line each, in a file that outlives the
    process, in a folder the workers of one app may share.

    Each process writes ``<name>.<member>.jsonl`` (``member``: host, pid and a random
    tag, new at every start) and holds an exclusive ``flock`` on it while it is open, so a
    file nobody locks was left by a process that stopped or died (the kernel drops a dead
    process's locks). ``adopt`` takes such files, whoever left them: this process's
    previous life, or another worker that left during an outage. A file is created under
    a hidden name and renamed once locked, so no one adopts a file its writer is still
    opening; an adopter checks that the file it locked is still linked, so a file is
    adopted once. ``keeps`` says whether an item is worth keeping across a restart,
    ``encode`` turns one it keeps into JSON-able data, ``decode`` turns that back. Lines
    are written through a line-buffered file: each is in the kernel once ``add`` returns,
    which a killed process cannot take back.
    """

    def __init__(
        self,
        folder: Path,
        name: str,
        max_bytes: int,
        encode: Callable[[Any], Any],
        decode: Callable[[Any], Any],
        keeps: Callable[[Any], bool],
    ) -> None:
        if max_bytes < 1:
            raise ValueError(f"Spool: max_bytes must be >= 1, got {max_bytes}")
        self.folder = folder
        self.name = name
        member = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self.path = folder / f"{name}.{member}.jsonl"
        self.max_bytes = max_bytes
        self._encode = encode
        self._decode = decode
        self._keeps = keeps
        self._file: IO[str] | None = None
        self._size = 0

    @property
    def active(self) -> bool:
        """True while items are written to the file."""
        return self._file is not None

    def adopt(self, take: Callable[[list[Any], int, Path], None]) -> int:
        """Hand the items of every file of this spool's name that no live process holds
        to ``take`` (items oldest first, how many lines did not decode, the file), then
        delete the file; how many files were adopted. ``take`` must have the items in a
        file of its own (``begin`` or ``add``) when it returns: a crash before the delete
        sends them twice, never loses them. The spool of one folder per worker before
        spools were shared, ``<name>.jsonl``, is adopted the same way."""
        adopted = 0
        for path in sorted(self.folder.glob(f"{self.name}.*jsonl")):
            if path == self.path:
                continue
            try:
                orphan = path.open(encoding="utf-8")
            except FileNotFoundError:  # delivered and deleted, or adopted, since the glob
                continue
            with orphan:
                try:
                    fcntl.flock(orphan, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # its writer is alive
                    continue
                if not os.fstat(orphan.fileno()).st_nlink:
                    continue
                items: list[Any] = []
                bad = 0
                for line in orphan:
                    try:
                        items.append(self._decode(json.loads(line)))
                    except (ValueError, TypeError, KeyError):
                        bad += 1
                take(items, bad, path)
                path.unlink()
                adopted += 1
        return adopted

    def begin(self, items: Iterable[Any]) -> tuple[int, int]:
        """Start writing (a new file) with the items buffered now; (spooled, unspooled)."""
        if self._file is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            hidden = self.path.with_name("." + self.path.name)
            self._file = hidden.open("w", buffering=1, encoding="utf-8")
            fcntl.flock(self._file, fcntl.LOCK_EX)
            hidden.rename(self.path)
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
        kept (``keeps`` said so)."""
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
        """Stop writing; ``delete`` when every item in the file was delivered, else leave
        it, unlocked, to whoever adopts it."""
        if self._file is not None:
            if delete:
                # Before the lock goes, so no one adopts what was delivered.
                self.path.unlink(missing_ok=True)
            self._file.close()
            self._file = None

    def _line(self, item: Any) -> str | None:
        if not self._keeps(item):
            return None
        return json.dumps(self._encode(item), separators=(",", ":")) + "\n"


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
        A folder that keeps what is buffered during an outage past the process, shared by
        the sinks of this name that deliver to the same server (the module docstring); the
        subclass then implements ``encode_item`` and ``decode_item``, and ``keeps`` if
        some items stay in memory only.
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
        self._adopting: asyncio.Task[None] | None = None
        self._closing = False
        self._stats = SinkStats()
        self._spool = (
            None
            if spool is None
            else Spool(
                spool, self.name, spool_bytes, self.encode_item, self.decode_item, self.keeps
            )
        )

    @property
    def stats(self) -> SinkStats:
        """A snapshot of the counters; counting what a spool does not keep looks at every
        item held, which a scrape's or a report's pace affords and ``enqueue``'s would not."""
        held = itertools.chain(self._in_flight, self._queue)
        return dataclasses.replace(
            self._stats,
            buffered=self.buffered,
            buffered_not_spooled=sum(1 for item in held if not self.keeps(item)),
        )

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
        """Start the draining task on the running loop, after queueing first what processes
        that stopped or died left in the spool folder, and the periodic adoption."""
        if self._task is None:
            loop = asyncio.get_running_loop()
            if self._spool is not None:
                self._spool.adopt(self._adopt)
                self._adopting = loop.create_task(
                    self._adopt_every(self._spool), name=f"{self.name}-adopt"
                )
            self._closing = False
            self._task = loop.create_task(self._drain(), name=self.name)

    async def stop(self, timeout: float = 5.0) -> None:
        """Deliver what is buffered for up to ``timeout`` seconds, then stop draining."""
        if self._task is None:
            return
        if self._adopting is not None:
            self._adopting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._adopting
            self._adopting = None
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

    def keeps(self, item: T) -> bool:
        """Whether a spool keeps ``item`` across the process; False keeps it in memory only."""
        return True

    def encode_item(self, item: T) -> Any:
        """An item ``keeps`` accepts as JSON-able data for the spool."""
        raise NotImplementedError(f"{self.name}: a spool needs encode_item")

    def decode_item(self, data: Any) -> T:
        """The item ``encode_item`` made ``data`` of; raises ValueError, TypeError or
        KeyError on data it did not make."""
        raise NotImplementedError(f"{self.name}: a spool needs decode_item")

    async def _adopt_every(self, spool: Spool) -> None:
        while True:
            await asyncio.sleep(ADOPT_EVERY)
            # On the loop: adopting queues items, and the orphans are outages' worth.
            spool.adopt(self._adopt)

    def _adopt(self, items: list[T], bad: int, path: Path) -> None:
        assert self._spool is not None
        room = max(0, self.capacity - self.buffered)
        keep = items[len(items) - min(room, len(items)) :]
        self._stats.dropped += bad + len(items) - len(keep)
        self._stats.restored += len(keep)
        self._queue.extendleft(reversed(keep))
        if self._spool.active:
            for item in keep:
                self._count_spooled(self._spool.add(item))
        elif keep:
            self._begin_spool(self._spool)
        self._wakeup.set()
        log.info(
            "%s: %d item(s) adopted from the spool %s (%d dropped: %d past capacity, "
            "%d unreadable)",
            self.name,
            len(keep),
            path,
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
