"""Publishing without a broker: topic mapping, keys, timestamps, a full queue, and pacing.

The real broker is exercised by ``test_simulate_kafka.py``; here a recording stand-in
checks the simulator's own logic around the producer.
"""

from __future__ import annotations

from typing import Any

from schemas.codec import decode_prediction, encode
from schemas.contracts import Prediction
from streams.simulate.publish import Pacer, publish
from streams.simulate.run import SimulationRun
from streams.simulate.scenario import SCENARIOS, load_scenario
from streams.simulate.traffic import FEATURE_WRITES, GROUND_TRUTH, PREDICTIONS

NAMES = {PREDICTIONS: "t.predictions", FEATURE_WRITES: "t.features", GROUND_TRUTH: "t.truth"}


class _Message:
    def __init__(self, topic: str) -> None:
        self._topic = topic

    def topic(self) -> str:
        return self._topic


class RecordingProducer:
    """Accepts messages, refuses every third produce once (a full queue), acks on poll."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, bytes, int]] = []
        self.polls: list[float] = []
        self._callbacks: list[tuple[Any, str]] = []
        self._calls = 0

    def produce(
        self, topic: str, *, value: bytes, key: bytes, timestamp: int, on_delivery: Any
    ) -> None:
        self._calls += 1
        if self._calls % 3 == 0:
            raise BufferError("Local: Queue full")
        self.messages.append((topic, value, key, timestamp))
        self._callbacks.append((on_delivery, topic))

    def poll(self, timeout: float) -> int:
        self.polls.append(timeout)
        served, self._callbacks = self._callbacks, []
        for callback, topic in served:
            callback(None, _Message(topic))
        return len(served)

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return 0


def _run() -> SimulationRun:
    return SimulationRun.prepare(
        load_scenario(SCENARIOS / "short.toml"), start_ms=1_800_000_000_000, rate=200.0
    )


def test_every_event_is_produced_once_keyed_and_stamped_and_acknowledged() -> None:
    events = list(_run().events())
    producer = RecordingProducer()
    stats = publish(events, producer, NAMES, Pacer(0, realtime=False))
    assert [(t, v, k, ts) for t, v, k, ts in producer.messages] == [
        (NAMES[e.topic], encode(e.record), e.key.encode(), e.at) for e in events
    ]
    assert sum(stats.produced.values()) == len(events)
    assert stats.delivered == stats.produced
    assert not stats.failed and stats.undelivered == 0
    first = next(v for t, v, _, _ in producer.messages if t == "t.predictions")
    assert isinstance(decode_prediction(first), Prediction)


def test_real_time_pacing_waits_for_each_event_on_the_compressed_clock() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(start_ms=5_000, realtime=True, clock=lambda: now[0])
    pacer.wait(4_000, sleep)  # before the start: at once
    pacer.wait(5_500, sleep)
    assert slept == [0.5]
    now[0] += 2.0  # the producer fell behind: no waiting to catch up
    pacer.wait(6_000, sleep)
    assert slept == [0.5]
    unpaced = Pacer(start_ms=5_000, realtime=False, clock=lambda: now[0])
    unpaced.wait(60_000, sleep)
    assert slept == [0.5]
