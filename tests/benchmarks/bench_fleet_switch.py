"""Switch latency: from "control command produced" to "the listener's map flipped".

Against the local Kafka (``FAILSOFT_KAFKA_BOOTSTRAP``, default the stack's 127.0.0.1:19092),
in one run, alternating one measurement of each (which one goes first alternates too):

- ``listener``: a signed command alternating fallback/restore for one model is produced to
  a fresh compacted control topic; the clock stops in the ``ControlListener``'s on-change
  callback, which runs right after the map entry is replaced (so it includes consuming,
  decoding, the Ed25519 verification, the replay check and the map write); the listener
  holds only the public key, as a node does;
- ``bare``: the same bytes produced to a fresh topic and consumed by a bare confluent-kafka
  consumer (assigned, polling on its own thread) with the same librdkafka settings as the
  listener; the clock stops when ``poll`` returns the message.

Both producers are the control producer (``linger.ms=0``, ``acks=all``); the clock starts
right before ``produce``. Each measurement waits for the previous one to arrive and be
acknowledged (untimed), so none queues behind another. Reports
p50, p99 and max in ms, and listener/bare ratios. Run::

    .venv/bin/python -m tests.benchmarks.bench_fleet_switch            # 2,000 of each
    .venv/bin/python -m pytest tests/benchmarks/bench_fleet_switch.py -s
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

from schemas.codec import encode
from schemas.contracts import Action
from streams.fleet import ControlListener, ModeChange
from streams.fleet.kafka_config import command_producer_config, listener_consumer_config
from streams.settings import Settings
from streams.topics import CONTROL, TopicSpec
from tests.fleet.helpers import (
    catalogue_topics,
    command,
    fleet_settings,
    node_settings,
    percentiles,
)

WAIT_S = 10.0


class BareConsumer:
    """A plain confluent-kafka consumer on its own thread, stamping each arrival."""

    def __init__(self, settings: Settings, topic: str, overrides: dict[str, Any]) -> None:
        self.arrived = threading.Event()
        self.arrived_ns = 0
        self._consumer = Consumer({**listener_consumer_config(settings), **overrides})
        self._consumer.assign([TopicPartition(topic, 0, OFFSET_END)])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._consumer.poll(0.1)
            if message is not None and message.error() is None:
                self.arrived_ns = time.perf_counter_ns()
                self.arrived.set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()


def _spin(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(1_000))


def run(
    settings: Settings, count: int, fetch_wait_ms: int | None = None, busy_threads: int = 0
) -> dict[str, Any]:
    overrides = {} if fetch_wait_ms is None else {"fetch.wait.max.ms": fetch_wait_ms}
    # Busy threads stand for serving threads that keep the GIL: the listener (and the bare
    # consumer) then wait for it, up to sys.getswitchinterval() per hand-over.
    stop_spinning = threading.Event()
    for _ in range(busy_threads):
        threading.Thread(target=_spin, args=(stop_spinning,), daemon=True).start()
    bare_spec = TopicSpec("bench-bare", "model_id", "control_command", 1, {}, "baseline")
    producer = Producer(command_producer_config(settings))
    flipped = threading.Event()
    flipped_ns = 0

    def on_change(change: ModeChange) -> None:
        nonlocal flipped_ns
        flipped_ns = time.perf_counter_ns()
        flipped.set()

    listener_ms: list[float] = []
    bare_ms: list[float] = []
    with catalogue_topics(settings, (CONTROL, bare_spec)):
        listener = ControlListener(node_settings(settings), consumer_config=overrides)
        listener.on_change(on_change)
        listener.start()
        assert listener.wait_bootstrapped(30)
        bare = BareConsumer(settings, bare_spec.name(settings), overrides)
        # Let the bare consumer's assignment settle, and warm both paths up.
        time.sleep(2)
        seq = time.time_ns() // 1_000_000

        def switch(raw: bytes) -> float:
            flipped.clear()
            started = time.perf_counter_ns()
            producer.produce(CONTROL.name(settings), raw, b"bench-model")
            producer.poll(0)
            assert flipped.wait(WAIT_S), "a command did not flip the map"
            # The producer keeps one request in flight: wait for the ack, untimed, so the
            # next measurement does not queue behind this one.
            producer.flush(WAIT_S)
            return (flipped_ns - started) / 1e6

        def round_trip(raw: bytes) -> float:
            bare.arrived.clear()
            started = time.perf_counter_ns()
            producer.produce(bare_spec.name(settings), raw, b"bench-model")
            producer.poll(0)
            assert bare.arrived.wait(WAIT_S), "a message did not arrive"
            producer.flush(WAIT_S)
            return (bare.arrived_ns - started) / 1e6

        try:
            for i in range(count + 50):
                action: Action = "fallback" if i % 2 == 0 else "restore"
                raw = encode(command(settings, "bench-model", action, seq + i))
                # Alternate which goes first, so neither always follows the other.
                if i % 2 == 0:
                    listener_elapsed, bare_elapsed = switch(raw), round_trip(raw)
                else:
                    bare_elapsed, listener_elapsed = round_trip(raw), switch(raw)
                if i >= 50:
                    listener_ms.append(listener_elapsed)
                    bare_ms.append(bare_elapsed)
        finally:
            stop_spinning.set()
            bare.close()
            listener.stop()
            producer.flush(10)
        stats = listener.stats()
    assert stats.applied == count + 50 and sum(stats.rejected.values()) == 0
    result = {"listener": percentiles(listener_ms), "bare": percentiles(bare_ms)}
    result["ratio"] = {
        key: result["listener"][key] / result["bare"][key] for key in ("p50", "p99", "max")
    }
    return result


def report(result: dict[str, Any]) -> str:
    lines = [f"{'':10} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"]
    for name in ("listener", "bare"):
        row = result[name]
        lines.append(
            f"{name:10} {row['n']:6d} {row['p50']:8.3f} {row['p99']:8.3f} {row['max']:8.3f}"
        )
    ratio = result["ratio"]
    lines.append(f"{'ratio':10} {'':6} {ratio['p50']:8.2f} {ratio['p99']:8.2f} {ratio['max']:8.2f}")
    return "\n".join(lines)


def bench_settings() -> Settings:
    base = Settings.from_env()
    return fleet_settings(base, base.kafka_bootstrap, f"bench-switch-{uuid.uuid4().hex[:8]}")


def test_bench_fleet_switch() -> None:
    result = run(bench_settings(), count=1_000)
    print("\n" + report(result))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2_000)
    parser.add_argument(
        "--fetch-wait-ms", type=int, default=None, help="override fetch.wait.max.ms for both"
    )
    parser.add_argument(
        "--busy-threads", type=int, default=0, help="Python threads spinning meanwhile"
    )
    args = parser.parse_args(argv)
    print(report(run(bench_settings(), args.count, args.fetch_wait_ms, args.busy_threads)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
