"""The bounded, retrying sink buffer, driven by a fake transport.

These tests pin the buffer's logic (bounds, drops, retry, cadence, shutdown); the real
servers are exercised in test_sinks_integration.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from streams.sinks import buffer
from streams.sinks.buffer import Backoff, BufferedSink, SinkRejected, TransientSinkError

FAST = Backoff(initial=0.01, maximum=0.02)
# Delivered as soon as queued.
NOW = {"flush_interval": 0}


class FakeSink(BufferedSink[int]):
    """Records delivered batches; fails while ``failures`` is positive; can be held shut."""

    name = "fake"

    def __init__(self, failures: int = 0, reject: set[int] | None = None, **kwargs: object):
        kwargs.setdefault("backoff", FAST)
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.failures = failures
        self.reject = reject or set()
        self.batches: list[list[int]] = []
        self.attempts = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.closed = False

    async def deliver(self, batch: Sequence[int]) -> None:
        self.attempts += 1
        await self.gate.wait()
        if self.failures > 0:
            self.failures -= 1
            raise TransientSinkError("server down")
        if self.reject & set(batch):
            raise SinkRejected("HTTP 400")
        self.batches.append(list(batch))

    async def close_transport(self) -> None:
        self.closed = True

    def keeps(self, item: int) -> bool:
        # Negative items stand for what a sink keeps in memory only (Alerta's heartbeats).
        return item >= 0

    def encode_item(self, item: int) -> Any:
        return item

    def decode_item(self, data: Any) -> int:
        if not isinstance(data, int):
            raise TypeError(f"not an item: {data!r}")
        return data

    @property
    def delivered_items(self) -> list[int]:
        return [item for batch in self.batches for item in batch]


Start = Callable[[FakeSink], FakeSink]


@pytest_asyncio.fixture(loop_scope="function")
async def started() -> AsyncIterator[Start]:
    """Starts sinks and stops them after the test even when it fails, so no task leaks."""
    sinks: list[FakeSink] = []

    def start(sink: FakeSink) -> FakeSink:
        sink.start()
        sinks.append(sink)
        return sink

    yield start
    for sink in sinks:
        sink.gate.set()
        with contextlib.suppress(Exception):
            await sink.stop(timeout=0.1)


async def wait_until(condition: object, timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_buffer_stays_bounded_and_drops_oldest_while_server_is_down(started: Start) -> None:
    sink = FakeSink(capacity=10, batch_size=3, flush_interval=0)
    sink.gate.clear()  # the server hangs: the first batch stays in flight
    started(sink)
    sink.enqueue(0)
    await wait_until(lambda: sink.attempts == 1)
    results = [sink.enqueue(i) for i in range(1, 101)]

    assert sink.buffered == 10
    assert sink.stats.dropped == 91
    assert results.count(False) == 91
    assert sink.stats.enqueued == 101

    sink.gate.set()
    assert await sink.flush(timeout=2.0)
    # The in-flight item survives; the newest nine queued items are kept.
    assert sink.delivered_items == [0, *range(92, 101)]
    assert sink.stats.delivered == 10
    assert sink.stats.buffered == 0
    await sink.stop()


async def test_enqueue_is_synchronous_and_never_waits_for_the_server(started: Start) -> None:
    sink = FakeSink(capacity=5, batch_size=5, flush_interval=0)
    sink.gate.clear()
    started(sink)
    # No await between these calls: enqueue returns without yielding to the loop.
    for item in range(1000):
        sink.enqueue(item)
    assert sink.buffered == 5
    assert sink.stats.dropped == 995
    await sink.stop(timeout=0.05)


async def test_capacity_equal_to_batch_drops_newcomers_when_all_in_flight(started: Start) -> None:
    sink = FakeSink(capacity=2, batch_size=2, flush_interval=0)
    sink.gate.clear()
    started(sink)
    sink.enqueue(1)
    sink.enqueue(2)
    await wait_until(lambda: sink.attempts == 1)
    # Nothing queued can make room: the in-flight batch is kept, the newcomer dropped.
    assert sink.enqueue(3) is False
    assert sink.buffered == 2
    sink.gate.set()
    assert await sink.flush(timeout=2.0)
    assert sink.delivered_items == [1, 2]
    assert sink.stats.dropped == 1
    await sink.stop()


async def test_transient_failures_are_retried_in_order(started: Start) -> None:
    sink = FakeSink(failures=3, capacity=100, batch_size=10, flush_interval=0)
    started(sink)
    for item in range(5):
        sink.enqueue(item)
    assert await sink.flush(timeout=2.0)
    assert sink.delivered_items == [0, 1, 2, 3, 4]
    assert sink.stats.failed_attempts == 3
    assert sink.stats.last_error == "server down"
    assert sink.stats.dropped == 0
    await sink.stop()


async def test_rejected_batch_is_counted_and_does_not_block_the_rest(started: Start) -> None:
    sink = FakeSink(reject={2}, capacity=100, batch_size=1, flush_interval=0)
    started(sink)
    for item in range(4):
        sink.enqueue(item)
    assert await sink.flush(timeout=2.0)
    assert sink.delivered_items == [0, 1, 3]
    assert sink.stats.rejected == 1
    assert sink.stats.delivered == 3
    await sink.stop()


async def test_cadence_batches_points_instead_of_sending_each(started: Start) -> None:
    sink = FakeSink(capacity=100, batch_size=4, flush_interval=1.0)
    started(sink)
    for item in range(10):
        sink.enqueue(item)
        await asyncio.sleep(0)
    # Full batches go at once; the remainder waits for the cadence.
    await wait_until(lambda: len(sink.batches) == 2)
    assert sink.batches == [[0, 1, 2, 3], [4, 5, 6, 7]]
    await asyncio.sleep(0.1)
    assert len(sink.batches) == 2
    await wait_until(lambda: len(sink.batches) == 3, timeout=3.0)
    assert sink.batches[2] == [8, 9]
    await sink.stop()


async def test_stop_delivers_what_is_buffered_and_closes_transport(started: Start) -> None:
    sink = FakeSink(capacity=100, batch_size=50, flush_interval=60)
    started(sink)
    for item in range(7):
        sink.enqueue(item)
    await sink.stop(timeout=2.0)
    assert sink.delivered_items == list(range(7))
    assert sink.closed


async def test_stop_gives_up_after_timeout_when_server_stays_down(started: Start) -> None:
    sink = FakeSink(failures=10**9, capacity=100, batch_size=10, flush_interval=0)
    started(sink)
    sink.enqueue(1)
    await sink.stop(timeout=0.1)
    assert sink.stats.delivered == 0
    assert sink.stats.failed_attempts >= 1
    assert sink.closed


async def test_the_first_delivery_is_logged_once(
    started: Start, caplog: pytest.LogCaptureFixture
) -> None:
    sink = started(FakeSink(capacity=10, batch_size=1, **NOW))
    with caplog.at_level(logging.INFO, logger="streams.sinks.buffer"):
        for item in (1, 2, 3):
            sink.enqueue(item)
        await wait_until(lambda: sink.stats.delivered == 3)
    assert [r.getMessage() for r in caplog.records] == ["fake: first delivery, 1 item(s)"]


async def test_a_bug_in_deliver_is_raised_not_retried(started: Start) -> None:
    class Broken(FakeSink):
        async def deliver(self, batch: Sequence[int]) -> None:
            raise KeyError("bug")

    sink = Broken(capacity=10, batch_size=1, flush_interval=0)
    started(sink)
    sink.enqueue(1)
    with pytest.raises(KeyError):
        await sink.stop(timeout=1.0)


def test_backoff_doubles_up_to_maximum() -> None:
    backoff = Backoff(initial=0.5, maximum=4.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.delay(10_000) == 4.0


@pytest.mark.parametrize(("initial", "maximum"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0)])
def test_backoff_rejects_bad_bounds(initial: float, maximum: float) -> None:
    with pytest.raises(ValueError, match="initial"):
        Backoff(initial=initial, maximum=maximum)


@pytest.mark.parametrize(
    ("capacity", "batch_size", "flush_interval"), [(5, 0, 0), (5, 6, 0), (5, 5, -1)]
)
def test_sink_rejects_bad_sizes(capacity: int, batch_size: int, flush_interval: float) -> None:
    with pytest.raises(ValueError, match="fake"):
        FakeSink(capacity=capacity, batch_size=batch_size, flush_interval=flush_interval)


def spool_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("fake.*jsonl"))


def spooled(folder: Path) -> list[str]:
    """The lines of every fake sink's spool file in ``folder``."""
    return [line for path in spool_files(folder) for line in path.read_text().splitlines()]


