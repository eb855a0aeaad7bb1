"""The events the leak detectors read: feature writes, labels, and feature values served.

Timestamps are plain numbers in one unit for the whole stream (the wire contracts use
milliseconds since the Unix epoch, and so do the detectors' defaults). The records are
built by trusted code from decoded messages, but ``update()`` still gets anything at all,
so each ``checked_*`` function returns the record when it is well-formed and ``None``
otherwise, without raising.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import numbers
import sys
from collections.abc import Iterable, Sequence
from typing import Any

Scalar = bool | int | float | str | None
EntityId = str | int

# A larger int timestamp does not convert to float: the detectors' arithmetic would raise.
_LARGEST_INT = int(sys.float_info.max)
# Entity hashes made, by id: an entity's events reach several detectors of several models,
# batch after batch. Emptied when it holds this many (strs and ints: no garbage collection).
_HASHES_KEPT = 1 << 16
_hashes: dict[EntityId, int] = {}


@dataclasses.dataclass(frozen=True, slots=True)
class FeatureWrite:
    """One write to the feature store.

    Parameters
    ----------
    entity_id
        The entity the value belongs to, e.g. a user id.
    feature
        The feature's name.
    value
        The value written; ``None`` (or NaN) means the feature was nulled.
    event_at
        When the fact the value describes happened: what a point-in-time training join uses.
    written_at
        When the value landed in the store: from then on serving can read it.
    """

    entity_id: EntityId
    feature: str
    value: Scalar
    event_at: float
    written_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class Label:
    """The ground truth for one entity: a binary class and when the outcome happened.

    Parameters
    ----------
    entity_id
        The entity the outcome belongs to.
    label
        The class, 0 or 1 (``False``/``True`` are accepted).
    label_at
        When the outcome happened, e.g. the moment the user cancelled.
    """

    entity_id: EntityId
    label: int
    label_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class ServedFeature:
    """One feature value a prediction used, as the serving fleet logged it.

    Parameters
    ----------
    entity_id
        The entity the prediction was made for.
    feature
        The feature's name.
    value
        The value serving used.
    written_at
        When that value had been written to the store, as serving saw it.
    predicted_at
        When the prediction was made.
    """

    entity_id: EntityId
    feature: str
    value: Scalar
    written_at: float
    predicted_at: float


def finite(value: Any) -> bool:
    """Whether ``value`` is a real number a float holds finitely (bools are not timestamps)."""
    # Exact types first: the abstract numbers.Real check costs a microsecond per call.
    if type(value) is float:
        return math.isfinite(value)
    if type(value) is int:
        return -_LARGEST_INT <= value <= _LARGEST_INT
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # e.g. a Fraction beyond the largest float
        return False


def all_finite(values: Sequence[Any]) -> bool:
    """Whether each of ``values`` is ``finite``; a prediction's write times, read at once."""
    kinds = set(map(type, values))
    # Exact floats sum to a finite number only if each is finite (an overflow of the sum
    # only sends them one by one); exact ints are within the floats if the extremes are.
    if kinds <= {float} and math.isfinite(sum(values)):
        return True
    if kinds == {int} and min(values) >= -_LARGEST_INT and max(values) <= _LARGEST_INT:
        return True
    return all(map(finite, values))


def _identity_ok(entity_id: Any, feature: str | None = None) -> bool:
    # Exact types first (nearly every event): isinstance of a union costs more per call.
    kind = type(entity_id)
    entity_ok = kind is str or kind is int
    if not entity_ok:
        entity_ok = isinstance(entity_id, str | int) and not isinstance(entity_id, bool)
    if feature is None or not entity_ok:
        return entity_ok
    return (type(feature) is str or isinstance(feature, str)) and feature != ""


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class _CheckedWrite(FeatureWrite):
    """A :class:`FeatureWrite` ``write_event`` found well-formed: frozen, it stays so, and
    ``checked_write`` takes it without checking it again."""


def entity_hash(entity_id: EntityId) -> int:
    """A 64-bit hash of an entity id, the same in every process (unlike ``hash``)."""
    kind = type(entity_id)
    # Exact types only: True would find 1's hash.
    if kind is not str and kind is not int:
        return _entity_hash(entity_id)
    found = _hashes.get(entity_id)
    if found is None:
        if len(_hashes) >= _HASHES_KEPT:
            _hashes.clear()
        found = _hashes[entity_id] = _entity_hash(entity_id)
    return found


def _entity_hash(entity_id: EntityId) -> int:
    return hash64(b"i" if isinstance(entity_id, int) else b"s", str(entity_id))


def hash64(tag: bytes, text: str) -> int:
    """A 64-bit hash, the same in every process (unlike ``hash``)."""
    data = tag + text.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def hashes64(tag: bytes, texts: Iterable[str]) -> list[int]:
    """``hash64`` of each text, in one pass: its expression inline, without the Python
    function call per text that is up to two fifths of ``hash64``'s cost (BLAKE2b has no
    numpy form, and its values are in checkpoints and samples, so it stays)."""
    blake2b, from_bytes = hashlib.blake2b, int.from_bytes
    return [
        from_bytes(
            blake2b(tag + text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little"
        )
        for text in texts
    ]


def request_hash(request_id: str) -> int:
    """A request id's 64-bit hash, the same in every process: the label join's held
    predictions and the leak watch's request map key requests by it."""
    return hash64(b"r", request_id)


def request_hashes(request_ids: Iterable[str]) -> list[int]:
    """``request_hash`` of each request id, in one pass: a batch's, once for the label
    join and the leak watch."""
    return hashes64(b"r", request_ids)


def write_event(
    entity_id: Any, feature: Any, value: Any, event_at: Any, written_at: Any
) -> FeatureWrite:
    """The :class:`FeatureWrite` of these fields, marked well-formed when it is: a caller
    that hands one write to several detectors has it checked once (a malformed one is
    handed on unmarked, for each detector to reject and count)."""
    if _identity_ok(entity_id, feature) and finite(event_at) and finite(written_at):
        return _CheckedWrite(entity_id, feature, value, event_at, written_at)
    return FeatureWrite(entity_id, feature, value, event_at, written_at)


def checked_write(x: Any) -> FeatureWrite | None:
    """``x`` if it is a well-formed :class:`FeatureWrite`, else ``None``."""
    if type(x) is _CheckedWrite:
        return x
    if (
        isinstance(x, FeatureWrite)
        and _identity_ok(x.entity_id, x.feature)
        and finite(x.event_at)
        and finite(x.written_at)
    ):
        return x
    return None


def checked_label(x: Any) -> Label | None:
    """``x`` if it is a well-formed :class:`Label` with a class of 0 or 1, else ``None``."""
    if (
        isinstance(x, Label)
        and _identity_ok(x.entity_id)
        and isinstance(x.label, numbers.Real)
        and x.label in (0, 1)
        and finite(x.label_at)
    ):
        return x
    return None


def checked_served(x: Any) -> ServedFeature | None:
    """``x`` if it is a well-formed :class:`ServedFeature`, else ``None``."""
    if (
        isinstance(x, ServedFeature)
        and _identity_ok(x.entity_id, x.feature)
        and finite(x.written_at)
        and finite(x.predicted_at)
    ):
        return x
    return None


def is_null(value: Any, sentinels: tuple[Scalar, ...]) -> bool:
    """Whether a written value means "missing": ``None``, NaN, or one of ``sentinels``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    for sentinel in sentinels:
        # A bool sentinel must not match 0/1 (True == 1 in Python), hence the bool check.
        if isinstance(value, bool) == isinstance(sentinel, bool) and value == sentinel:
            return True
    return False
