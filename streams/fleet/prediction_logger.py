"""``PredictionLogger``: publish predictions in batches, never blocking or raising into serving.

``log`` appends the prediction to its model's pending batch and returns. A flusher thread
sends each model's pending predictions as one batch message (``PredictionBatch``, keyed by
model_id) once ``batch_size`` of them are pending or ``linger_ms`` after the first of
them, whichever comes first, to librdkafka's bounded queue. Encoding and producing happen
on that thread, never on the serving one.

When ``max_buffered`` predictions are held (pending or queued: the broker is slow or
away) ``log`` drops and counts; a batch the broker cannot take within the delivery
timeout is failed and counted, which frees its predictions' places. Counts are of
predictions, not messages: every offered prediction is exactly one of delivered, failed,
dropped or still in flight, so the counters reconcile. Besides, the logger's producer
(``FleetProducer``) counts the messages the broker refused by topic and cause, its own
and those of anything else the node publishes through it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, Message

from schemas.codec import encode, encode_batch
from schemas.contracts import Prediction
from streams.fleet.kafka_config import prediction_producer_config
from streams.fleet.producer import FleetProducer
from streams.settings import Settings
from streams.topics import PREDICTIONS

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LoggerStats:
    """Predictions by fate since start; ``offered`` is their sum. ``batches`` counts the
    batch messages handed to librdkafka; ``refused`` the messages the broker refused, by
    topic and cause (``TOPIC_AUTHORIZATION_FAILED``: the node's principal may not write
    that topic)."""

    delivered: int
    failed: int
    dropped: int
    in_flight: int
    batches: int
    last_loss: str | None
    """Why the last prediction was dropped or failed."""
    last_kafka_error: str | None
    refused: Mapping[str, Mapping[str, int]]

    @property
    def offered(self) -> int:
        return self.delivered + self.failed + self.dropped + self.in_flight


class PredictionLogger:
    """Publishes ``Prediction`` records to the predictions topic, a batch per model and flush.

    Parameters
    ----------
    settings
        Kafka address and topic prefix.
    batch_size
        A model's pending predictions are sent as soon as there are this many.
    linger_ms
        ...or this long after the first of them was logged, whichever comes first.
    max_buffered
        Predictions held while the broker is slow or away; beyond that, ``log`` drops.
    max_batch_bytes
        A batch message larger than this is split; keep it under the broker's
        ``message.max.bytes`` (1 MB by default).
    delivery_timeout_s
        How long a queued batch may wait for the broker before it is failed.
    producer_config
        Overrides of the librdkafka producer settings.

    Attributes
    ----------
    producer
        The logger's ``FleetProducer``: anything else the node publishes through it shares
        its connection and credentials, and what the broker refuses of it is counted in
        ``stats().refused`` too.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        batch_size: int = 500,
        linger_ms: float = 5.0,
        max_buffered: int = 100_000,
        max_batch_bytes: int = 512 * 1024,
        delivery_timeout_s: float = 30.0,
        producer_config: Mapping[str, Any] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: expected 1 or more, got {batch_size}")
        if not linger_ms >= 0:
            raise ValueError(f"linger_ms: expected 0 or more, got {linger_ms}")
        self.topic = PREDICTIONS.name(settings)
        self.batch_size = batch_size
        self.linger_ms = linger_ms
        self.max_buffered = max_buffered
        self.max_batch_bytes = max_batch_bytes
        self.producer = FleetProducer(
            {
                **prediction_producer_config(settings, max_buffered, delivery_timeout_s),
                "error_cb": self._on_kafka_error,
                **(producer_config or {}),
            }
        )
        # Guards the pending batches and the counts; held for a few dict and list operations.
        self._lock = threading.Lock()
        self._pending: dict[str, list[Prediction]] = {}
        self._accepted = 0
        self._delivered = 0
        self._failed = 0
        self._dropped = 0
        self._batches = 0
        self._last_loss: str | None = None
        self._last_kafka_error: str | None = None
        # Set by the first prediction pending after a flush, and by a full batch.
        self._first_pending = threading.Event()
        self._batch_full = threading.Event()
        # One flush at a time, so that a model's batches are produced in order.
        self._flush_lock = threading.Lock()
        self._closing = threading.Event()
        self._flusher = threading.Thread(
            target=self._flush_on_time, name="failsoft-predictions-flush", daemon=True
        )
        self._poller = threading.Thread(target=self._poll, name="failsoft-predictions", daemon=True)
        self._flusher.start()
        self._poller.start()

    def log(self, prediction: Prediction) -> bool:
        """Queue ``prediction``; ``False`` if it was dropped. Never blocks, never raises."""
        try:
            model_id = prediction.model_id
            with self._lock:
                if self._accepted - self._delivered - self._failed >= self.max_buffered:
                    loss = "the buffer is full"
                elif self._closing.is_set():
                    loss = "the logger is closed"
                else:
                    first = not self._pending
                    batch = self._pending.setdefault(model_id, [])
                    batch.append(prediction)
                    self._accepted += 1
                    full = len(batch) == self.batch_size
                    loss = ""
        except Exception as error:
            # Serving must go on whatever went wrong here (a record that is not one).
            loss = f"{type(error).__name__}: {error}"
        if loss:
            self._count_dropped(1, loss, accepted=False)
            return False
        # Event.set() takes a lock of its own: only on the two transitions that need it.
        if first:
            self._first_pending.set()
        if full:
            self._batch_full.set()
        return True

    def stats(self) -> LoggerStats:
        with self._lock:
            return LoggerStats(
                delivered=self._delivered,
                failed=self._failed,
                dropped=self._dropped,
                in_flight=self._accepted - self._delivered - self._failed,
                batches=self._batches,
                last_loss=self._last_loss,
                last_kafka_error=self._last_kafka_error,
                refused=self.producer.refused(),
            )

    def flush(self, timeout: float = 10.0) -> int:
        """Send what is pending, wait up to ``timeout`` seconds for the broker to take every
        queued batch, and return how many predictions are still in flight."""
        self._send_pending()
        self.producer.flush(timeout)
        return self.stats().in_flight

    def close(self, timeout: float = 10.0) -> int:
        """Stop taking predictions, flush, stop the threads; return how many remain."""
        self._closing.set()
        self._first_pending.set()
        self._batch_full.set()
        self._flusher.join(timeout)
        remaining = self.flush(timeout)
        self._poller.join(timeout)
        return remaining

    def __enter__(self) -> PredictionLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _flush_on_time(self) -> None:
        while not self._closing.is_set():
            self._first_pending.wait()
            # Lingers, unless a batch fills (or the logger closes) meanwhile.
            self._batch_full.wait(self.linger_ms / 1000)
            # Cleared before the batches are taken: a prediction logged after that sets
            # them again, so none waits for the next one.
            self._first_pending.clear()
            self._batch_full.clear()
            self._send_pending()

    def _send_pending(self) -> None:
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
            for model_id, predictions in pending.items():
                for start in range(0, len(predictions), self.batch_size):
                    self._produce(model_id, predictions[start : start + self.batch_size])

    def _produce(self, model_id: str, predictions: list[Prediction]) -> None:
        try:
            value = encode_batch(Prediction, model_id, predictions)
        except Exception:
            # Some prediction holds a value with no JSON form: send the others.
            predictions = [p for p in predictions if self._encodes(p)]
            if not predictions:
                return
            value = encode_batch(Prediction, model_id, predictions)
        if len(value) > self.max_batch_bytes and len(predictions) > 1:
            half = len(predictions) // 2
            self._produce(model_id, predictions[:half])
            self._produce(model_id, predictions[half:])
            return
        try:
            self.producer.produce(
                self.topic,
                value,
                model_id.encode("utf-8"),
                on_delivery=functools.partial(self._on_delivery, len(predictions)),
            )
        except BufferError:
            self._count_dropped(len(predictions), "the producer's queue is full", accepted=True)
            return
        except Exception as error:
            self._count_dropped(len(predictions), f"{type(error).__name__}: {error}", accepted=True)
            return
        with self._lock:
            self._batches += 1

    def _encodes(self, prediction: Prediction) -> bool:
        try:
            encode(prediction)
        except Exception as error:
            self._count_dropped(1, f"{type(error).__name__}: {error}", accepted=True)
            return False
        return True

    def _count_dropped(self, count: int, why: str, *, accepted: bool) -> None:
        """Book ``count`` predictions as dropped: at ``log``, or after it had accepted them."""
        with self._lock:
            self._dropped += count
            if accepted:
                self._accepted -= count
            self._last_loss = why

    def _poll(self) -> None:
        # Delivery reports are served here, so the serving path never calls poll().
        while not self._closing.is_set() or self._flusher.is_alive():
            self.producer.poll(0.1)

    def _on_delivery(self, count: int, error: KafkaError | None, message: Message) -> None:
        # The delivery thread and a caller of flush() may both serve these reports.
        with self._lock:
            if error is None:
                self._delivered += count
            else:
                self._failed += count
                self._last_loss = str(error)

    def _on_kafka_error(self, error: KafkaError) -> None:
        self._last_kafka_error = str(error)
