"""Full garbage collections that skip what the worker holds from its start: ``gc.freeze()``
once, before the first record.

CPython's full (generation 2) collection traverses every object the collector tracks, and
its pause holds the worker's event loop. Many of those objects are not the monitors': the
modules, numba's compiled loops and the app make 160,000 to 330,000 before the first
monitor exists. With 1,000 models of 20 features at their caps a full collection took 104
to 116 ms, and 34 to 60 ms with those frozen (README, "Full garbage collections: freeze
what the start holds").

So the worker, once started and before it reads, collects once and calls ``gc.freeze()``:
what is alive then moves to the permanent generation, which later collections skip, and
every full collection after walks only what came since: the monitors and the records in
flight. Nothing is frozen after that. The monitors' state holds no reference cycle, so a
monitor dropped at a handover is freed by reference counting; what is cyclic garbage later
is collected as usual, because it is not frozen.

The cost: an object alive at the start that later becomes part of an unreachable cycle is
never collected. What the start holds (modules, compiled code, the app and its services)
lives as long as the process.

An earlier design froze what survived every full collection and unfroze it all at each
handover; its first collection after a handover walked the whole heap again.
"""

from __future__ import annotations

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
    """Times the process's full garbage collections and, with ``freeze``, freezes what the
    process holds when installed; its own ``/metrics`` families."""

    def __init__(self, freeze: bool, buckets: Sequence[float] = PAUSE_BUCKETS_S) -> None:
        self.freeze = freeze
        # The full collections' wall-clock pauses, in seconds.
        self.pauses = Histogram(buckets)
        self.longest = 0.0
        # Unreachable objects the full collections found and freed.
        self.collected = 0
        # Objects frozen at the start (0 without ``freeze``, or before it).
        self.frozen = 0
        self._started = 0.0

    def install(self) -> None:
        """Freezes (with ``freeze``) and times the full collections from now on."""
        if self.freeze:
            # Cyclic garbage of the start-up goes first: frozen, it would stay for good.
            gc.collect()
            gc.freeze()
            # It walks the frozen objects (9.8 ms for 125,000, measured): once, here.
            self.frozen = gc.get_freeze_count()
        gc.callbacks.append(self._on_gc)

    def remove(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self.frozen:
            # For a process that goes on without the app (tests, an embedding).
            gc.unfreeze()
            self.frozen = 0

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

    def collect(self) -> Iterator[Any]:
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
        yield CounterMetricFamily(
            "failsoft_gc_full_collection_collected",
            "Objects full collections freed.",
            value=self.collected,
        )
        yield GaugeMetricFamily(
            "failsoft_gc_frozen_at_start",
            "Objects frozen at the worker's start, which full collections skip.",
            value=self.frozen,
        )
