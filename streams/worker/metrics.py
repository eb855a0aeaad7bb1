"""Prometheus metrics of a worker, read from its counters when scraped.

Agents only bump plain integers (``streams.worker.ingest.PipelineCounters``) and sinks keep their
own stats; this collector turns them into metric families at scrape time, so exporting
costs nothing per event.

Metrics (all with the ``failsoft_`` prefix):

- ``messages_consumed_total{topic}``, ``messages_processed_total{topic}``,
  ``messages_dead_lettered_total{topic,reason}``: the ingest books, in records (a batch
  message of 500 counts 500); consumed equals processed plus dead-lettered for every
  topic.
- ``commands_sent_total{action}``, ``commands_withheld_total{action}``: control commands
  signed and sent, or withheld (alert-only model, or no signing key);
  ``commands_skipped_as_sent_total{action}``: commands a monitor made again (restored
  from a checkpoint older than them) whose seq the control topic already holds.
- ``messages_received_total{topic}``: Kafka messages the ingest reader read per topic
  (single-record or batch), the internal topic of feature writes by model included;
- ``lag_messages{topic}``, ``lag_records{topic}`` and ``lag_seconds{topic}``: how far the
  reader is behind in its partitions, in messages; in records, estimated at the records
  per message it has read on the topic (a batch message's size is known only once read);
  and as the age of the last record it read while more wait (0 once it has read
  everything);
- ``micro_batch_records``: a histogram of the sizes of the micro-batches fed to the
  monitors (``streams.worker.readers.MicroBatches``);
- ``effect_latency_seconds``: a histogram, per record, of the seconds from the read that
  brought it to the worker to its model's effects handed over (commands to the producer,
  points and alerts to the sinks' queues), counting each record of a micro-batch at its
  first record's wait: an upper bound. A feature write forwarded from another worker is
  timed from its read on the app's internal topic, so its hop through that topic is not
  in it.
- ``sink_buffered{sink}``, ``sink_buffered_not_spooled{sink}`` (of those, the items a
  spool does not keep: Alerta's heartbeats), ``sink_delivered_total{sink}``,
  ``sink_dropped_total{sink}``, ``sink_rejected_total{sink}``,
  ``sink_failed_attempts_total{sink}``;
- ``sink_spooling{sink}`` (1 while an outage's items are written to the spool),
  ``sink_spooled_total{sink}``, ``sink_unspooled_total{sink}`` (held in memory only: the
  spool was full) and ``sink_restored_total{sink}`` (adopted from spools that stopped or
  dead workers left, this one's previous life included; ``streams.sinks.buffer``).
- ``monitor_inputs_unused{part,reason}``: inputs the monitors of this worker's models
  could not use or let go of (``streams.monitor.gauges``), summed over those models: a
  gauge, since it moves with their partitions;
- ``monitor_state_entries{structure}``, ``monitor_state_cap{structure}`` and
  ``monitor_models_at_cap{structure}``: the structures that grow until a cap, summed over
  the models, and how many models have reached it;
- ``monitor_sample_fraction_min{structure}`` and ``monitor_models_sampled{structure}``:
  of the structures that keep a hash sample of entities at their cap, the smallest
  fraction kept among the models, and how many models keep less than all.

The worker's full garbage collections have a collector of their own
(``streams.worker.gcfreeze.FullCollections``): ``gc_full_collection_seconds`` (a histogram
of their wall-clock pauses), ``gc_full_collection_longest_seconds``,
``gc_full_collection_collected_total`` (objects they freed) and ``gc_frozen_at_start``
(objects frozen before the first record, which they skip).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from streams.monitor.gauges import StateGauges
from streams.sinks.buffer import BufferedSink
from streams.worker.ingest import PipelineCounters

__all__ = ["IngestView", "WorkerCollector", "render"]

# aiohttp adds the charset itself and refuses one in the content type.
CONTENT_TYPE = "text/plain; version=0.0.4"


class Histogram:
    """Counts of observations under each upper bound, and their sum, for a Prometheus
    histogram; ``observe`` costs a bisection, so a hot path can call it.

    >>> sizes = Histogram((1, 4))
    >>> sizes.observe(3)
    >>> sizes.observe(9, count=2)
    >>> sizes.cumulative(), sizes.total, sizes.sum
    ([('1', 0), ('4', 1), ('+Inf', 3)], 3, 21.0)
    """

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = tuple(bounds)
        # One count per bound, then the count above the last.
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float, count: int = 1) -> None:
        """``count`` observations of ``value``."""
        self.counts[bisect.bisect_left(self.bounds, value)] += count
        self.sum += value * count

    @property
    def total(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus's buckets: each bound with the observations at or under it."""
        running, buckets = 0, []
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            buckets.append((bound, running))
        return buckets


