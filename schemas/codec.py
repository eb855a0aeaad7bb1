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
import itertools
import operator
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

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
    return _decoded(decoder, raw)


def _decoded(decoder: msgspec.json.Decoder[Any], raw: bytes | msgspec.Raw) -> Any:
    """What ``decoder`` makes of ``raw``, or the ``DecodeError`` that says why it could not."""
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

    A letter for a record inside a batch (``error.index`` set) carries that record alone,
    as a single-record message of its values as sent, not the whole batch: a batch of 500
    with a few bad records costs a few small letters. The batch is split once, however
    many of its records failed.

    >>> raw = (b'{"schema_version":1,"source":"crm","entity_id":["u1","u2"],'
    ...        b'"feature":["age","age"],"value":[41,42],"event_at":[1,"soon"],'
    ...        b'"written_at":[3,4]}')
    >>> errors = [e for e in decode_batch(FeatureWrite, raw) if isinstance(e, DecodeError)]
    >>> (letter,) = dead_letters(errors, raw=raw, source_topic="t", partition=0, offset=7,
    ...                          seen_at=1)
    >>> letter.error
    DecodeError(field='event_at', reason='Expected `int`, got `str`', index=1)
    >>> letter.raw
    b'{"schema_version":1,"source":"crm","entity_id":"u2","feature":"age","value":42,"event_at":"soon","written_at":4}'
    """
    record_bytes: Callable[[int], bytes | None] = lambda index: raw  # noqa: E731
    if raw is not None and any(error.index is not None for error in errors):
        record_bytes = _splitter(raw)
    return [
        DeadLetter(
            schema_version=SCHEMA_VERSION,
            source_topic=source_topic,
            partition=partition,
            offset=offset,
            raw=raw if error.index is None else record_bytes(error.index),
            error=error,
            seen_at=seen_at,
            key=key,
        )
        for error in errors
    ]


_UNDECODABLE = (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError)
"""What a msgspec decoder raises on bytes it cannot decode (see ``_decoded``)."""
_FIELDS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_VALUES = msgspec.json.Decoder(list[msgspec.Raw])


def _splitter(raw: bytes) -> Callable[[int], bytes | None]:
    """Record ``index`` of the batch message ``raw`` as a message of its own: each array of
    the batch (a column) gives its value at ``index``, every other field is kept."""
    try:
        fields = _FIELDS.decode(raw)
        columns = {
            name: _VALUES.decode(value)
            for name, value in fields.items()
            if memoryview(value)[:1] == b"["
        }
    except _UNDECODABLE:
        return lambda index: raw

    def record(index: int) -> bytes | None:
        if any(index >= len(values) for values in columns.values()):
            return raw
        return _encoder.encode(
            {name: columns[name][index] if name in columns else v for name, v in fields.items()}
        )

    return record


@dataclasses.dataclass(frozen=True)
class BatchOf:
    """How records of one contract travel many to a message, a column per field.

    ``owner`` is the field every record of a batch shares with the batch, beside
    ``schema_version``: its one model, or its one writer. The other fields of the record
    are the batch's columns.
    """

    record: type[Record]
    batch: type[Batch]
    owner: str

    @functools.cached_property
    def fields(self) -> dict[str, Any]:
        """The record's fields, in order, with their types."""
        return {f.name: f.type for f in msgspec.structs.fields(self.record)}

    @functools.cached_property
    def columns(self) -> tuple[str, ...]:
        return tuple(name for name in self.fields if name not in ("schema_version", self.owner))

    @functools.cached_property
    def optional(self) -> frozenset[str]:
        """The columns a batch may leave out (or send as null): null for every record."""
        return frozenset(f.name for f in msgspec.structs.fields(self.batch) if not f.required)

    @functools.cached_property
    def record_decoder(self) -> msgspec.json.Decoder[Any]:
        return msgspec.json.Decoder(self.record)

    @functools.cached_property
    def column_decoders(self) -> dict[str, msgspec.json.Decoder[Any]]:
        return {name: msgspec.json.Decoder(list[self.fields[name]]) for name in self.columns}  # type: ignore[name-defined]

    @functools.cached_property
    def value_decoders(self) -> dict[str, msgspec.json.Decoder[Any]]:
        return {name: msgspec.json.Decoder(self.fields[name]) for name in self.columns}

    @functools.cached_property
    def envelope(self) -> type[msgspec.Struct]:
        """The batch with each column left as raw JSON, to decode one at a time.

        An absent optional column is an empty ``Raw`` (``Raw`` is in no union with None).
        """
        return msgspec.defstruct(
            f"{self.batch.__name__}Envelope",
            [
                ("schema_version", Version),
                (self.owner, Name),
                *(
                    (name, msgspec.Raw, msgspec.Raw())
                    if name in self.optional
                    else (name, msgspec.Raw)
                    for name in self.columns
                ),
            ],
            frozen=True,
            gc=False,
        )