async def crash(sink: FakeSink) -> None:
    """What a SIGKILL leaves of a sink: no stop, no flush, and its spool file closed by the
    kernel, which drops its lock."""
    for task in (sink._task, sink._adopting):
        assert task is not None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    sink._task = sink._adopting = None
    assert sink._spool is not None and sink._spool._file is not None
    sink._spool._file.close()


async def test_an_outage_is_spooled_as_it_happens_and_the_next_start_sends_it(
    started: Start, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    dead = started(FakeSink(failures=10**9, capacity=100, batch_size=2, spool=spool, **NOW))
    for item in range(3):
        dead.enqueue(item)
    await wait_until(lambda: dead.stats.failed_attempts >= 1)
    dead.enqueue(3)
    dead.enqueue(-1)  # kept in memory only
    # Written as queued: a SIGKILL now (no stop, no flush) leaves all of them behind.
    assert spooled(spool) == ["0", "1", "2", "3"]
    assert (dead.stats.spooled, dead.stats.unspooled) == (4, 0)
    await crash(dead)

    successor = started(FakeSink(capacity=100, batch_size=2, spool=spool, **NOW))
    successor.enqueue(4)
    assert successor.stats.restored == 4
    assert await successor.flush(timeout=2.0)
    assert successor.delivered_items == [0, 1, 2, 3, 4]
    assert not spool_files(spool)  # delivered: a third start sends nothing again


async def test_no_spool_is_written_while_the_server_answers(started: Start, tmp_path: Path) -> None:
    sink = started(FakeSink(capacity=100, batch_size=10, spool=tmp_path, **NOW))
    for item in range(25):
        sink.enqueue(item)
    assert await sink.flush(timeout=2.0)
    assert not spool_files(tmp_path)
    assert sink.stats.spooled == 0


async def test_the_spool_is_deleted_once_the_outage_is_delivered(
    started: Start, tmp_path: Path
) -> None:
    sink = started(FakeSink(failures=3, capacity=100, batch_size=10, spool=tmp_path, **NOW))
    sink.enqueue(1)
    await wait_until(lambda: sink.stats.failed_attempts >= 1)
    assert spooled(tmp_path) == ["1"]
    assert await sink.flush(timeout=2.0)
    assert not spool_files(tmp_path)
    sink.enqueue(2)
    assert await sink.flush(timeout=2.0)
    assert not spool_files(tmp_path)
    assert sink.delivered_items == [1, 2]


async def test_the_spool_stops_at_its_bound_and_counts_what_it_left_in_memory(
    started: Start, tmp_path: Path
) -> None:
    # Lines of "10\n" to "99\n", three bytes each: four fit in 13 bytes.
    dead = started(
        FakeSink(failures=10**9, capacity=100, batch_size=1, spool=tmp_path, spool_bytes=13, **NOW)
    )
    dead.enqueue(10)
    await wait_until(lambda: dead.stats.failed_attempts >= 1)
    for item in range(11, 20):
        dead.enqueue(item)
    assert spooled(tmp_path) == ["10", "11", "12", "13"]
    assert (dead.stats.spooled, dead.stats.unspooled, dead.buffered) == (4, 6, 10)
    await crash(dead)

    successor = started(FakeSink(capacity=100, batch_size=10, spool=tmp_path, **NOW))
    assert await successor.flush(timeout=2.0)
    assert successor.delivered_items == [10, 11, 12, 13]


async def test_a_start_keeps_the_newest_of_a_spool_past_capacity_and_skips_a_cut_line(
    started: Start, tmp_path: Path
) -> None:
    # A host's crash can cut the last line short. The name is the one-file-per-worker
    # spool's, from before spools were shared: adopted all the same.
    legacy = tmp_path / "fake.jsonl"
    legacy.write_text("".join(f"{n}\n" for n in range(8)) + '{"cut', encoding="utf-8")
    sink = started(FakeSink(capacity=5, batch_size=5, spool=tmp_path, **NOW))
    assert (sink.stats.restored, sink.stats.dropped) == (5, 4)
    assert await sink.flush(timeout=2.0)
    assert sink.delivered_items == [3, 4, 5, 6, 7]
    assert not spool_files(tmp_path)


async def test_a_stop_during_an_outage_leaves_the_buffer_in_the_spool(
    started: Start, tmp_path: Path
) -> None:
    sink = started(FakeSink(capacity=100, batch_size=10, flush_interval=10.0, spool=tmp_path))
    sink.gate.clear()  # the server hangs: no delivery has failed yet
    sink.enqueue(1)
    sink.enqueue(2)
    await sink.stop(timeout=0.05)
    assert spooled(tmp_path) == ["1", "2"]

    successor = started(FakeSink(capacity=100, batch_size=10, spool=tmp_path, **NOW))
    assert await successor.flush(timeout=2.0)
    assert successor.delivered_items == [1, 2]


async def test_a_running_sink_adopts_what_one_that_left_during_the_outage_spooled(
    started: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two workers share the spool folder; their sinks' server is down. One leaves for good
    # (a scale-down's SIGTERM: its stop spools what it holds), the other stays.
    monkeypatch.setattr(buffer, "ADOPT_EVERY", 0.01)
    stays = started(FakeSink(failures=10**9, capacity=100, batch_size=10, spool=tmp_path, **NOW))
    leaves = started(FakeSink(failures=10**9, capacity=100, batch_size=10, spool=tmp_path, **NOW))
    stays.enqueue(1)
    leaves.enqueue(2)
    leaves.enqueue(3)
    await wait_until(lambda: stays.stats.failed_attempts and leaves.stats.failed_attempts)
    await asyncio.sleep(0.05)
    # A live writer's spool is never adopted: it holds its lock.
    assert stays.stats.restored == 0
    assert sorted(spooled(tmp_path)) == ["1", "2", "3"]
    await leaves.stop(timeout=0.05)

    await wait_until(lambda: stays.stats.restored == 2)
    # In the stayer's own spool now, the leaver's file gone: a crash of the stayer would
    # leave them to the next adopter.
    assert stays._spool is not None
    assert spool_files(tmp_path) == [stays._spool.path]
    assert sorted(spooled(tmp_path)) == ["1", "2", "3"]
    stays.failures = 0  # the server is back
    assert await stays.flush(timeout=2.0)
    assert sorted(stays.delivered_items) == [1, 2, 3]
    assert leaves.delivered_items == []
    assert not spool_files(tmp_path)


async def test_a_spool_is_adopted_by_one_sink_only(started: Start, tmp_path: Path) -> None:
    dead = started(FakeSink(failures=10**9, capacity=100, batch_size=10, spool=tmp_path, **NOW))
    dead.enqueue(1)
    await wait_until(lambda: dead.stats.failed_attempts >= 1)
    await crash(dead)
    first = started(FakeSink(failures=10**9, capacity=100, batch_size=10, spool=tmp_path, **NOW))
    second = started(FakeSink(failures=10**9, capacity=100, batch_size=10, spool=tmp_path, **NOW))
    assert (first.stats.restored, second.stats.restored) == (1, 0)
    # The first holds it in its own spool, locked: the second does not take it from there.
    assert spooled(tmp_path) == ["1"]


async def test_the_stats_count_what_is_held_that_a_spool_does_not_keep(
    started: Start, tmp_path: Path
) -> None:
    sink = started(FakeSink(capacity=100, batch_size=2, spool=tmp_path, **NOW))
    sink.gate.clear()  # the server hangs: the first batch stays in flight
    for item in (-1, 1, 2, -2, -3):
        sink.enqueue(item)
    await wait_until(lambda: sink._in_flight)
    # -1 in flight and -2, -3 queued: counted wherever they are held.
    assert sink._in_flight == [-1, 1]
    assert (sink.stats.buffered, sink.stats.buffered_not_spooled) == (5, 3)
    sink.gate.set()
    assert await sink.flush(timeout=2.0)
    assert (sink.stats.buffered, sink.stats.buffered_not_spooled) == (0, 0)
