"""Bytes to records and back; untrusted bytes become a record or a ``DecodeError``, never raise.

An input topic carries single-record messages and batch messages; ``decode_batch`` reads
either as a list of outcomes, one per record.

>>> from schemas.codec import DecodeError, decode
>>> from schemas.contracts import FeatureWrite
>>> raw = (b'{"schema_version": 1, "entity_id": "u1", "feature": "age", "value": 41,'
...        b' "event_at": 1000, "written_at": 1200, "source": "crm"}')
>>> decode(FeatureWrite, raw).value
41
>>> decode(FeatureWrite, raw.replace(b'"event_at": 1000', b'"event_at": "soon"'))
DecodeError(field='event_at', reason='Expected `int`, got `str`')
>>> decode(FeatureWrite, b"\\xff")
DecodeError(field='$', reason='JSON is malformed: invalid character (byte 0)')
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar, cast

import msgspec

from schemas.contracts import (
    SCHEMA_VERSION,
    Batch,
    ControlCommand,
    DeadLetter,
    DecodeError,
    FeatureWrite,
    FeatureWriteBatch,
    GroundTruth,
    GroundTruthBatch,
    Name,
    Prediction,
    PredictionBatch,
    Record,
    Version,
)

__all__ = [
    "BATCHES",
    "WHOLE_MESSAGE",
    "BatchOf",
    "DecodeError",
    "dead_letter",
    "dead_letters",
    "decode",
    "decode_batch",
    "decode_control_command",
    "decode_dead_letter",
    "decode_feature_write",
    "decode_ground_truth",
    "decode_prediction",
    "encode",
    "encode_batch",
]

T = TypeVar("T", bound=msgspec.Struct)
R = TypeVar("R", bound=Record)

WHOLE_MESSAGE = "$"
"""The field a ``DecodeError`` names when the message as a whole is unusable."""

_PATH = re.compile(r"^(?P<reason>.*) - at `\$(?P<path>.*)`$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_POST_INIT = re.compile(r"^(?P<field>[a-z_]+): (?P<reason>.+)$", re.DOTALL)

_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}
_encoder = msgspec.json.Encoder()


def decode(contract: type[T], raw: bytes | None) -> T | DecodeError:
    """Decode and validate ``raw`` as ``contract`` in one pass; never raises on the bytes."""
    if raw is None:
        return DecodeError(WHOLE_MESSAGE, "no value (a tombstone)")
    decoder = _decoders.get(contract)
    if decoder is None:
        decoder = _decoders[contract] = msgspec.json.Decoder(contract)
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as error:
        return _explain(str(error))
    except msgspec.DecodeError as error:
        return DecodeError(WHOLE_MESSAGE, str(error))
    except UnicodeDecodeError as error:
        # msgspec validates UTF-8 lazily, and reports bad bytes in an enum string this way.
        return DecodeError(WHOLE_MESSAGE, f"invalid UTF-8 in a string: {error.reason}")
    except RecursionError:
        # msgspec descends one interpreter frame per level of nesting, so a few kilobytes
        # of nested objects or arrays reach the recursion limit.
        return DecodeError(WHOLE_MESSAGE, "JSON is nested too deeply")


def decode_prediction(raw: bytes | None) -> Prediction | DecodeError:
    return decode(Prediction, raw)


def decode_feature_write(raw: bytes | None) -> FeatureWrite | DecodeError:
    return decode(FeatureWrite, raw)


def decode_ground_truth(raw: bytes | None) -> GroundTruth | DecodeError:
    return decode(GroundTruth, raw)


def decode_control_command(raw: bytes | None) -> ControlCommand | DecodeError:
    return decode(ControlCommand, raw)


def decode_dead_letter(raw: bytes | None) -> DeadLetter | DecodeError:
    return decode(DeadLetter, raw)


def encode(record: msgspec.Struct) -> bytes:
    """The JSON bytes of a record, fields in declaration order."""
    return _encoder.encode(record)


def dead_letter(
    error: DecodeError,
    *,
    raw: bytes | None,
    source_topic: str,
    partition: int,
    offset: int,
    seen_at: int,
    key: bytes | None = None,
) -> DeadLetter:
    """The dead-letter record for a message that failed to decode with ``error``.

    >>> letter = dead_letter(DecodeError("$", "bad"), raw=b"{", source_topic="t",
    ...                      partition=0, offset=7, seen_at=1)
    >>> encode(letter)[:60]
    b'{"schema_version":1,"source_topic":"t","partition":0,"offset'
    """
    (letter,) = dead_letters(
        [error],
        raw=raw,
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        seen_at=seen_at,
        key=key,
    )
    return letter


def dead_letters(
    errors: Sequence[DecodeError],
    *,
    raw: bytes | None,
    source_topic: str,
    partition: int,
    offset: int,
    seen_at: int,
    key: bytes | None = None,
) -> list[DeadLetter]:
    """The dead letters of one consumed message, one per error ``decode_batch`` gave for it.

    A letter for a record inside a batch (``error.index`` set) carries that record's bytes,
    not the whole message: a batch of 500 with a few bad records costs a few small letters.
    The batch is split once, however many of its records failed.

    >>> raw = b'{"schema_version":1,"source":"crm","records":[{"bad":1},{"worse":2}]}'
    >>> errors = [e for e in decode_batch(FeatureWrite, raw) if isinstance(e, DecodeError)]
    >>> letters = dead_letters(errors, raw=raw, source_topic="t", partition=0, offset=7,
    ...                        seen_at=1)
    >>> [(letter.raw, letter.error.index) for letter in letters]
    [(b'{"bad":1}', 0), (b'{"worse":2}', 1)]
    """
    parts: list[msgspec.Raw] = []
    if raw is not None and any(error.index is not None for error in errors):
        split = decode(_Records, raw)
        if not isinstance(split, DecodeError):
            parts = split.records
    return [
        DeadLetter(
            schema_version=SCHEMA_VERSION,
            source_topic=source_topic,
            partition=partition,
            offset=offset,
            raw=bytes(parts[error.index])
            if error.index is not None and error.index < len(parts)
            else raw,
            error=error,
            seen_at=seen_at,
            key=key,
        )
        for error in errors
    ]


@dataclasses.dataclass(frozen=True)
class BatchOf:
    """How records of one contract travel many to a message.

    ``owner`` is the field every record of a batch shares with the batch: its one model,
    or its one writer. ``envelope`` is the batch with its records left as raw JSON, so that
    each can be decoded, and fail, on its own.
    """

    record: type[Record]
    batch: type[Batch]
    owner: str
    envelope: type[msgspec.Struct]

    @functools.cached_property
    def owner_of(self) -> Callable[[Any], str]:
        return operator.attrgetter(self.owner)


def _batch_of(record: type[Record], batch: type[Batch], owner: str) -> BatchOf:
    envelope = msgspec.defstruct(
        f"{batch.__name__}Envelope",
        [
            ("schema_version", Version),
            (owner, Name),
            ("records", Annotated[list[msgspec.Raw], msgspec.Meta(min_length=1)]),
        ],
        frozen=True,
        gc=False,
    )
    return BatchOf(record, batch, owner, envelope)


BATCHES: dict[type[Any], BatchOf] = {
    spec.record: spec
    for spec in (
        _batch_of(Prediction, PredictionBatch, "model_id"),
        _batch_of(GroundTruth, GroundTruthBatch, "model_id"),
        _batch_of(FeatureWrite, FeatureWriteBatch, "source"),
    )
}
"""Each record contract that may travel in batches, with how."""


class _Records(msgspec.Struct, frozen=True, gc=False):
    """Any batch's records, as raw JSON; the other fields are skipped."""

    records: list[msgspec.Raw]


