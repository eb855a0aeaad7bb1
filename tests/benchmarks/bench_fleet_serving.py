"""Serving-path overhead per prediction: a mode check plus ``PredictionLogger.log``.

On a private broker (own ports and state folder, started and stopped here through the
stack's Python API, so the shared broker is never touched), with a running
``ControlListener`` that has applied a command for the model:

- ``before, a message per prediction``: ``--calls`` timed calls of the mode check and the
  serving path as it was before batches (``PerMessageLogger``: encode and produce one
  message per prediction on the serving thread), for comparison in the same run;
- ``broker up``: ``--calls`` timed calls of ``listener.mode(model); logger.log(prediction)``
  with the ``PredictionLogger`` (a batch per model and flush, sent by its own thread);
- ``broker stopped``, after the broker process is stopped: ``--calls`` calls while the
  logger's buffer (``max_buffered`` = ``--calls``) fills, then ``--calls`` more once it is
  full and every call drops (counted).

Each call is timed alone with ``perf_counter_ns``; ``timer`` is the same loop around an
empty statement (the clock's own cost, included in every figure). The prediction record is
built once, outside the timed region. Reports p50, p99 and max in microseconds. Run::

    .venv/bin/python -m tests.benchmarks.bench_fleet_serving          # 100,000 calls each
    .venv/bin/python -m pytest tests/benchmarks/bench_fleet_serving.py -s
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from schemas.codec import encode
from schemas.contracts import Prediction
from streams.control import publish_command
from streams.fleet import ControlListener, PredictionLogger
from streams.fleet.kafka_config import prediction_producer_config
from streams.settings import Settings
from streams.stack import SERVERS, private_settings
from streams.topics import CONTROL, PREDICTIONS
from tests.fleet.helpers import (
    catalogue_topics,
    command,
    fleet_settings,
    percentiles,
    wait_for,
)
from tests.fleet.test_prediction_logger import example_prediction

MODEL = "home-recs"


class PerMessageLogger:
    """The serving path before batches: a counted prediction, encoded and produced on the
    serving thread as one message (librdkafka lingering 5 ms), reports served elsewhere."""

    def __init__(self, settings: Settings, max_buffered: int) -> None:
        config = prediction_producer_config(settings, max_buffered, delivery_timeout_s=600)
        self.producer = Producer({**config, "linger.ms": 5})
        self.topic = PREDICTIONS.name(settings)
        self.accepted = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._poller = threading.Thread(target=self._poll, daemon=True)
        self._poller.start()

    def log(self, prediction: Prediction) -> bool:
        with self._lock:
            self.accepted += 1
        try:
            self.producer.produce(self.topic, encode(prediction), prediction.model_id.encode())
        except BufferError:
            return False
        return True

    def close(self) -> int:
        remaining = int(self.producer.flush(60))
        self._closing.set()
        self._poller.join()
        return remaining

    def _poll(self) -> None:
        while not self._closing.is_set():
            self.producer.poll(0.1)


def _timed(calls: int, body: Callable[[], object]) -> list[float]:
    clock = time.perf_counter_ns
    samples = [0.0] * calls
    for i in range(calls):
        started = clock()
        body()
        samples[i] = (clock() - started) / 1e3
    return samples


def measure(settings: Settings, broker: Settings, calls: int) -> dict[str, Any]:
    prediction: Prediction = example_prediction()
    kafka = SERVERS["kafka"]
    results: dict[str, Any] = {}
    with (
        catalogue_topics(settings, (CONTROL, PREDICTIONS)),
        ControlListener(settings) as listener,
        PredictionLogger(settings, max_buffered=calls, delivery_timeout_s=600) as logger,
    ):
        assert listener.wait_bootstrapped(30)
        publish_command(settings, command(settings, MODEL, "fallback", time.time_ns() // 10**6))
        assert wait_for(lambda: listener.mode(MODEL) == "fallback")

        def serve() -> None:
            listener.mode(MODEL)
            logger.log(prediction)

        before = PerMessageLogger(settings, calls)

        def serve_before() -> None:
            listener.mode(MODEL)
            before.log(prediction)

        results["timer"] = percentiles(_timed(calls, lambda: None))
        results["before, a message per prediction"] = percentiles(_timed(calls, serve_before))
        assert before.close() == 0
        results["broker up"] = percentiles(_timed(calls, serve))
        assert logger.flush(60) == 0
        up = logger.stats()
        assert up.delivered == calls and up.dropped == 0

        kafka.stop(broker)
        time.sleep(2)
        results["broker stopped, buffering"] = percentiles(_timed(calls, serve))
        results["broker stopped, dropping"] = percentiles(_timed(calls, serve))
        down = logger.stats()
        assert listener.mode(MODEL) == "fallback"
        assert down.dropped == calls, down
        assert down.offered == 3 * calls, down
        results["drops counted"] = down.dropped
        kafka.start(broker)
    return results


def run(calls: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="failsoft-bench-") as state:
        broker = private_settings(Settings.from_env(), Path(state))
        kafka = SERVERS["kafka"]
        kafka.start(broker)
        try:
            settings = fleet_settings(
                broker, broker.kafka_bootstrap, f"bench-serving-{uuid.uuid4().hex[:8]}"
            )
            return measure(settings, broker, calls)
        finally:
            kafka.stop(broker)


def report(results: dict[str, Any]) -> str:
    lines = [f"{'':34} {'n':>7} {'p50 us':>8} {'p99 us':>8} {'max us':>9}"]
    for name, row in results.items():
        if isinstance(row, dict):
            lines.append(
                f"{name:34} {row['n']:7d} {row['p50']:8.2f} {row['p99']:8.2f} {row['max']:9.1f}"
            )
    lines.append(f"drops counted while stopped: {results['drops counted']}")
    return "\n".join(lines)


def test_bench_fleet_serving() -> None:
    print("\n" + report(run(calls=20_000)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=100_000)
    args = parser.parse_args(argv)
    print(report(run(args.calls)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
