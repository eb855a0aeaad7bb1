"""Ingest: raw bytes from an input topic become a usable record or a dead letter.

Pure code (no Faust, no Kafka): the ingest reader calls ``admit`` for each message, a
single-record message or a batch message (a single record is a batch of one), and
``PipelineCounters`` keeps the books. The books count records, not messages: every
consumed record ends in exactly one of two outcomes, so
``consumed == processed + dead_lettered`` holds per topic at all times:

- **processed**: it decoded, and it names a declared model (or, for a feature write, any
  feature: feature stores write features that no model monitors, and those are not errors);
- **dead-lettered**: it did not decode (the codec's ``DecodeError`` names the field, the
  reason and, inside a batch, the record's index), or it names a model that the
  portfolio does not declare (``UNKNOWN_MODEL_REASON``; see ``streams.portfolio``). A
  bad record inside a batch is dead-lettered alone; the rest of the batch is processed.

Dead letters are counted by a short reason label (``reason_label``) whose cardinality is
bounded by the contracts' field names, so it is safe as a Prometheus label.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping, Sequence

from schemas.codec import WHOLE_MESSAGE, decode_batch
from schemas.contracts import DecodeError, FeatureWrite, GroundTruth, Prediction
from streams.portfolio import UNKNOWN_MODEL_REASON, Portfolio
from streams.topics import FEATURE_WRITES, GROUND_TRUTH, PREDICTIONS, TopicSpec

__all__ = [
    "INPUTS",
    "Input",
    "InputRecord",
    "PipelineCounters",
    "admit",
    "reason_label",
]

InputRecord = Prediction | FeatureWrite | GroundTruth


@dataclasses.dataclass(frozen=True)
class Input:
    """An input topic: its record contract, and whether its records name a model (keyed by
    model_id) or not (feature writes, keyed by entity_id)."""

    spec: TopicSpec
    contract: type[InputRecord]
    by_model: bool


INPUTS: Mapping[str, Input] = {
    PREDICTIONS.suffix: Input(PREDICTIONS, Prediction, by_model=True),
    FEATURE_WRITES.suffix: Input(FEATURE_WRITES, FeatureWrite, by_model=False),
    GROUND_TRUTH.suffix: Input(GROUND_TRUTH, GroundTruth, by_model=True),
}


def admit(
    source: Input, raw: bytes | None, portfolio: Portfolio
) -> tuple[list[InputRecord], list[DecodeError]]:
    """The records of one message (single-record or batch) and the errors to dead-letter
    the others with; never raises on the bytes. A record that names an undeclared model is
    an error too, with its index when the message held more than one record.

    >>> from streams.portfolio import parse_portfolio
    >>> portfolio = parse_portfolio(
    ...     '[models.ranker]\\nowner = "a"\\ntier = "cpu"\\nfallback = "x"\\nlabel_delay = 60')
    >>> label = (b'{"schema_version": 1, "model_id": "%s", "label": 1, "label_at": 5,'
    ...          b' "entity_id": "u"}')
    >>> admit(INPUTS["ground-truth"], label % b"ranker", portfolio)[0][0].label
    1
    >>> admit(INPUTS["ground-truth"], label % b"other", portfolio)
    ([], [DecodeError(field='model_id', reason='unknown model')])
    >>> batch = b'{"schema_version":1,"model_id":"ranker","label":[1,0],"label_at":[5,"x"],'
    >>> records, errors = admit(INPUTS["ground-truth"], batch + b'"entity_id":["u","v"]}',
    ...                         portfolio)
    >>> [record.entity_id for record in records], errors
    (['u'], [DecodeError(field='label_at', reason='Expected `int`, got `str`', index=1)])
    """
    outcomes = decode_batch(source.contract, raw)
    records: list[InputRecord] = []
    errors: list[DecodeError] = []
    many = len(outcomes) > 1
    for index, outcome in enumerate(outcomes):
        if type(outcome) is DecodeError:
            errors.append(outcome)
        elif source.by_model and outcome.model_id not in portfolio:  # type: ignore[union-attr,operator]
            errors.append(DecodeError("model_id", UNKNOWN_MODEL_REASON, index if many else None))
        else:
            records.append(outcome)  # type: ignore[arg-type]
    return records, errors


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
    """The records each input topic consumed, processed and dead-lettered, by topic and
    reason, and the control commands the watches issued.

    Plain integers on the hot path; the Prometheus collector reads them when scraped.
    """

    def __init__(self) -> None:
        self.consumed: collections.Counter[str] = collections.Counter()
        self.processed: collections.Counter[str] = collections.Counter()
        self.dead_lettered: collections.Counter[tuple[str, str]] = collections.Counter()
        # Control commands by action: sent signed, or withheld (alert-only model, no key).
        self.commands_sent: collections.Counter[str] = collections.Counter()
        self.commands_withheld: collections.Counter[str] = collections.Counter()
        # Made again with a seq the control topic already holds (a restored monitor).
        self.commands_skipped_as_sent: collections.Counter[str] = collections.Counter()

    def count(self, topic: str, processed: int, errors: Sequence[DecodeError] = ()) -> None:
        """Book consumed records of ``topic``: ``processed`` of them, and one dead-lettered
        with each error."""
        self.consumed[topic] += processed + len(errors)
        if processed:
            self.processed[topic] += processed
        for error in errors:
            self.dead_lettered[topic, reason_label(error)] += 1

    def dead_lettered_total(self, topic: str) -> int:
        return sum(n for (name, _), n in self.dead_lettered.items() if name == topic)
