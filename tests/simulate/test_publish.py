"""Publishing without a broker: topic mapping, keys, timestamps, a full queue, and pacing.

The real broker is exercised by ``test_simulate_kafka.py``; here a recording stand-in
checks the simulator's own logic around the producer.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import msgspec
import pytest

from schemas.codec import BATCHES, decode_batch, decode_prediction, encode
from schemas.contracts import Prediction
from streams.simulate.publish import Pacer, publish
from streams.simulate.run import SimulationRun
from streams.simulate.scenario import SCENARIOS, load_scenario
from streams.simulate.traffic import FEATURE_WRITES, GROUND_TRUTH, PREDICTIONS, SimEvent

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


def _owner(event: SimEvent) -> str:
    return str(getattr(event.record, BATCHES[type(event.record)].owner))


@pytest.mark.parametrize("batch_size", [2, 50])
def test_batches_carry_every_event_once_by_topic_and_owner_in_order(batch_size: int) -> None:
    events = list(_run().events())
    producer = RecordingProducer()
    stats = publish(events, producer, NAMES, Pacer(0, realtime=False), batch_size=batch_size)
    expected: dict[tuple[str, str], list[SimEvent]] = defaultdict(list)
    for event in events:
        expected[NAMES[event.topic], _owner(event)].append(event)
    taken: Counter[tuple[str, str]] = Counter()
    for topic, value, key, timestamp in producer.messages:
        owner = (topic, key.decode())
        start = taken[owner]
        due = expected[owner][start : start + batch_size]
        records = decode_batch(type(due[0].record), value)
        assert 1 <= len(records) <= batch_size
        # The owner's next events, in order; stamped with the time of the latest.
        assert records == [event.record for event in due[: len(records)]]
        assert timestamp == max(event.at for event in due[: len(records)])
        taken[owner] += len(records)
    assert taken == Counter({owner: len(sent) for owner, sent in expected.items()})
    assert sum(stats.produced.values()) == len(events) == sum(stats.delivered.values())
    assert sum(stats.messages.values()) == len(producer.messages) < len(events)


def test_batches_wait_for_no_event_that_is_not_due() -> None:
    # Three predictions of one model, the last one a second later: pacing in real time,
    # the first two go (as one batch) before the simulator waits for the third.
    first, second, third = [
        msgspec.structs.replace(event, record=msgspec.structs.replace(event.record, model_id="m"))
        for event in _run().events()
        if isinstance(event.record, Prediction)
    ][:3]
    replace = msgspec.structs.replace
    events = [first, replace(second, at=first.at), replace(third, at=first.at + 1000)]
    now = [0.0]
    producer = RecordingProducer()

    def poll(timeout: float) -> int:
        producer.polls.append(timeout)
        now[0] += timeout
        return 0

    producer.poll = poll  # type: ignore[method-assign]
    publish(
        events, producer, NAMES, Pacer(first.at, realtime=True, clock=lambda: now[0]), batch_size=10
    )
    assert [len(decode_batch(Prediction, value)) for _, value, _, _ in producer.messages] == [2, 1]
    assert sum(producer.polls) >= 0.999


def _behind_clock(events: list[SimEvent], seconds: float) -> Pacer:
    """A pacer in real time whose wall clock is ``seconds`` past the first event's time."""
    now = [0.0]
    pacer = Pacer(events[0].at, realtime=True, clock=lambda: now[0])
    now[0] = seconds
    return pacer


def test_batches_behind_the_clock_linger_at_most_linger_ms_of_event_time() -> None:
    # Two models' predictions, interleaved 10 ms apart: each model's 20 ms apart. A
    # simulator 10 s behind never waits, so without the linger each model's batch would
    # fill; with it, a batch goes once a record comes 50 ms after its first, so it holds
    # 3 (the last two are what is left at the end).
    predictions = [event for event in _run().events() if isinstance(event.record, Prediction)][:40]
    start = predictions[0].at
    events = [
        msgspec.structs.replace(
            event,
            at=start + 10 * n,
            record=msgspec.structs.replace(event.record, model_id=f"m{n % 2}"),
        )
        for n, event in enumerate(predictions)
    ]
    producer = RecordingProducer()
    stats = publish(
        events, producer, NAMES, _behind_clock(events, 10.0), batch_size=50, linger_ms=50
    )
    spans = []
    for _, value, key, _ in producer.messages:
        records = decode_batch(Prediction, value)
        assert {record.model_id for record in records} == {key.decode()}
        spans.append(len(records))
    assert spans == [3] * 12 + [2, 2]
    # The first record went 10 s after its time, the latest ones less.
    assert stats.behind_s == pytest.approx(10.0)
    unpaced = RecordingProducer()
    publish(events, unpaced, NAMES, Pacer(0, realtime=False), batch_size=50, linger_ms=50)
    assert [len(decode_batch(Prediction, value)) for _, value, _, _ in unpaced.messages] == [20, 20]


def test_records_from_before_the_clock_started_go_at_once_and_are_not_late() -> None:
    first, second = list(_run().events())[:2]
    start = first.at + 5_000
    events = [first, msgspec.structs.replace(second, at=start + 1_500)]
    now = [0.0]
    pacer = Pacer(start, realtime=True, clock=lambda: now[0])
    now[0] = 2.0  # the first was due 7 s ago, before the clock started; the second 0.5 s ago
    stats = publish(events, RecordingProducer(), NAMES, pacer)
    moment = start + 1_500
    assert stats.behind == {moment - moment % 1_000: pytest.approx(0.5)}


def test_a_batch_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="batch_size: expected 1 or more"):
        publish([], RecordingProducer(), NAMES, Pacer(0, realtime=False), batch_size=0)
