"""``PredictionLogger``: publish predictions without ever blocking or raising into serving.

``log`` encodes the prediction and hands it to librdkafka's bounded queue. When the queue
is full (the broker is slow or away) the prediction is dropped and counted; a queued
message the broker cannot take within the delivery timeout is failed and counted, which
frees its slot. Every offered prediction is exactly one of delivered, failed, dropped or
still in flight, so the counters reconcile.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from schemas.codec import encode
from schemas.contracts import Prediction
from streams.fleet.kafka_config import prediction_producer_config
from streams.settings import Settings
from streams.topics import PREDICTIONS

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LoggerStats:
    """Predictions by fate since start; ``offered`` is their sum."""

    delivered: int
    failed: int
    dropped: int
    in_flight: int
    last_loss: str | None
    """Why the last prediction was dropped or failed."""
    last_kafka_error: str | None

    @property
    def offered(self) -> int:
        return self.delivered + self.failed + self.dropped + self.in_flight


class PredictionLogger:
    """Publishes ``Prediction`` records to the predictions topic, keyed by model_id.

    Parameters
    ----------
    settings
        Kafka address and topic prefix.
    max_buffered
        Predictions held while the broker is slow or away; beyond that, ``log`` drops.
    delivery_timeout_s
        How long a queued prediction may wait for the broker before it is failed.
    producer_config
        Overrides of the librdkafka producer settings.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        max_buffered: int = 100_000,
        delivery_timeout_s: float = 30.0,
        producer_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.topic = PREDICTIONS.name(settings)
        self._producer = Producer(
            {
                **prediction_producer_config(settings, max_buffered, delivery_timeout_s),
                "on_delivery": self._on_delivery,
                "error_cb": self._on_kafka_error,
                **(producer_config or {}),
            }
        )
        self._accepted = 0
        self._delivered = 0
        self._failed = 0
        self._dropped = 0
        self._counts_lock = threading.Lock()
        self._last_loss: str | None = None
        self._last_kafka_error: str | None = None
        self._closing = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="failsoft-predictions", daemon=True)
        self._poller.start()

    def log(self, prediction: Prediction) -> bool:
        """Queue ``prediction``; ``False`` if it was dropped. Never blocks, never raises."""
        # Counted before produce(), whose delivery report may come back at once. Uncontended,
        # the lock costs well under a microsecond; it keeps counts exact across threads.
        with self._counts_lock:
            self._accepted += 1
        try:
            self._producer.produce(
                self.topic, encode(prediction), prediction.model_id.encode("utf-8")
            )
        except BufferError:
            self._count_drop("the buffer is full")
            return False
        except Exception as error:
            # Serving must go on whatever went wrong here (a closed producer, a bad record).
            self._count_drop(f"{type(error).__name__}: {error}")
            return False
        return True

    def stats(self) -> LoggerStats:
        # Read together: a drop moves one count from accepted to dropped under the lock.
        with self._counts_lock:
            delivered, failed = self._delivered, self._failed
            accepted, dropped = self._accepted, self._dropped
        return LoggerStats(
            delivered=delivered,
            failed=failed,
            dropped=dropped,
            in_flight=accepted - delivered - failed,
            last_loss=self._last_loss,
            last_kafka_error=self._last_kafka_error,
        )

    def flush(self, timeout: float = 10.0) -> int:
        """Wait up to ``timeout`` seconds for queued predictions; return how many remain."""
        return int(self._producer.flush(timeout))

    def close(self, timeout: float = 10.0) -> int:
        """Flush, then stop the delivery thread; return how many predictions remain."""
        remaining = self.flush(timeout)
        self._closing.set()
        self._poller.join(timeout)
        return remaining

    def __enter__(self) -> PredictionLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _count_drop(self, why: str) -> None:
        with self._counts_lock:
            self._accepted -= 1
            self._dropped += 1
        self._last_loss = why

    def _poll(self) -> None:
        # Delivery reports are served here, so the serving path never calls poll().
        while not self._closing.is_set():
            self._producer.poll(0.1)

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        # The delivery thread and a caller of flush() may both serve these reports.
        with self._counts_lock:
            if error is None:
                self._delivered += 1
            else:
                self._failed += 1
        if error is not None:
            self._last_loss = str(error)

    def _on_kafka_error(self, error: KafkaError) -> None:
        self._last_kafka_error = str(error)
