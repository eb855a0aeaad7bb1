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
import operator
import sys
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, cast

import numpy as np

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


def _entity_ok(entity_id: Any) -> bool:
    """Whether ``entity_id`` is a str or an int (not a bool)."""
    # Exact types first (nearly every event): isinstance of a union costs more per call.
    kind = type(entity_id)
    if kind is str or kind is int:
        return True
    return isinstance(entity_id, str | int) and not isinstance(entity_id, bool)


def _feature_ok(feature: Any) -> bool:
    """Whether ``feature`` is a non-empty str (None is malformed: a detector keys on it)."""
    return (type(feature) is str or isinstance(feature, str)) and feature != ""


def _identity_ok(entity_id: Any, feature: Any) -> bool:
    return _entity_ok(entity_id) and _feature_ok(feature)


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


def entity_hashes(entity_ids: Sequence[EntityId]) -> list[int]:
    """``entity_hash`` of each of ``entity_ids``, each a str or an int exactly (a bool
    would find its int's): the kept ones in a C-level pass, the others one by one."""
    found = list(map(_hashes.get, entity_ids))
    if None in found:
        return [entity_hash(e) if h is None else h for e, h in zip(entity_ids, found, strict=True)]
    return cast(list[int], found)


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


class WriteColumns(NamedTuple):
    """Writes as columns, an entry per write in order (``write_columns``): what the leak
    detectors' column entries read, without an object per write.

    Attributes
    ----------
    positions
        Each write's position in its batch (intp).
    entity_ids
        The entity ids, as given.
    entities
        Each entity id's ``entity_hash`` (uint64), malformed ids included.
    features
        The distinct features, in order of first write.
    codes
        Each write's feature, as its index in ``features`` (intp).
    values
        The values written, as given.
    event_at, written_at
        The times as floats (float64), NaN where a time is not a real number.
    lags
        ``float(written_at - event_at)`` of each well-formed write (float64; anything
        for the others).
    ok
        Whether each write is well-formed (``checked_write``'s checks: an entity id of
        str or int, a feature of a non-empty str, ``finite`` times).
    """

    positions: np.ndarray
    entity_ids: list[Any]
    entities: np.ndarray
    features: tuple[Any, ...]
    codes: np.ndarray
    values: list[Any]
    event_at: np.ndarray
    written_at: np.ndarray
    lags: np.ndarray
    ok: np.ndarray

    def take(self, rows: slice | np.ndarray) -> WriteColumns:
        """The writes ``rows`` (a slice, or indices in order)."""
        if isinstance(rows, slice):
            entity_ids, values = self.entity_ids[rows], self.values[rows]
        else:
            picked = rows.tolist()
            entity_ids = [self.entity_ids[w] for w in picked]
            values = [self.values[w] for w in picked]
        return WriteColumns(
            self.positions[rows],
            entity_ids,
            self.entities[rows],
            self.features,
            self.codes[rows],
            values,
            self.event_at[rows],
            self.written_at[rows],
            self.lags[rows],
            self.ok[rows],
        )

    def event(self, w: int) -> FeatureWrite | None:
        """Write ``w`` as a :class:`FeatureWrite` of its columns (its times the floats
        the detectors read), None if it is malformed (every detector rejects it)."""
        # ``item``: Python numbers at once, without a numpy scalar each.
        if not self.ok.item(w):
            return None
        return FeatureWrite(
            self.entity_ids[w],
            self.features[self.codes.item(w)],
            self.values[w],
            self.event_at.item(w),
            self.written_at.item(w),
        )


def interleaved(writes: WriteColumns, others: Sequence[Any], places: np.ndarray) -> list[Any]:
    """``writes`` (each ``WriteColumns.event``) and ``others`` as one list of events,
    ``others[j]`` at ``places[j]`` (increasing): what a column entry of a few events
    reads one by one."""
    if not len(others):
        return [writes.event(w) for w in range(len(writes.ok))]
    if not len(writes.ok):
        return list(others)
    events: list[Any] = []
    w = 0
    for j, place in enumerate([*places.tolist(), len(writes.ok) + len(others)]):
        while len(events) < place:
            events.append(writes.event(w))
            w += 1
        if j < len(others):
            events.append(others[j])
    return events


# A write's fields, read over many records at C speed (``map``); the monitor's parts read
# records' with them too.
get_entity_id = operator.attrgetter("entity_id")
get_feature = operator.attrgetter("feature")
get_value = operator.attrgetter("value")
get_event_at = operator.attrgetter("event_at")
get_written_at = operator.attrgetter("written_at")
# Ints below this in size are floats exactly.
_EXACT = 1 << 53
_STR_OR_INT, _INT, _FLOAT = frozenset({str, int}), frozenset({int}), frozenset({float})
# A label's classes' usual types, real numbers all.
_LABEL_TYPES = frozenset({bool, int, float})
# Labels whose columns ``label_columns`` checks at once: of these exact types.
_LABEL = frozenset({Label})
_CLASS_TYPES = frozenset({int, bool})
_CLASSES = frozenset({0, 1})
_TIME_TYPES = frozenset({float, int})
_get_label_at = operator.attrgetter("label_at")
_get_class = operator.attrgetter("label")


