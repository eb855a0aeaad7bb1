"""Prometheus metrics of a worker, read from its counters when scraped.

Agents only bump plain integers (``streams.worker.ingest.PipelineCounters``) and sinks keep their
own stats; this collector turns them into metric families at scrape time, so exporting
costs nothing per event.

Metrics (all with the ``failsoft_`` prefix):

- ``messages_consumed_total{topic}``, ``messages_processed_total{topic}``,
  ``messages_dead_lettered_total{topic,reason}``: the ingest books; consumed equals
  processed plus dead-lettered for every topic.
- ``commands_sent_total{action}``, ``commands_withheld_total{action}``: control commands
  signed and sent, or withheld (alert-only model, or no signing key).
- ``messages_received_total{topic}``: messages Faust's consumer received per topic, and
  ``agent_events_per_second``: the worker's recent event rate.
- ``sink_buffered{sink}``, ``sink_delivered_total{sink}``, ``sink_dropped_total{sink}``,
  ``sink_rejected_total{sink}``, ``sink_failed_attempts_total{sink}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streams.sinks.buffer import BufferedSink
from streams.worker.ingest import PipelineCounters

__all__ = ["WorkerCollector", "render"]

# aiohttp adds the charset itself and refuses one in the content type.
CONTENT_TYPE = "text/plain; version=0.0.4"


class WorkerCollector(Collector):
    """Collects one worker's ingest books, Faust throughput and sink stats."""

    def __init__(
        self,
        counters: PipelineCounters,
        sinks: Sequence[BufferedSink[Any]],
        received_by_topic: Callable[[], dict[str, int]],
        events_per_second: Callable[[], float],
    ) -> None:
        self.counters = counters
        self.sinks = sinks
        self.received_by_topic = received_by_topic
        self.events_per_second = events_per_second

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

        for outcome, counts in (
            ("sent", self.counters.commands_sent),
            ("withheld", self.counters.commands_withheld),
        ):
            family = CounterMetricFamily(
                f"failsoft_commands_{outcome}",
                f"Control commands {outcome} (withheld: alert-only model or no signing key).",
                labels=["action"],
            )
            for action in ("fallback", "restore"):
                family.add_metric([action], counts[action])
            yield family

        received = CounterMetricFamily(
            "failsoft_messages_received", "Messages Faust's consumer received.", labels=["topic"]
        )
        for topic, value in sorted(self.received_by_topic().items()):
            received.add_metric([topic], value)
        yield received
        yield GaugeMetricFamily(
            "failsoft_agent_events_per_second",
            "The worker's recent event rate, from Faust's monitor.",
            value=self.events_per_second(),
        )

        buffered = GaugeMetricFamily(
            "failsoft_sink_buffered", "Items queued or in flight.", labels=["sink"]
        )
        totals = {
            field: CounterMetricFamily(f"failsoft_sink_{field}", doc, labels=["sink"])
            for field, doc in (
                ("delivered", "Items the server accepted."),
                ("dropped", "Items dropped because the buffer was full."),
                ("rejected", "Items the server refused for good."),
                ("failed_attempts", "Deliveries that failed and were retried."),
            )
        }
        for sink in self.sinks:
            stats = sink.stats
            buffered.add_metric([sink.name], stats.buffered)
            for field, family in totals.items():
                family.add_metric([sink.name], getattr(stats, field))
        yield buffered
        yield from totals.values()


def render(collector: WorkerCollector) -> bytes:
    """The Prometheus text exposition of one collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
