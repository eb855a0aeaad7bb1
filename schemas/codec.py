"""Bytes to records and back; untrusted bytes become a record or a ``DecodeError``, never raise.

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

import re
from typing import Any, TypeVar

import msgspec

from schemas.contracts import (
    SCHEMA_VERSION,
    ControlCommand,
    DeadLetter,
    DecodeError,
    FeatureWrite,
    GroundTruth,
    Prediction,
)

__all__ = [
    "WHOLE_MESSAGE",
    "DecodeError",
    "dead_letter",
    "decode",
    "decode_control_command",
    "decode_dead_letter",
    "decode_feature_write",
    "decode_ground_truth",
    "decode_prediction",
    "encode",
]

T = TypeVar("T", bound=msgspec.Struct)

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
    return DeadLetter(
        schema_version=SCHEMA_VERSION,
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        raw=raw,
        error=error,
        seen_at=seen_at,
        key=key,
    )


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
