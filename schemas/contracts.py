"""The Python side of the wire contracts: one msgspec type per topic.

Each type mirrors the JSON Schema file of the same name (``<contract>.schema.json`` in this
package), which is the language-neutral definition that Java or Go fleets use. Timestamps
are integer milliseconds since the Unix epoch (UTC). Every message carries
``schema_version``; see ``README.md`` in this package for how a contract may evolve.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, TypeAlias, TypeVar

import msgspec

Version: TypeAlias = Literal[1]
SCHEMA_VERSION: Final[Version] = 1
"""The version every contract is at; decoders accept exactly the versions they know."""

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
# At most 2**53 - 1 (the year 287,396): a double holds every such time exactly, and the
# worker's columns and compiled loops keep times in int64 and float64, so a larger one
# would overflow there rather than be refused here.
MAX_MILLIS: Final = 2**53 - 1
Millis = Annotated[int, msgspec.Meta(ge=0, le=MAX_MILLIS)]
Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Latency = Annotated[float, msgspec.Meta(ge=0.0)]
Scalar: TypeAlias = bool | int | float | str | None
"""A feature value or a label: any JSON scalar; null means "missing"."""

T = TypeVar("T")

Role: TypeAlias = Literal["live", "shadow", "fallback"]

Action: TypeAlias = Literal["fallback", "restore", "promote_shadow"]

Level = Annotated[int, msgspec.Meta(ge=0, le=255)]
"""A rung of a model's fallback ladder: 0 is the model itself, 1 its first fallback, and
so on down to the last (``fallback = ["ranker-cpu", "top_n_popular"]``: 1 and 2)."""

# Every record is frozen and holds only data decoded from JSON, so it can never be part of
# a reference cycle: ``gc=False`` keeps records out of the cycle collector, whose pauses
# would otherwise grow with the number of records a worker or a node holds and decodes.


class Score(msgspec.Struct, frozen=True, gc=False, tag="score", tag_field="kind"):
    """A single number, e.g. a click probability or a regression output."""

    score: float


class ClassProbabilities(
    msgspec.Struct, frozen=True, gc=False, tag="probabilities", tag_field="kind"
):
    """A probability per class label."""

    probabilities: dict[str, Probability]


class Ranking(msgspec.Struct, frozen=True, gc=False, tag="ranking", tag_field="kind"):
    """Item ids, best first, e.g. the recommendations shown to a user."""

    items: list[Name]


Output: TypeAlias = Score | ClassProbabilities | Ranking


class FeatureSeen(msgspec.Struct, frozen=True, gc=False):
    """A feature value a model used, and when that value was written to the feature store."""

    value: Scalar
    written_at: Millis


# ``omit_defaults``: a prediction that leaves the optional fields null encodes as it did
# before they existed.
class Prediction(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """What one model answered for one request; topic ``predictions``, keyed by model_id.

    A ``fallback`` prediction may say why the fallback answered (``fallback_reason``: the
    fleet client's ``control``, ``error``, ``timeout``, ``saturated`` or
    ``breaker_open:<why>``) and which rung of the model's ladder did (``level``).
    """

    schema_version: Version
    request_id: Name
    model_id: Name
    model_version: Name
    role: Role
    entity_id: Name
    predicted_at: Millis
    output: Output
    features: dict[str, FeatureSeen]
    latency_ms: Latency
    fallback_reason: Name | None = None
    level: Level | None = None


class FeatureWrite(msgspec.Struct, frozen=True, gc=False):
    """A feature store write; topic ``feature-writes``, keyed by entity_id."""

    schema_version: Version
    entity_id: Name
    feature: Name
    value: Scalar
    event_at: Millis
    written_at: Millis
    source: Name


class GroundTruth(msgspec.Struct, frozen=True, gc=False):
    """A late outcome; topic ``ground-truth``, keyed by model_id.

    It joins to predictions by ``request_id`` when the outcome system knows it, else by
    ``entity_id``; at least one of the two is present.
    """

    schema_version: Version
    model_id: Name
    label: Scalar
    label_at: Millis
    request_id: Name | None = None
    entity_id: Name | None = None

    def __post_init__(self) -> None:
        if self.request_id is None and self.entity_id is None:
            # The "field: reason" form is how the codec learns which field to name.
            raise ValueError("request_id: request_id or entity_id is required")


class ControlCommand(msgspec.Struct, frozen=True, gc=False):
    """An order to the serving fleet; topic ``control`` (compacted), keyed by model_id.

    ``seq`` grows per model (see ``schemas.signing.next_seq``); a node applies a command
    only if its seq is above the last one it applied for that model. ``expires_at`` bounds
    when the command may still take effect (null: no bound). ``key_id`` and ``signature``
    are optional on the wire so that an unsigned command decodes and is rejected, and
    counted, as unsigned rather than as malformed. ``level`` is the rung of the model's
    fallback ladder to serve (null: the first fallback for ``fallback``, the model for
    ``restore``); it is signed only when set, so a command without it is signed exactly
    as before it existed (``schemas.signing.canonical_bytes``).
    """

    schema_version: Version
    model_id: Name
    action: Action
    reason: Annotated[str, msgspec.Meta(max_length=4096)]
    detector: Name
    issued_at: Millis
    seq: Annotated[int, msgspec.Meta(ge=1)]
    expires_at: Millis | None = None
    key_id: Name | None = None
    # 128 hex digits: Ed25519; 64: HMAC-SHA256, the earlier scheme (schemas/signing.py).
    signature: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}([0-9a-f]{64})?$")] | None = None
    level: Level | None = None


# A batch message is columnar: one array per field of its records (the i-th record is the
# i-th value of every array), beside the fields all its records share: the version, and the
# model (or, for feature writes, the writer). The layout measured faster to decode,
# validate and report bad records of than a list of records (tests/benchmarks/bench_decode).
# An optional field's column may be left out (or null): then every record's value is null.
# ``omit_defaults`` leaves such a column out when encoding.
Column = Annotated[list[T], msgspec.Meta(min_length=1)]


class PredictionBatch(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """Predictions of one model, a column per field; topic ``predictions``, keyed by model_id.

    Record i is ``Prediction(schema_version, request_id[i], model_id, model_version[i], ...)``.
    """

    schema_version: Version
    model_id: Name
    request_id: Column[Name]
    model_version: Column[Name]
    role: Column[Role]
    entity_id: Column[Name]
    predicted_at: Column[Millis]
    output: Column[Output]
    features: Column[dict[str, FeatureSeen]]
    latency_ms: Column[Latency]
    fallback_reason: Column[Name | None] | None = None
    level: Column[Level | None] | None = None


class GroundTruthBatch(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """Outcomes for one model, a column per field; topic ``ground-truth``, keyed by model_id.

    Each record needs a request_id or an entity_id, as a single ``GroundTruth`` does.
    """

    schema_version: Version
    model_id: Name
    label: Column[Scalar]
    label_at: Column[Millis]
    request_id: Column[Name | None] | None = None
    entity_id: Column[Name | None] | None = None


class FeatureWriteBatch(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """Writes by one writer, a column per field; topic ``feature-writes``, keyed by source."""

    schema_version: Version
    source: Name
    entity_id: Column[Name]
    feature: Column[Name]
    value: Column[Scalar]
    event_at: Column[Millis]
    written_at: Column[Millis]


# Defaults are left out of the JSON and the repr, so an error outside any batch reads and
# encodes as it did before batches existed.
class DecodeError(
    msgspec.Struct, frozen=True, gc=False, omit_defaults=True, repr_omit_defaults=True
):
    """Why bytes did not decode: the field, as a path such as ``features[...].written_at``
    (``$`` for the whole message or record), and the reason. ``index`` is the record's
    position in its batch message; None when the message as received is at fault (a
    single-record message, or a batch whose envelope is unusable). The codec returns it;
    dead letters carry it.
    """

    field: str
    reason: str
    index: Annotated[int, msgspec.Meta(ge=0)] | None = None


class DeadLetter(msgspec.Struct, frozen=True, gc=False):
    """A message, or a record in a batch message, that nobody could use; topic
    ``dead-letters``, keyed by source topic.

    ``raw`` is the message as consumed, or, when ``error.index`` is set, that record of the
    batch message at ``offset`` as a single-record message (its values as they were sent).
    """

    schema_version: Version
    source_topic: Name
    partition: Annotated[int, msgspec.Meta(ge=0)]
    offset: Annotated[int, msgspec.Meta(ge=0)]
    raw: bytes | None
    error: DecodeError
    seen_at: Millis
    key: bytes | None = None


Record: TypeAlias = Prediction | FeatureWrite | GroundTruth
"""A record of an input topic, which a batch message may carry many of."""

Batch: TypeAlias = PredictionBatch | GroundTruthBatch | FeatureWriteBatch

Contract: TypeAlias = Record | Batch | ControlCommand | DeadLetter

CONTRACTS: dict[str, type[Contract]] = {
    "prediction": Prediction,
    "prediction_batch": PredictionBatch,
    "feature_write": FeatureWrite,
    "feature_write_batch": FeatureWriteBatch,
    "ground_truth": GroundTruth,
    "ground_truth_batch": GroundTruthBatch,
    "control_command": ControlCommand,
    "dead_letter": DeadLetter,
}
"""Each contract's name, which is also the stem of its JSON Schema and example files."""
