"""Ingest: raw bytes from an input topic become a usable record or a dead letter.

Pure code (no Faust, no Kafka): the ingest agent calls ``validate`` for each message and
``PipelineCounters`` keeps the books. Every consumed message ends in exactly one of two
outcomes, so ``consumed == processed + dead_lettered`` holds per topic at all times:

- **processed**: it decoded, and it names a declared model (or, for a feature write, any
  feature: feature stores write features that no model monitors, and those are not errors);
- **dead-lettered**: it did not decode (the codec's ``DecodeError`` names the field and
  the reason), or it names a model that the portfolio does not declare
  (``UNKNOWN_MODEL_REASON``; see ``streams.portfolio``).

Dead letters are counted by a short reason label (``reason_label``) whose cardinality is
bounded by the contracts' field names, so it is safe as a Prometheus label.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Mapping

from schemas.codec import (
    WHOLE_MESSAGE,
    decode_feature_write,
    decode_ground_truth,
    decode_prediction,
)
from schemas.contracts import DecodeError, FeatureWrite, GroundTruth, Prediction
from streams.portfolio import UNKNOWN_MODEL_REASON, Portfolio
from streams.topics import FEATURE_WRITES, GROUND_TRUTH, PREDICTIONS, TopicSpec

__all__ = [
    "INPUTS",
    "Input",
    "InputRecord",
    "PipelineCounters",
    "reason_label",
    "validate",
]

InputRecord = Prediction | FeatureWrite | GroundTruth


@dataclasses.dataclass(frozen=True)
class Input:
    """An input topic: how its bytes decode, and which model a record is about (if any)."""

    spec: TopicSpec
    decode: Callable[[bytes | None], InputRecord | DecodeError]
    model_of: Callable[[InputRecord], str | None]


def _model_id(record: InputRecord) -> str | None:
    return getattr(record, "model_id", None)


def _no_model(record: InputRecord) -> str | None:
    return None


INPUTS: Mapping[str, Input] = {
    PREDICTIONS.suffix: Input(PREDICTIONS, decode_prediction, _model_id),
    FEATURE_WRITES.suffix: Input(FEATURE_WRITES, decode_feature_write, _no_model),
    GROUND_TRUTH.suffix: Input(GROUND_TRUTH, decode_ground_truth, _model_id),
}


def validate(source: Input, raw: bytes | None, portfolio: Portfolio) -> InputRecord | DecodeError:
    """The record, or the error to dead-letter it with. Never raises on the bytes.

    >>> from streams.portfolio import parse_portfolio
    >>> portfolio = parse_portfolio(
    ...     '[models.ranker]\\nowner = "a"\\ntier = "cpu"\\nfallback = "x"\\nlabel_delay = 60')
    >>> label = (b'{"schema_version": 1, "model_id": "%s", "label": 1, "label_at": 5,'
    ...          b' "entity_id": "u"}')
    >>> validate(INPUTS["ground-truth"], label % b"ranker", portfolio).label
    1
    >>> validate(INPUTS["ground-truth"], label % b"other", portfolio)
    DecodeError(field='model_id', reason='unknown model')
    """
    record = source.decode(raw)
    if isinstance(record, DecodeError):
        return record
    model_id = source.model_of(record)
    if model_id is not None and model_id not in portfolio:
        return DecodeError("model_id", UNKNOWN_MODEL_REASON)
    return record


def reason_label(error: DecodeError) -> str:
    """A short, bounded label for a dead letter's reason.

    >>> reason_label(DecodeError("$", "JSON is malformed: truncated"))
    'malformed'
    >>> reason_label(DecodeError("model_id", "unknown model"))
    'unknown model'
    >>> reason_label(DecodeError("features[...].written_at", "Expected `int`, got `str`"))
    'invalid features[...].written_at'
    """
    if error.reason == UNKNOWN_MODEL_REASON:
        return UNKNOWN_MODEL_REASON
    if error.field == WHOLE_MESSAGE:
        return "malformed"
    return f"invalid {error.field}"


class PipelineCounters:
    """What each input topic consumed, processed and dead-lettered, by topic and reason,
    and the control commands the watches issued.

    Plain integers on the hot path; the Prometheus collector reads them when scraped.
    """

    def __init__(self) -> None:
        self.consumed: collections.Counter[str] = collections.Counter()
        self.processed: collections.Counter[str] = collections.Counter()
        self.dead_lettered: collections.Counter[tuple[str, str]] = collections.Counter()
        # Control commands by action: sent signed, or withheld (alert-only model, no key).
        self.commands_sent: collections.Counter[str] = collections.Counter()
        self.commands_withheld: collections.Counter[str] = collections.Counter()

    def count(self, topic: str, outcome: InputRecord | DecodeError) -> None:
        """Book one consumed message with its outcome."""
        self.consumed[topic] += 1
        if isinstance(outcome, DecodeError):
            self.dead_lettered[topic, reason_label(outcome)] += 1
        else:
            self.processed[topic] += 1

    def dead_lettered_total(self, topic: str) -> int:
        return sum(n for (name, _), n in self.dead_lettered.items() if name == topic)