class Lag(Protocol):
    @property
    def messages(self) -> int: ...

    @property
    def records(self) -> int: ...

    @property
    def seconds(self) -> float: ...


class IngestView(Protocol):
    """What the collector reads of the ingest reader (``streams.worker.readers``)."""

    messages: Counter[str]
    # The partition numbers it reads of every input topic (Faust's assignment).
    partitions: frozenset[int]
    # Records per micro-batch fed, and the seconds from each record's read to its effects.
    batch_sizes: Histogram
    effect_latency: Histogram

    def lag(self) -> Mapping[str, Lag]: ...


class MonitorsView(Protocol):
    """What the collector reads of the worker's monitors (``streams.worker.shell``)."""

    def gauges(self) -> Sequence[StateGauges]: ...


class WorkerCollector(Collector):
    """Collects one worker's ingest books, its reader's lag and batches, sink stats, and
    its monitors' dropped inputs and bounded structures."""

    def __init__(
        self,
        counters: PipelineCounters,
        sinks: Sequence[BufferedSink[Any]],
        ingest: IngestView,
        monitors: MonitorsView,
    ) -> None:
        self.counters = counters
        self.sinks = sinks
        self.ingest = ingest
        self.monitors = monitors

    def collect(self) -> Iterator[Metric]:
        books = (
            ("messages_consumed", "Messages consumed per input topic.", self.counters.consumed),
            ("messages_processed", "Messages decoded and used.", self.counters.processed),
        )
        for name, documentation, counts in books:
            family = CounterMetricFamily(f"failsoft_{name}", documentation, labels=["topic"])
            # Every consumed topic appears in both families, zero included.
            for topic in sorted(self.counters.consumed):
                family.add_metric([topic], counts[topic])
            yield family
        dead = CounterMetricFamily(
            "failsoft_messages_dead_lettered",
            "Messages sent to the dead-letter topic, by reason.",
            labels=["topic", "reason"],
        )
        for (topic, reason), value in sorted(self.counters.dead_lettered.items()):
            dead.add_metric([topic, reason], value)
        yield dead

        for outcome, counts, documentation in (
            ("sent", self.counters.commands_sent, "Control commands signed and sent."),
            (
                "withheld",
                self.counters.commands_withheld,
                "Control commands withheld: alert-only model or no signing key.",
            ),
            (
                "skipped_as_sent",
                self.counters.commands_skipped_as_sent,
                "Control commands not sent again: the control topic holds their seq.",
            ),
        ):
            family = CounterMetricFamily(
                f"failsoft_commands_{outcome}", documentation, labels=["action"]
            )
            for action in ("fallback", "restore"):
                family.add_metric([action], counts[action])
            yield family

        yield from self._ingest()

        buffered = GaugeMetricFamily(
            "failsoft_sink_buffered", "Items queued or in flight.", labels=["sink"]
        )
        not_spooled = GaugeMetricFamily(
            "failsoft_sink_buffered_not_spooled",
            "Items queued or in flight that a spool does not keep (Alerta's heartbeats).",
            labels=["sink"],
        )
        spooling = GaugeMetricFamily(
            "failsoft_sink_spooling",
            "1 while the sink writes what it buffers to its spool (an outage).",
            labels=["sink"],
        )
        totals = {
            field: CounterMetricFamily(f"failsoft_sink_{field}", doc, labels=["sink"])
            for field, doc in (
                ("delivered", "Items the server accepted."),
                ("dropped", "Items dropped because the buffer was full."),
                ("rejected", "Items the server refused for good."),
                ("failed_attempts", "Deliveries that failed and were retried."),
                ("spooled", "Items written to the spool during an outage."),
                ("unspooled", "Items of an outage held in memory only: the spool was full."),
                ("restored", "Items adopted from spools that stopped or dead workers left."),
            )
        }
        for sink in self.sinks:
            stats = sink.stats
            buffered.add_metric([sink.name], stats.buffered)
            not_spooled.add_metric([sink.name], stats.buffered_not_spooled)
            spooling.add_metric([sink.name], int(sink.spooling))
            for field, family in totals.items():
                family.add_metric([sink.name], getattr(stats, field))
        yield buffered
        yield not_spooled
        yield spooling
        yield from totals.values()
        yield from self._monitors()

    def _monitors(self) -> Iterator[Metric]:
        unused: Counter[tuple[str, str]] = Counter()
        entries: Counter[str] = Counter()
        caps: Counter[str] = Counter()
        at_cap: Counter[str] = Counter()
        smallest: dict[str, float] = {}
        sampled: Counter[str] = Counter()
        for gauges in self.monitors.gauges():
            unused.update(gauges.unused)
            for structure, fraction in gauges.sampled.items():
                smallest[structure] = min(fraction, smallest.get(structure, 1.0))
                sampled[structure] += fraction < 1.0
            for structure, (n, cap) in gauges.filled.items():
                entries[structure] += n
                caps[structure] += cap
                at_cap[structure] += n >= cap
        family = GaugeMetricFamily(
            "failsoft_monitor_inputs_unused",
            "Inputs the monitors of this worker's models could not use or let go of.",
            labels=["part", "reason"],
        )
        for (part, reason), value in sorted(unused.items()):
            family.add_metric([part, reason], value)
        yield family
        capped = "Models whose structure has reached its cap: the oldest entries are forgotten."
        smallest_kept = "The smallest fraction of entities a model's sampled structure keeps."
        # (name, documentation, value by structure, the structures shown).
        by_structure: tuple[tuple[str, str, Mapping[str, float], Iterable[str]], ...] = (
            ("state_entries", "Entries of the structures that grow until a cap.", entries, caps),
            ("state_cap", "Caps of the structures that grow until a cap.", caps, caps),
            ("models_at_cap", capped, at_cap, caps),
            ("sample_fraction_min", smallest_kept, smallest, smallest),
            (
                "models_sampled",
                "Models whose structure keeps a sample of entities.",
                sampled,
                smallest,
            ),
        )
        for name, documentation, values, structures in by_structure:
            family = GaugeMetricFamily(
                f"failsoft_monitor_{name}", documentation, labels=["structure"]
            )
            for structure in sorted(structures):
                family.add_metric([structure], values[structure])
            yield family

    def _ingest(self) -> Iterator[Metric]:
        ingest = self.ingest
        received = CounterMetricFamily(
            "failsoft_messages_received",
            "Kafka messages (single-record or batch) the ingest reader read.",
            labels=["topic"],
        )
        for topic, value in sorted(ingest.messages.items()):
            received.add_metric([topic], value)
        yield received
        yield GaugeMetricFamily(
            "failsoft_partitions_assigned",
            "Partitions of each input topic the reader holds; 0 until the first rebalance.",
            value=len(ingest.partitions),
        )
        messages = GaugeMetricFamily(
            "failsoft_lag_messages", "Messages after the reader's position.", labels=["topic"]
        )
        records = GaugeMetricFamily(
            "failsoft_lag_records",
            "Records in the messages after the reader's position, at the records per message "
            "read so far.",
            labels=["topic"],
        )
        seconds = GaugeMetricFamily(
            "failsoft_lag_seconds",
            "Age of the last record read while records remain; 0 when caught up.",
            labels=["topic"],
        )
        for topic, lag in sorted(ingest.lag().items()):
            messages.add_metric([topic], lag.messages)
            records.add_metric([topic], lag.records)
            seconds.add_metric([topic], lag.seconds)
        yield messages
        yield records
        yield seconds
        for name, documentation, histogram in (
            (
                "failsoft_micro_batch_records",
                "Records per micro-batch fed to a model's monitor.",
                ingest.batch_sizes,
            ),
            (
                "failsoft_effect_latency_seconds",
                "Seconds from a record's read to its model's effects handed over (an upper"
                " bound: a micro-batch's records count at its first record's wait).",
                ingest.effect_latency,
            ),
        ):
            yield HistogramMetricFamily(
                name, documentation, buckets=histogram.cumulative(), sum_value=histogram.sum
            )


def render(*collectors: Collector) -> bytes:
    """The Prometheus text exposition of the collectors."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry)
