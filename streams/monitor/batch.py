"""A columnar batch of one model's records: what a ``Monitor`` takes.

The worker groups the records it reads by model (predictions and labels are keyed by
model_id, feature writes are routed to each model that monitors their feature) and builds
one ``Batch`` per model with ``Batch.from_records``; the wire's batch messages will build
the same columns. Records keep their arrival order: ``kind`` and ``at_ms`` have one entry
per record, and the prediction columns one entry per prediction, in the order of
``prediction_index``.

>>> from schemas.contracts import FeatureSeen, GroundTruth, Prediction, Score
>>> made = Prediction(schema_version=1, request_id="r1", model_id="m", model_version="v1",
...     role="live", entity_id="u1", predicted_at=1_000, output=Score(score=0.25),
...     features={"age": FeatureSeen(41.0, 900)}, latency_ms=1.0)
>>> truth = GroundTruth(schema_version=1, model_id="m", label=1, label_at=5_000,
...     request_id="r1")
>>> batch = Batch.from_records("m", [made, truth], numeric=("age",))
>>> len(batch), batch.kind.tolist(), batch.at_ms.tolist()
(2, [0, 1], [1000, 5000])
>>> batch.score.tolist(), batch.values["age"].tolist(), batch.written_at["age"].tolist()
([0.25], [41.0], [900])
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar, overload

import numpy as np
import numpy.typing as npt

from detectors.leaks.events import WriteColumns, request_hash, request_hashes, write_columns
from schemas.contracts import FeatureSeen, FeatureWrite, GroundTruth, Prediction, Score

__all__ = ["KIND_LABEL", "KIND_PREDICTION", "KIND_WRITE", "NO_WRITES", "ROLES", "Batch", "Record"]

Record = Prediction | GroundTruth | FeatureWrite
KIND_PREDICTION, KIND_LABEL, KIND_WRITE = 0, 1, 2
# A prediction's role, as the code in ``Batch.role``.
ROLES = ("live", "fallback", "shadow")
_ROLE_CODES = {role: code for code, role in enumerate(ROLES)}
# The columns of no write (``Batch.writes`` of a batch without any), read and never
# changed: a detector given them reads nothing.
NO_WRITES = write_columns(())
# ``written_at`` of a feature a prediction did not carry.
MISSING_MS = np.iinfo(np.int64).min

_T = TypeVar("_T")


class _cached(Generic[_T]):
    """``functools.cached_property`` without its lock: Python 3.11's takes an RLock on
    each first read, a microsecond of the few a batch of one record costs to build and
    read. A batch is built and read by one thread, so the lock guards nothing."""

    def __init__(self, build: Callable[[Batch], _T]) -> None:
        self.build = build
        self.name = build.__name__
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, batch: None, owner: type[Batch]) -> _cached[_T]: ...
    @overload
    def __get__(self, batch: Batch, owner: type[Batch]) -> _T: ...
    def __get__(self, batch: Batch | None, owner: type[Batch]) -> _cached[_T] | _T:
        if batch is None:
            return self
        # The instance's dict shadows this non-data descriptor from now on.
        value = batch.__dict__[self.name] = self.build(batch)
        return value


class Batch:
    """One model's records, in arrival order, with numpy columns per field and feature.

    Per record: ``kind`` (``KIND_PREDICTION``, ``KIND_LABEL``, ``KIND_WRITE``) and
    ``at_ms`` (``predicted_at``, ``label_at`` or ``written_at``). Per prediction (in
    arrival order; ``prediction_index`` is each one's position in the batch): ``role``
    (index in ``ROLES``), ``score`` (NaN unless the output is a ``Score``), and per
    feature the value (``values``: float64 with NaN for a missing or non-numeric value for
    the ``numeric`` features, else an object array with None) and ``written_at`` (int64,
    ``MISSING_MS`` when the prediction did not carry the feature). ``records`` are the
    decoded records themselves, for the parts of the monitor that join on identifiers.
    Columns are built when first read, so a batch of one record that needs none costs
    nothing more than its tuple.
    """

    def __init__(self, model_id: str, records: tuple[Record, ...], numeric: frozenset[str]):
        self.model_id = model_id
        self.records = records
        self.numeric = numeric

    def __len__(self) -> int:
        return len(self.records)

    @classmethod
    def from_records(
        cls, model_id: str, records: Iterable[Record], numeric: Iterable[str] = ()
    ) -> Batch:
        """The batch of ``records``, all about ``model_id``; ``numeric`` names the features
        whose values are numbers (the others are kept as objects)."""
        return cls(model_id, tuple(records), frozenset(numeric))

    @_cached
    def kind(self) -> npt.NDArray[np.int8]:
        return np.fromiter(
            (
                KIND_PREDICTION
                if isinstance(r, Prediction)
                else KIND_LABEL
                if isinstance(r, GroundTruth)
                else KIND_WRITE
                for r in self.records
            ),
            np.int8,
            len(self.records),
        )

    @_cached
    def at_ms(self) -> npt.NDArray[np.int64]:
        return np.fromiter(
            (
                r.predicted_at
                if isinstance(r, Prediction)
                else r.label_at
                if isinstance(r, GroundTruth)
                else r.written_at
                for r in self.records
            ),
            np.int64,
            len(self.records),
        )

    @_cached
    def prediction_index(self) -> Sequence[int]:
        records = self.records
        if len(self.predictions) == len(records):
            return range(len(records))
        # In C-level passes: the monitor reads it for every batch.
        return list(
            itertools.compress(
                itertools.count(), map(isinstance, records, itertools.repeat(Prediction))
            )
        )

    @_cached
    def writes(self) -> WriteColumns:
        """The batch's feature writes as columns (``write_columns``: each field read in a
        C-level pass, entity hashes from the kept ones), each at its position in the
        batch."""
        records = self.records
        if len(records) == 1:
            # Most batches of one record: without the passes.
            return (
                write_columns(records, (0,)) if isinstance(records[0], FeatureWrite) else NO_WRITES
            )
        mask = list(map(isinstance, records, itertools.repeat(FeatureWrite)))
        if True not in mask:
            return NO_WRITES
        positions = list(itertools.compress(itertools.count(), mask))
        return write_columns(list(itertools.compress(records, mask)), positions)

    @_cached
    def predictions(self) -> list[Prediction]:
        """The batch's predictions, in arrival order."""
        return [r for r in self.records if isinstance(r, Prediction)]

    @_cached
    def request_hashes(self) -> list[int]:
        """Each prediction's ``request_hash``, in one pass: the label join and the leak
        watch key requests by it, and take it from here instead of hashing each id."""
        predictions = self.predictions
        if len(predictions) > 1:
            return request_hashes(p.request_id for p in predictions)
        # None or one, as in most batches of one record: without the pass's generator.
        return [request_hash(p.request_id) for p in predictions]

    @_cached
    def role(self) -> npt.NDArray[np.int8]:
        predictions = self.predictions
        return np.fromiter((_ROLE_CODES[p.role] for p in predictions), np.int8, len(predictions))

    @_cached
    def score(self) -> npt.NDArray[np.float64]:
        predictions = self.predictions
        return np.fromiter(
            (p.output.score if isinstance(p.output, Score) else math.nan for p in predictions),
            np.float64,
            len(predictions),
        )

    @_cached
    def values(self) -> Mapping[str, npt.NDArray[Any]]:
        values: dict[str, npt.NDArray[Any]] = {}
        for name, seen in self._seen.items():
            if name in self.numeric:
                values[name] = np.fromiter(
                    (math.nan if s is None else _number(s.value) for s in seen),
                    np.float64,
                    len(seen),
                )
            else:
                column = np.empty(len(seen), dtype=object)
                column[:] = [None if s is None else s.value for s in seen]
                values[name] = column
        return values

    @_cached
    def written_at(self) -> Mapping[str, npt.NDArray[np.int64]]:
        return {
            name: np.fromiter(
                (MISSING_MS if s is None else s.written_at for s in seen), np.int64, len(seen)
            )
            for name, seen in self._seen.items()
        }

    @_cached
    def served_features(self) -> tuple[str, ...] | None:
        """The features every prediction serves, in the order each lists them, when they
        all list the same ones in the same order (nearly always); None otherwise. Read in
        C-level passes, without a step per prediction."""
        carried = list(map(get_features, self.predictions))
        try:
            names = tuple(carried[0]) if carried else ()
            return names if all(map(names.__eq__, map(tuple, carried))) else None
        except TypeError:  # features that are not a mapping's keys
            return None

    @_cached
    def _seen(self) -> dict[str, list[FeatureSeen | None]]:
        predictions = self.predictions
        names = sorted({name for p in predictions for name in p.features})
        return {name: [p.features.get(name) for p in predictions] for name in names}


# Record fields, read over many records at C speed (``map``) by the monitor's parts
# (a write's, ``get_entity_id`` and ``get_written_at``, are the leak events' own).
get_features = operator.attrgetter("features")
get_role = operator.attrgetter("role")
get_predicted_at = operator.attrgetter("predicted_at")


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)