BATCHES: dict[type[Any], BatchOf] = {
    spec.record: spec
    for spec in (
        BatchOf(Prediction, PredictionBatch, "model_id"),
        BatchOf(GroundTruth, GroundTruthBatch, "model_id"),
        BatchOf(FeatureWrite, FeatureWriteBatch, "source"),
    )
}
"""Each record contract that may travel in batches, with how."""

# The last bytes of a batch whose last field is a column, as every encoder that keeps the
# contract's field order writes it. A record contract has no array field at the top level,
# so a single-record message ends so only if it carries an unknown one.
_BATCH_END = b"]}"


def decode_batch(contract: type[R], raw: bytes | None) -> list[R | DecodeError]:
    """Every record of one message, a single-record or a batch message, in order; never raises.

    A single-record message of ``contract`` is a batch of one. A batch message
    (``BATCHES[contract].batch``) has a column per field; a bad value in it makes that
    record a ``DecodeError`` whose ``index`` is the record's position in the batch, and
    whose field and reason are those ``decode`` gives for the record alone. The other
    records are returned as they are. A message that cannot be read as either, or a batch
    whose envelope is unusable (an unknown ``schema_version``, a column that is not an
    array, columns of different lengths), is one ``DecodeError`` with no index.

    Which of the two a message is: a batch's columns are arrays. The layout that the
    message's last bytes suggest is tried first, the other if that fails.

    >>> from schemas.contracts import GroundTruth
    >>> batch = (b'{"schema_version":1,"model_id":"m","label":[1,0,0],'
    ...          b'"label_at":[5,"x",6],"entity_id":["u","v",null]}')
    >>> for outcome in decode_batch(GroundTruth, batch):
    ...     print(outcome)
    GroundTruth(schema_version=1, model_id='m', label=1, label_at=5, request_id=None, entity_id='u')
    DecodeError(field='label_at', reason='Expected `int`, got `str`', index=1)
    DecodeError(field='request_id', reason='request_id or entity_id is required', index=2)
    >>> decode_batch(GroundTruth, b'{"schema_version":2,"model_id":"m","label":[1]}')
    [DecodeError(field='schema_version', reason='Invalid enum value 2')]
    """
    if raw is None:
        return [decode(contract, raw)]
    spec = BATCHES[contract]
    if not raw.endswith(_BATCH_END):
        # Per message, so the decoder is called straight: decode() would add a third.
        try:
            return [spec.record_decoder.decode(raw)]
        except _UNDECODABLE:
            single = decode(contract, raw)  # again, for the error's field and reason
        if single.field == WHOLE_MESSAGE:  # type: ignore[union-attr]
            return [single]
        envelope = decode(spec.envelope, raw)
        if isinstance(envelope, DecodeError) or not _columns_are_arrays(spec, envelope):
            return [single]
        return _value_by_value(spec, envelope)
    batch = decode(spec.batch, raw)
    if not isinstance(batch, DecodeError):
        # The common case: one pass decoded and validated every column.
        records = _records(spec, batch)
        if records is not None:
            return records
    envelope = decode(spec.envelope, raw)
    if not isinstance(envelope, DecodeError) and _columns_are_arrays(spec, envelope):
        return _value_by_value(spec, envelope)
    single = decode(contract, raw)
    return [
        envelope
        if isinstance(envelope, DecodeError) and isinstance(single, DecodeError)
        else single
    ]


