"""Full garbage collections that scan only what is new: ``gc.freeze()`` after each one.

A worker's monitors hold millions of objects the garbage collector tracks (windows,
sketches, the label join's entries), alive as long as their partition is held here.
CPython's full (generation 2) collection traverses every tracked object, so its pause grew
with the state: 1.2 to 3.3 s of wall clock in the 1,000-model soak (README, "Soak"),
which held the event loop long enough for aiokafka to log its keepalive as not responding.

Right after a full collection has finished no cyclic garbage is left: every object still
tracked is alive. ``gc.freeze()`` then moves them all to the permanent generation, which
later collections skip, so the next full collection scans only what was allocated since
(and freezes what survives it in turn). What reference counting frees is freed all the
same; what a frozen object holds it keeps alive until unfrozen.

The cost: a frozen object that later becomes part of unreachable cycles is not collected
while it stays frozen. At a handover (partitions revoked, or assigned) the worker drops
the monitors it held, so ``FullCollections.handover`` unfreezes everything: the next full
collection, which CPython's thresholds make come soon (it counts survivors of the last
one, a few since the freeze), scans the whole heap once and collects what the frozen
objects left.

The freeze is not done inside the collector's callback: CPython documents
``gc.callbacks`` for inspecting and clearing ``gc.garbage`` and the collector is still
marked as running there, so the callback only asks the worker's event loop (from
whichever thread collected) to freeze at its next turn; a handover before that turn
cancels it. Objects allocated in between (the rest of that loop step) are frozen with the
others.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from streams.worker.metrics import Histogram

__all__ = ["PAUSE_BUCKETS_S", "FullCollections"]

# Bounds (seconds) of the histogram of full collections' wall-clock pauses; aiokafka
# logs its keepalive as not responding after about 3 s of a stalled loop.
PAUSE_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
FULL = 2


class FullCollections(Collector):
    """Times the process's full garbage collections and, with ``freeze``, freezes what
    survives each one; its own ``/metrics`` families."""

    def __init__(self, freeze: bool, buckets: Sequence[float] = PAUSE_BUCKETS_S) -> None:
        self.freeze = freeze
        self.loop: asyncio.AbstractEventLoop | None = None
        # The full collections' wall-clock pauses, in seconds.
        self.pauses = Histogram(buckets)
        self.longest = 0.0
        # Unreachable objects the full collections found and freed: with the freezing,
        # not those among frozen objects (the cost; compare a run without it).
        self.collected = 0
        self.freezes = 0
        self.unfreezes = 0
        self._started = 0.0
        # Set by a full collection until its freeze is done; a handover clears it.
        self._freeze_asked = False

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        gc.callbacks.append(self._on_gc)

    def remove(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        self.loop = None
        self._unfreeze()

    async def handover(self, *args: Any, **kwargs: Any) -> None:
        """A receiver of Faust's revocation and rebalance signals."""
        self._unfreeze()

    def _unfreeze(self) -> None:
        self._freeze_asked = False
        gc.unfreeze()
        self.unfreezes += 1

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != FULL:
            return
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        self.pauses.observe(pause)
        self.longest = max(self.longest, pause)
        self.collected += info["collected"]
        if self.freeze and not self._freeze_asked and self.loop is not None:
            self._freeze_asked = True
            try:
                self.loop.call_soon_threadsafe(self._freeze_now)
            except RuntimeError:
                # The loop has closed (the worker is stopping): nothing to freeze for.
                self._freeze_asked = False

    def _freeze_now(self) -> None:
        if not self._freeze_asked:
            return
        self._freeze_asked = False
        gc.freeze()
        self.freezes += 1

    def collect(self) -> Iterator[Any]:
        # Not gc.get_freeze_count(): it walks the frozen objects, 56 ms for 3 million.
        yield HistogramMetricFamily(
            "failsoft_gc_full_collection_seconds",
            "Wall-clock pauses of the process's full (generation 2) garbage collections.",
            buckets=self.pauses.cumulative(),
            sum_value=self.pauses.sum,
        )
        yield GaugeMetricFamily(
            "failsoft_gc_full_collection_longest_seconds",
            "The longest full garbage collection since the worker started.",
            value=self.longest,
        )
        for name, value, documentation in (
            ("gc_full_collection_collected", self.collected, "Objects full collections freed."),
            ("gc_freezes", self.freezes, "Freezes after a full garbage collection."),
            ("gc_unfreezes", self.unfreezes, "Unfreezes at a handover of partitions."),
        ):
            yield CounterMetricFamily(f"failsoft_{name}", documentation, value=value)
