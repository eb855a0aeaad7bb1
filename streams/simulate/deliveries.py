"""Noticing that deliveries stopped, and saying what librdkafka saw when they did.

A CI chaos run (seed 10, batch messages, a loaded machine) ended with the simulator's
producer holding 197,826 messages after the first broker restart and no delivery report
failed: librdkafka retries and waits on its own, and its default ``message.timeout.ms``
(5 minutes) outlasts the run. The run's log could not say where the messages waited.

``DeliveryWatch`` keeps librdkafka's latest statistics (its ``stats_cb``) and, when no
delivery report has come for ``stall_s`` while messages are outstanding, prints one line
with the brokers' states and the partitions holding messages (their leader, queue, and
the broker handle serving them), then one more when deliveries resume. Statistics are
only read, never acted on: a stall that lasts is the operator's to read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

__all__ = ["STALL_S", "STATS_INTERVAL_MS", "DeliveryWatch", "describe_stats"]

# librdkafka reconnects within reconnect.backoff.max.ms (10 s by default), and a broker
# restarted after a SIGKILL took up to 52 s to serve again on the loaded development
# machine: only a longer silence is worth a line.
STALL_S = 60.0
STATS_INTERVAL_MS = 10_000
# At most this many partitions are named in a stall line, fullest first.
_PARTITIONS_SHOWN = 8


def describe_stats(text: str | None) -> str:
    """One line out of a librdkafka statistics JSON: each broker handle (state, seconds in
    it, requests waiting to go and waiting for a response, partitions it serves) and the
    partitions holding messages (leader, queued and in-transmit counts, serving handle),
    counting those that no handle of their leader serves while that leader's is up:
    librdkafka does not send those while it stays so."""
    if not text:
        return "no librdkafka statistics yet"
    try:
        stats = json.loads(text)
    except ValueError:
        return "unreadable librdkafka statistics"
    serving: dict[tuple[str, str], str] = {}
    node_of: dict[str, int] = {}
    up: set[int] = set()
    brokers = []
    for name, broker in sorted(stats.get("brokers", {}).items()):
        toppars = broker.get("toppars", {})
        for toppar in toppars.values():
            serving[(toppar.get("topic", ""), str(toppar.get("partition")))] = name
        node_of[name] = broker.get("nodeid", -1)
        if broker.get("state") == "UP" and node_of[name] >= 0:
            up.add(node_of[name])
        brokers.append(
            f"{name} {broker.get('state')} {broker.get('stateage', 0) / 1e6:.0f}s"
            f" out {broker.get('outbuf_cnt', 0)} wait {broker.get('waitresp_cnt', 0)}"
            f" partitions {len(toppars)}"
        )
    holding = []
    stranded = 0
    for topic, detail in sorted(stats.get("topics", {}).items()):
        for partition, p in detail.get("partitions", {}).items():
            queued, sending = p.get("msgq_cnt", 0), p.get("xmit_msgq_cnt", 0)
            if queued + sending == 0:
                continue
            handle = serving.get((topic, partition))
            leader = p.get("leader", -1)
            # Its leader is up, yet the handle of another node, or none, holds it.
            lost = leader in up and node_of.get(handle or "", -1) != leader
            stranded += lost
            holding.append(
                (
                    queued + sending,
                    f"{topic}[{partition}] leader {leader} queued {queued}"
                    f" sending {sending} on {handle or 'no handle'}"
                    + (" (not its leader's)" if lost else ""),
                )
            )
    holding.sort(key=lambda item: -item[0])
    shown = "; ".join(line for _, line in holding[:_PARTITIONS_SHOWN])
    more = len(holding) - _PARTITIONS_SHOWN
    return (
        f"librdkafka holds {stats.get('msg_cnt', 0)} messages; brokers: "
        + (", ".join(brokers) or "none")
        + (f"; partitions: {shown}" if shown else "")
        + (f" (and {more} more)" if more > 0 else "")
        + (
            f"; {stranded} partitions holding messages are not on their leader's handle "
            "although it is up"
            if stranded
            else ""
        )
    )


class DeliveryWatch:
    """Watches the delivery reports of one producer.

    ``on_stats`` is the producer's ``stats_cb``; ``check(outstanding, reported)`` is called
    now and then with the messages handed over and not yet reported, and the count of
    reports so far.
    """

    def __init__(
        self,
        report: Callable[[str], None],
        *,
        stall_s: float = STALL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stall_s = stall_s
        self.stalls = 0
        self._report = report
        self._clock = clock
        self._latest: str | None = None
        self._reported = -1
        self._since = clock()
        self._stalled_at: float | None = None

    def on_stats(self, text: str) -> None:
        self._latest = text

    def config(self) -> dict[str, Any]:
        """The producer properties that feed ``on_stats``."""
        return {"statistics.interval.ms": STATS_INTERVAL_MS, "stats_cb": self.on_stats}

    def check(self, outstanding: int, reported: int) -> None:
        now = self._clock()
        if reported != self._reported or outstanding == 0:
            if self._stalled_at is not None:
                self._report(
                    f"deliveries resumed after {now - self._since:.0f} s without a report; "
                    + describe_stats(self._latest)
                )
                self._stalled_at = None
            self._reported = reported
            self._since = now
            return
        if self._stalled_at is None and now - self._since >= self.stall_s:
            self._stalled_at = now
            self.stalls += 1
            self._report(
                f"no delivery report for {now - self._since:.0f} s with {outstanding} messages "
                "outstanding; " + describe_stats(self._latest)
            )