def encode_batch(contract: type[Record], owner: str, records: Sequence[Record]) -> bytes:
    """The batch message of ``records``, which must all be of ``owner`` (see ``BatchOf``).

    >>> write = decode(FeatureWrite, b'{"schema_version": 1, "entity_id": "u1", "feature":'
    ...                b' "age", "value": 41, "event_at": 1000, "written_at": 1200,'
    ...                b' "source": "crm"}')
    >>> encode_batch(FeatureWrite, "crm", [write, write])
    b'{"schema_version":1,"source":"crm","entity_id":["u1","u1"],"feature":["age","age"],"value":[41,41],"event_at":[1000,1000],"written_at":[1200,1200]}'
    """
    spec = BATCHES[contract]
    if any(getattr(record, spec.owner) != owner for record in records):
        raise ValueError(f"every record of a batch must have {spec.owner} {owner!r}")
    columns: dict[str, list[Any] | None] = {
        name: list(map(operator.attrgetter(name), records)) for name in spec.columns
    }
    for name in spec.optional:
        if all(value is None for value in columns[name] or ()):
            columns[name] = None
    return encode(spec.batch(SCHEMA_VERSION, owner, **columns))  # type: ignore[arg-type]


def _records(spec: BatchOf, batch: Any) -> list[Any] | None:
    """The records of a batch that decoded as a whole, or None if its columns differ in
    length or a rule across fields fails for some record (which the second pass tells)."""
    arguments: list[Any] = []
    lengths = set()
    for name in spec.fields:
        value = getattr(batch, name)
        if name not in spec.columns or value is None:
            # Shared by every record; an absent optional column is null for every record.
            arguments.append(itertools.repeat(value))
        else:
            arguments.append(value)
            lengths.add(len(value))
    if len(lengths) != 1:
        return None
    try:
        # Not strict: the shared values repeat without end.
        return [spec.record(*row) for row in zip(*arguments, strict=False)]
    except ValueError:
        return None


def _columns_are_arrays(spec: BatchOf, envelope: Any) -> bool:
    """Whether every column is an array, or left out or null (only an optional one may be:
    a required column that is null is the batch's error)."""
    return all(
        memoryview(getattr(envelope, name))[:1] in (b"[", b"", b"n") for name in spec.columns
    )


def _value_by_value(spec: BatchOf, envelope: Any) -> list[Any]:
    """The outcome of each record of a batch whose columns are raw JSON: a column that
    decodes as a whole is used as it is, the others are decoded value by value."""
    values: dict[str, Any] = {}
    errors: dict[int, DecodeError] = {}
    lengths: dict[str, int] = {}
    for name in spec.columns:
        raw_column = getattr(envelope, name)
        if name in spec.optional and (len(raw_column) == 0 or bytes(raw_column) == b"null"):
            # Left out: every record's value is null.
            values[name] = itertools.repeat(None)
            continue
        column = _decoded(spec.column_decoders[name], raw_column)
        if isinstance(column, DecodeError):
            parts = _decoded(_VALUES, raw_column)
            if isinstance(parts, DecodeError):
                return [DecodeError(name, column.reason)]
            column = [_value(spec, name, index, part, errors) for index, part in enumerate(parts)]
        if not column:
            # The wording msgspec gives when the whole batch is decoded at once.
            return [DecodeError(name, "Expected `array` of length >= 1")]
        values[name] = column
        lengths[name] = len(column)
    count = lengths[spec.columns[0]]
    for name, length in lengths.items():
        if length != count:
            return [DecodeError(name, f"has {length} values for {count} records")]
    shared = {"schema_version": envelope.schema_version, spec.owner: getattr(envelope, spec.owner)}
    columns = [
        itertools.repeat(shared[name]) if name in shared else values[name] for name in spec.fields
    ]
    outcomes: list[Any] = []
    for index, row in enumerate(zip(*columns, strict=False)):
        if index in errors:
            outcomes.append(errors[index])
            continue
        try:
            outcomes.append(spec.record(*row))
        except ValueError as error:
            outcomes.append(msgspec.structs.replace(_explain(str(error)), index=index))
    return outcomes


def _value(
    spec: BatchOf, name: str, index: int, part: msgspec.Raw, errors: dict[int, DecodeError]
) -> Any:
    """One value of a column; a bad one is booked in ``errors`` (the first per record) and
    is None here."""
    value = _decoded(spec.value_decoders[name], part)
    if isinstance(value, DecodeError):
        field = name if value.field == WHOLE_MESSAGE else _join(name, value.field)
        errors.setdefault(index, DecodeError(field, value.reason, index))
        return None
    return value


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
    if not path:
        return field
    return f"{path}{field}" if field.startswith("[") else f"{path}.{field}"
