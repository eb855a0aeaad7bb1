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
acknowledged (untimed), so none queues behind another. Reports p50, p99 and max in ms,
and listener/bare ratios; then where the listener's tail comes from:

- ``kafka`` and ``node``: each switch split where the listener's ``poll`` returned the
  message (the node's part is decoding, verification, the gate, the map and the callback,
  plus any wait for the GIL);
- ``decode``, ``verify``, ``admit``: those steps alone, on the run's own messages, on the
  main thread after the run (no Kafka, no other thread), and ``hmac``, the check that
  Ed25519 replaced;
- ``gc``: the collector's pauses during the timed part (count, total, max), and the
  listener p99 of the switches that no collection overlapped.

Run::

    .venv/bin/python -m tests.benchmarks.bench_fleet_switch     # 3 rounds of 2,000 of each
    .venv/bin/python -m pytest tests/benchmarks/bench_fleet_switch.py -s
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

from schemas.codec import decode_control_command, encode
from schemas.contracts import Action, ControlCommand
from schemas.signing import CommandGate, Keyring, hmac_signature
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


class StampedListener(ControlListener):
    """The listener, noting when ``poll`` handed it each message."""

    received_ns = 0

    def _receive(self, message: Any) -> None:
        self.received_ns = time.perf_counter_ns()
        super()._receive(message)


class GcPauses:
    """The collector's pauses, as (start, stop) ``perf_counter_ns`` pairs, while recording."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, int]] = []
        self._started = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter_ns()
        else:
            self.pauses.append((self._started, time.perf_counter_ns()))

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self)

    def overlaps(self, start: int, stop: int) -> bool:
        return any(begin < stop and end > start for begin, end in self.pauses)

    def summary(self) -> dict[str, float]:
        lengths = [(end - begin) / 1e6 for begin, end in self.pauses]
        return {"n": len(lengths), "total": sum(lengths), "max": max(lengths, default=0.0)}


def stage_costs(raws: list[bytes], keyring: Keyring) -> dict[str, dict[str, float]]:
    """Decode, verify and admit (the gate, verification included) each message alone, in
    microseconds, on this thread; and, for comparison, the HMAC that Ed25519 replaced."""
    times: dict[str, list[float]] = {"decode": [], "verify": [], "admit": [], "hmac": []}
    gate = CommandGate(keyring)
    secret = b"the-earlier-scheme's-shared-secret"
    for raw in raws:
        started = time.perf_counter_ns()
        command = decode_control_command(raw)
        decoded = time.perf_counter_ns()
        assert isinstance(command, ControlCommand)
        assert keyring.verify(command)
        verified = time.perf_counter_ns()
        assert gate.admit(command, 0) is None
        admitted = time.perf_counter_ns()
        hmac_signature(secret, command)
        times["hmac"].append((time.perf_counter_ns() - admitted) / 1e3)
        times["decode"].append((decoded - started) / 1e3)
        times["verify"].append((verified - decoded) / 1e3)
        times["admit"].append((admitted - verified) / 1e3)
    return {stage: percentiles(samples) for stage, samples in times.items()}


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
    kafka_ms: list[float] = []
    node_ms: list[float] = []
    spans: list[tuple[int, int]] = []
    raws: list[bytes] = []
    with catalogue_topics(settings, (CONTROL, bare_spec)), GcPauses() as pauses:
        listener = StampedListener(node_settings(settings), consumer_config=overrides)
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
            kafka_ms.append((listener.received_ns - started) / 1e6)
            node_ms.append((flipped_ns - listener.received_ns) / 1e6)
            spans.append((started, flipped_ns))
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
                if i == 50:
                    # Only the timed part counts: warm-up, start-up and set-up are dropped.
                    del kafka_ms[:], node_ms[:], spans[:], pauses.pauses[:]
                # Alternate which goes first, so neither always follows the other.
                if i % 2 == 0:
                    listener_elapsed, bare_elapsed = switch(raw), round_trip(raw)
                else:
                    bare_elapsed, listener_elapsed = round_trip(raw), switch(raw)
                if i >= 50:
                    listener_ms.append(listener_elapsed)
                    bare_ms.append(bare_elapsed)
                    raws.append(raw)
        finally:
            stop_spinning.set()
            bare.close()
            listener.stop()
            producer.flush(10)
        stats = listener.stats()
    assert stats.applied == count + 50 and sum(stats.rejected.values()) == 0
    result: dict[str, Any] = {"listener": percentiles(listener_ms), "bare": percentiles(bare_ms)}
    result["ratio"] = {
        key: result["listener"][key] / result["bare"][key] for key in ("p50", "p99", "max")
    }
    result["kafka"], result["node"] = percentiles(kafka_ms), percentiles(node_ms)
    untouched = [
        ms for ms, span in zip(listener_ms, spans, strict=True) if not pauses.overlaps(*span)
    ]
    result["gc"] = {**pauses.summary(), "p99 without": percentiles(untouched)["p99"]}
    result["stages"] = stage_costs(raws, Keyring.from_settings(node_settings(settings)))
    return result


def report(result: dict[str, Any]) -> str:
    lines = [f"{'':10} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"]

    def row(name: str, values: dict[str, float]) -> None:
        lines.append(
            f"{name:10} {values['n']:6d} {values['p50']:8.3f} {values['p99']:8.3f} "
            f"{values['max']:8.3f}"
        )

    row("listener", result["listener"])
    row("bare", result["bare"])
    ratio = result["ratio"]
    lines.append(f"{'ratio':10} {'':6} {ratio['p50']:8.2f} {ratio['p99']:8.2f} {ratio['max']:8.2f}")
    lines.append("the listener's switches, split where poll returned:")
    row("kafka", result["kafka"])
    row("node", result["node"])
    lines.append("each step alone, on the main thread after the run (us, not ms):")
    for stage, values in result["stages"].items():
        row(stage, values)
    gc_ = result["gc"]
    lines.append(
        f"gc: {gc_['n']} pauses, {gc_['total']:.3f} ms in all, max {gc_['max']:.3f} ms; "
        f"listener p99 without the switches they overlapped: {gc_['p99 without']:.3f} ms"
    )
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
    parser.add_argument(
        "--switch-interval-ms",
        type=float,
        default=None,
        help="sys.setswitchinterval for the run: the longest a busy thread keeps the GIL",
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs, each on fresh topics")
    args = parser.parse_args(argv)
    if args.switch_interval_ms is not None:
        sys.setswitchinterval(args.switch_interval_ms / 1000)
    results = []
    for number in range(1, args.rounds + 1):
        results.append(run(bench_settings(), args.count, args.fetch_wait_ms, args.busy_threads))
        print(f"round {number}\n{report(results[-1])}\n", flush=True)
    print(f"medians of {len(results)} rounds (ms):")
    for name, key in [(n, k) for n in ("listener", "bare", "node") for k in ("p50", "p99")]:
        print(f"  {name} {key}: {statistics.median(r[name][key] for r in results):.3f}")
    for key in ("p50", "p99"):
        print(f"  ratio {key}: {statistics.median(r['ratio'][key] for r in results):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