class _Shape(msgspec.Struct, frozen=True, gc=False):
    """Whether a message has a top-level ``records`` field, i.e. is a batch at all."""

    # Raw cannot be in a union with None; an empty Raw is what no field decodes to.
    records: msgspec.Raw = msgspec.Raw()


# The last bytes of a batch whose records come last, as every encoder of the contract's
# field order writes it. A record contract has no array field at the top level, so a
# single-record message ends so only if it carries an unknown one. Looking at two bytes
# costs nothing; looking for the key anywhere costs a quarter of decoding a prediction.
_BATCH_END = b"]}"


def decode_batch(contract: type[R], raw: bytes | None) -> list[R | DecodeError]:
    """Every record of one message, a single-record or a batch message, in order; never raises.

    A single-record message of ``contract`` is a batch of one. In a batch, each record
    is decoded alone: a bad one becomes a ``DecodeError`` whose ``index`` is its position
    in the batch (and whose field and reason are what ``decode`` gives for it), and so
    does a record whose owner (``BATCHES[contract].owner``: its model or its writer) is
    not the batch's; the other records are returned as they are. A message that cannot
    be read as either, or a batch whose envelope is unusable (an unknown
    ``schema_version``, no records), is one ``DecodeError`` with no index.

    >>> from schemas.contracts import GroundTruth
    >>> batch = (b'{"schema_version":1,"model_id":"m","records":['
    ...          b'{"schema_version":1,"model_id":"m","label":1,"label_at":5,"entity_id":"u"},'
    ...          b'{"schema_version":1,"model_id":"m","label":0,"label_at":"x","entity_id":"v"},'
    ...          b'{"schema_version":1,"model_id":"n","label":0,"label_at":6,"entity_id":"w"}]}')
    >>> for outcome in decode_batch(GroundTruth, batch):
    ...     print(outcome)
    GroundTruth(schema_version=1, model_id='m', label=1, label_at=5, request_id=None, entity_id='u')
    DecodeError(field='label_at', reason='Expected `int`, got `str`', index=1)
    DecodeError(field='model_id', reason="not the batch's model_id", index=2)
    >>> decode_batch(GroundTruth, b'{"schema_version":2,"model_id":"m","records":[{}]}')
    [DecodeError(field='schema_version', reason='Invalid enum value 2')]
    """
    if raw is None:
        return [decode(contract, raw)]
    if not raw.endswith(_BATCH_END):
        single = decode(contract, raw)
        # ``type() is`` costs a fifth of isinstance() on a msgspec type: this is per message.
        if type(single) is not DecodeError or not _is_batch(single, raw):
            return [single]
    spec = BATCHES[contract]
    batch = decode(spec.batch, raw)
    if not isinstance(batch, DecodeError):
        # The common case: one pass decodes and validates every record at once.
        records = cast("list[R]", batch.records)
        if set(map(spec.owner_of, records)) == {spec.owner_of(batch)}:
            return list(records)
        return _owned(spec, spec.owner_of(batch), records)
    envelope = decode(spec.envelope, raw)
    if isinstance(envelope, DecodeError):
        return [envelope if _is_batch(envelope, raw) else decode(contract, raw)]
    outcomes = [
        _indexed(decode(contract, part), index)
        for index, part in enumerate(envelope.records)  # type: ignore[attr-defined]
    ]
    return _owned(spec, spec.owner_of(envelope), outcomes)