def write_columns(writes: Sequence[Any], positions: Sequence[int] | None = None) -> WriteColumns:
    """The ``WriteColumns`` of ``writes`` (anything with a write's five fields: a
    :class:`FeatureWrite`, a decoded record), at ``positions`` in their batch (default:
    ``0, 1, ...``). Each field is read over all writes in a C-level pass; entity hashes
    come from the kept ones (``entity_hash``); times that are all ints or all floats are
    converted at once, others (malformed ones) one by one."""
    n = len(writes)
    if n == 1:
        # Most batches of one record: each field as ``checked_write`` reads it, without
        # the passes (whose fixed cost is most of such a batch's).
        return _one_write(writes[0], 0 if positions is None else positions[0])
    entity_ids = list(map(get_entity_id, writes))
    features = list(map(get_feature, writes))
    event_at = list(map(get_event_at, writes))
    written_at = list(map(get_written_at, writes))
    names = dict.fromkeys(features)
    if len(names) > 1:
        codes_of = {name: code for code, name in enumerate(names)}
        codes = np.fromiter(map(codes_of.__getitem__, features), np.intp, n)
    else:
        codes = np.zeros(n, np.intp)
    if all(map(_feature_ok, names)):
        ok = np.empty(n, bool)
        ok.fill(True)
    else:
        ok = np.array(list(map(_feature_ok, names)), bool)[codes]
    if set(map(type, entity_ids)) <= _STR_OR_INT:
        found = entity_hashes(entity_ids)
    else:
        found = list(map(entity_hash, entity_ids))
        ok &= np.fromiter(map(_entity_ok, entity_ids), bool, n)
    times = set(map(type, event_at)) | set(map(type, written_at))
    # Ints a float holds exactly: their difference rounds once, as ``float(w - e)``.
    exact = times == _INT and min(min(event_at), min(written_at)) > -_EXACT
    exact = exact and max(max(event_at), max(written_at)) < _EXACT
    if exact or times <= _FLOAT:
        firsts, seconds = np.array(event_at, np.float64), np.array(written_at, np.float64)
        lags = seconds - firsts
        if not exact:
            ok &= np.isfinite(firsts) & np.isfinite(seconds)
    else:
        # Other or mixed times (malformed ones among them): one by one, as
        # ``checked_write`` and the detectors' arithmetic take them.
        timed = np.fromiter(map(_times_ok, event_at, written_at), bool, n)
        ok &= timed
        firsts = np.fromiter(map(_as_float, event_at), np.float64, n)
        seconds = np.fromiter(map(_as_float, written_at), np.float64, n)
        lags = np.fromiter(
            (
                float(w - e) if t else math.nan
                for e, w, t in zip(event_at, written_at, timed, strict=True)
            ),
            np.float64,
            n,
        )
    return WriteColumns(
        np.arange(n) if positions is None else np.array(positions, np.intp),
        entity_ids,
        np.fromiter(found, np.uint64, n),
        tuple(names),
        codes,
        list(map(get_value, writes)),
        firsts,
        seconds,
        lags,
        ok,
    )


def _one_write(x: Any, position: int) -> WriteColumns:
    """``write_columns`` of the write ``x`` alone, at ``position``."""
    entity_id, feature, event_at, written_at = x.entity_id, x.feature, x.event_at, x.written_at
    ok = _identity_ok(entity_id, feature) and _times_ok(event_at, written_at)
    return WriteColumns(
        np.array([position], np.intp),
        [entity_id],
        np.array([entity_hash(entity_id)], np.uint64),
        (feature,),
        np.zeros(1, np.intp),
        [x.value],
        np.array([_as_float(event_at)]),
        np.array([_as_float(written_at)]),
        np.array([float(written_at - event_at) if ok else math.nan]),
        np.array([ok]),
    )


def _times_ok(event_at: Any, written_at: Any) -> bool:
    return finite(event_at) and finite(written_at)


def _as_float(value: Any) -> float:
    """``float(value)`` of a real number (a stream time compares it so), else NaN."""
    # Exact types first: the abstract numbers.Real check costs more than the conversion.
    kind = type(value)
    if kind is float:
        return value
    if kind is int or isinstance(value, numbers.Real):
        try:
            return float(value)
        except OverflowError:
            return math.nan
    return math.nan


def checked_write(x: Any) -> FeatureWrite | None:
    """``x`` if it is a well-formed :class:`FeatureWrite`, else ``None``."""
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
        and _entity_ok(x.entity_id)
        # Exact types first (nearly every label): the abstract numbers.Real check costs
        # more than the rest of the checks.
        and (type(x.label) in _LABEL_TYPES or isinstance(x.label, numbers.Real))
        and x.label in (0, 1)
        and finite(x.label_at)
    ):
        return x
    return None


def label_columns(others: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``others`` as labels, in columns: entity hash, ``label_at`` and class; -1 (and 0,
    0.0) where one is not a well-formed :class:`Label` (``checked_label``)."""
    # Nearly every batch: labels of plain types, all well-formed, checked a column at a
    # time rather than a label at a time.
    if set(map(type, others)) == _LABEL:
        ids = list(map(get_entity_id, others))
        times = list(map(_get_label_at, others))
        labels = list(map(_get_class, others))
        if (
            set(map(type, ids)) <= _STR_OR_INT
            and set(map(type, labels)) <= _CLASS_TYPES
            and set(labels) <= _CLASSES
            and set(map(type, times)) <= _TIME_TYPES
            and all_finite(times)
        ):
            return (
                np.array(entity_hashes(ids), np.uint64),
                np.array(times, np.float64),
                np.array(labels, np.int8),
            )
    keys, label_at, classes = [], [], []
    for x in others:
        label = checked_label(x)
        if label is None:
            keys.append(0)
            label_at.append(0.0)
            classes.append(-1)
        else:
            keys.append(entity_hash(label.entity_id))
            label_at.append(float(label.label_at))
            classes.append(int(label.label))
    return np.array(keys, np.uint64), np.array(label_at, np.float64), np.array(classes, np.int8)


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