def _is_batch(error: DecodeError, raw: bytes) -> bool:
    """Whether ``raw``, which failed with ``error`` as one kind of message, has a top-level
    ``records`` field (so is a batch message, however ill-formed) and is JSON at all."""
    if error.field == WHOLE_MESSAGE:
        return False
    shape = decode(_Shape, raw)
    return not isinstance(shape, DecodeError) and len(shape.records) > 0


def encode_batch(contract: type[Record], owner: str, records: Sequence[bytes]) -> bytes:
    """The batch message of ``records`` of ``contract``, each already encoded with ``encode``,
    whose owner (model or writer, see ``BatchOf``) is ``owner``.

    Producers that encode each record as it comes join them here without decoding.

    >>> write = (b'{"schema_version":1,"entity_id":"u1","feature":"age","value":41,'
    ...          b'"event_at":1000,"written_at":1200,"source":"crm"}')
    >>> [record.value for record in decode_batch(FeatureWrite,
    ...                                           encode_batch(FeatureWrite, "crm", [write] * 2))]
    [41, 41]
    """
    return encode(
        BATCHES[contract].envelope(SCHEMA_VERSION, owner, [msgspec.Raw(r) for r in records])
    )


def _indexed(outcome: R | DecodeError, index: int) -> R | DecodeError:
    if isinstance(outcome, DecodeError):
        return msgspec.structs.replace(outcome, index=index)
    return outcome


def _owned(spec: BatchOf, owner: str, outcomes: Sequence[R | DecodeError]) -> list[R | DecodeError]:
    """``outcomes`` with each record of another owner than the batch's made an error."""
    field = spec.owner
    return [
        outcome
        if isinstance(outcome, DecodeError) or getattr(outcome, field) == owner
        else DecodeError(field, f"not the batch's {field}", index)
        for index, outcome in enumerate(outcomes)
    ]


def _explain(message: str) -> DecodeError:
    path, reason = "", message
    located = _PATH.match(message)
    if located is not None:
        path, reason = located["path"].lstrip("."), located["reason"]
    missing = _MISSING.match(reason)
    if missing is not None:
        return DecodeError(_join(path, missing["field"]), "required field is missing")
    if not path:
        # Raised by a contract's __post_init__, which words it "field: reason".
        named = _POST_INIT.match(reason)
        if named is not None:
            return DecodeError(named["field"], named["reason"])
    return DecodeError(path or WHOLE_MESSAGE, reason)


def _join(path: str, field: str) -> str:
    return f"{path}.{field}" if path else field
