"""Values from the future: a prediction used a value written after the prediction was made."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from river import base

from detectors._batch import TupleEvents
from detectors._compiled import compiled
from detectors.leaks._arguments import require_counts, require_durations
from detectors.leaks.events import (
    ServedFeature,
    _entity_ok,
    _feature_ok,
    _identity_ok,
    checked_served,
)


@dataclasses.dataclass(frozen=True)
class FutureValueCount:
    """How many served values of one feature there were, and how many came from the future."""

    feature: str
    served: int
    future: int


class FutureValues(TupleEvents, base.Base):
    """Counts served feature values whose ``written_at`` is later than ``predicted_at``.

    Serving cannot read a value before it is written, so each one means clock skew between
    the feature store and the serving node, or a serving path that reads from somewhere it
    should not (e.g. a training snapshot). Either way the model's inputs are not what
    production can reproduce, so one is enough: ``critical`` turns on at the first and
    stays on, for the health policy to act at once without a statistical test.

    ``update_many`` takes a batch as columns and gives exactly what ``update`` gives for
    each row's ``ServedFeature`` one by one; ``future_indices`` says which rows of the
    batch were counted as values from the future.

    Parameters
    ----------
    skew_tolerance
        How much later than ``predicted_at`` a value may have been written before it
        counts, in timestamp units; 0 means any later write counts.
    max_features
        Features counted one by one; values of further features still count in the total.

    Examples
    --------
    >>> from detectors import FutureValues
    >>> from detectors.leaks import ServedFeature
    >>> detector = FutureValues(skew_tolerance=100.0)
    >>> detector.update(ServedFeature("u1", "plan", "pro", written_at=900.0, predicted_at=1_000.0))
    >>> detector.update(ServedFeature("u1", "age", 31, written_at=1_050.0, predicted_at=1_000.0))
    >>> detector.critical
    False
    >>> detector.update(ServedFeature("u2", "age", 40, written_at=5_000.0, predicted_at=1_000.0))
    >>> detector.critical, detector.future_values, detector.max_skew
    (True, 1, 4000.0)
    >>> detector.counts["age"]
    FutureValueCount(feature='age', served=2, future=1)

    A batch of the same rows, as columns of timestamps in milliseconds:

    >>> import numpy as np
    >>> batched = FutureValues(skew_tolerance=100.0)
    >>> batched.update_many(
    ...     entity_ids=["u1", "u1", "u2"],
    ...     features=["plan", "age", "age"],
    ...     values=["pro", 31, 40],
    ...     written_at=np.array([900.0, 1_050.0, 5_000.0]),
    ...     predicted_at=np.array([1_000.0, 1_000.0, 1_000.0]),
    ... )
    >>> batched.future_indices.tolist(), batched.max_skew, batched.counts == detector.counts
    ([2], 4000.0, True)
    """

    # The per-feature dicts in slots, the numbers in the attribute dict, which the garbage
    # collector then stops tracking (``detectors._batch.attribute_state``).
    __slots__ = ("_futures", "_served")

    def __init__(self, skew_tolerance: float = 0.0, max_features: int = 1_000) -> None:
        require_durations(skew_tolerance=skew_tolerance)
        require_counts(max_features=max_features)
        self.skew_tolerance = skew_tolerance
        self.max_features = max_features
        self._reset()

    def _reset(self) -> None:
        # Two dicts of ints (same keys, same order) rather than one of [served, future]
        # lists: a dict of atomics is one the garbage collector does not track.
        self._served: dict[str, int] = {}
        self._futures: dict[str, int] = {}
        self._future = 0
        self._max_skew = 0.0
        self._last: ServedFeature | None = None
        self._rejected = 0
        self._batch_events = ()

    def update(self, x: Any) -> None:
        """Reads one :class:`ServedFeature`; anything else is counted in ``rejected``."""
        if self._batch_events:
            self._batch_events = ()
        served = checked_served(x)
        if served is None:
            self._rejected += 1
            return
        skew = served.written_at - served.predicted_at
        future = skew > self.skew_tolerance
        self._count(served.feature, 1, int(future))
        if future:
            self._future += 1
            self._max_skew = max(self._max_skew, float(skew))
            self._last = served
            self._add_event((0,))

    def update_many(
        self,
        entity_ids: Sequence[Any],
        features: Sequence[Any],
        values: Sequence[Any],
        written_at: Any,
        predicted_at: Any,
    ) -> None:
        """Reads a batch of served values, one row per index of the equally long columns.

        Row ``i`` counts as ``update(ServedFeature(entity_ids[i], features[i], values[i],
        written_at[i], predicted_at[i]))`` would; ``future_indices`` lists the rows counted
        as values from the future. Timestamps as numeric numpy arrays are compared at
        once; other columns (lists) go row by row. Columns of different lengths raise
        ValueError: that is a bug of the caller, not data.
        """
        columns = (entity_ids, features, values, written_at, predicted_at)
        lengths = {len(column) for column in columns}
        if len(lengths) > 1:
            raise ValueError(f"update_many needs columns of one length, got {sorted(lengths)}")
        numeric = all(
            isinstance(t, np.ndarray) and t.dtype.kind in "iuf" for t in (written_at, predicted_at)
        )
        if not numeric or self._small(len(features)):
            self._update_each(ServedFeature(*row) for row in zip(*columns, strict=True))
            return
        self._batch_events = ()
        # Where a row is rejected its skew is not used; inf - inf there must not warn.
        with np.errstate(invalid="ignore", over="ignore"):
            skews = written_at - predicted_at
        valid = _identities_ok(entity_ids, features) & np.isfinite(written_at)
        valid &= np.isfinite(predicted_at)
        future = valid & (skews > self.skew_tolerance)
        future_rows = np.flatnonzero(future).tolist()
        self._rejected += len(features) - int(np.count_nonzero(valid))
        for feature, served, future_count in _per_feature(features, valid, future):
            self._count(feature, served, future_count)
        if future_rows:
            last = future_rows[-1]
            self._future += len(future_rows)
            self._max_skew = max(self._max_skew, float(skews[future].max()))
            self._last = ServedFeature(*(column[last] for column in columns))
            self._batch_events = tuple((row,) for row in future_rows)

    def update_grid(
        self,
        entity_ids: Sequence[Any],
        features: Sequence[Any],
        written_at: npt.NDArray[Any],
        predicted_at: npt.NDArray[Any],
        value_of: Callable[[int, int], Any],
    ) -> None:
        """``update_many`` of the rows of a grid: predictions that each served every one of
        the same distinct ``features``, in that order.

        Row ``i * len(features) + j`` is ``entity_ids[i]``'s prediction at
        ``predicted_at[i]`` serving ``features[j]`` written at ``written_at[i, j]``, its
        value ``value_of(i, j)`` (read for the last value from the future only); rows are
        numbered so in ``future_indices``. The grid's skews are one array subtraction and
        comparison, its rows counted per feature in one compiled pass (``_grid_counts``):
        no list of rows is built. A grid of ``SMALL_BATCH`` rows or fewer goes through
        ``update_many``'s rows. Shapes that do not fit raise ValueError.
        """
        n, width = len(entity_ids), len(features)
        if written_at.shape != (n, width) or predicted_at.shape != (n,):
            raise ValueError(
                f"update_grid needs {n} x {width} written_at and {n} predicted_at, got "
                f"{written_at.shape} and {predicted_at.shape}"
            )
        if self._small(n * width):
            rows = [(i, j) for i in range(n) for j in range(width)]
            self.update_many(
                [entity_ids[i] for i, _ in rows],
                [features[j] for _, j in rows],
                [value_of(i, j) for i, j in rows],
                written_at.ravel(),
                predicted_at.repeat(width),
            )
            return
        self._batch_events = ()
        # A row is well-formed when its entity and its feature are (``_identity_ok``).
        entity_ok = np.fromiter(map(_entity_ok, entity_ids), np.bool_, n)
        feature_ok = np.fromiter(map(_feature_ok, features), np.bool_, width)
        # Where a row is rejected its skew is not used; inf - inf there must not warn.
        with np.errstate(invalid="ignore", over="ignore"):
            skews = written_at - predicted_at[:, np.newaxis]
        # numpy's comparison with the tolerance (an int's or a float's), before the loop.
        # The loop's outputs, allocated here: an array it returned would cost more to box.
        per_feature = np.empty((3, width), np.int64)
        future_rows = np.empty(n * width, np.int64)
        counted, found = _grid_counts(
            written_at,
            predicted_at,
            skews > self.skew_tolerance,
            entity_ok,
            feature_ok,
            per_feature,
            future_rows,
        )
        order, served, futures = per_feature[:, :counted].tolist()
        future_rows = future_rows[:found]
        self._rejected += n * width - sum(served)
        count = self._count
        for j, served_j, future_j in zip(order, served, futures, strict=True):
            count(features[j], served_j, future_j)
        if future_rows.size:
            i, j = divmod(int(future_rows[-1]), width)
            self._future += int(future_rows.size)
            self._max_skew = max(self._max_skew, float(skews.ravel()[future_rows].max()))
            self._last = ServedFeature(
                entity_ids[i], features[j], value_of(i, j), written_at[i, j], predicted_at[i]
            )
            self._batch_events = tuple((row,) for row in future_rows.tolist())

    def _count(self, feature: str, served: int, future: int) -> None:
        served_before = self._served.get(feature)
        if served_before is None:
            if len(self._served) >= self.max_features:
                return
            served_before = 0
            self._futures[feature] = 0
        self._served[feature] = served_before + served
        self._futures[feature] += future

    @property
    def future_indices(self) -> npt.NDArray[np.intp]:
        """Positions in the last batch (or update) of the rows counted as from the future."""
        return np.array([event[0] for event in self._batch_events], dtype=np.intp)

    @property
    def critical(self) -> bool:
        """Whether any value came from the future. It stays on once on."""
        return self._future > 0

    @property
    def future_values(self) -> int:
        """How many served values came from the future."""
        return self._future

    @property
    def max_skew(self) -> float:
        """The largest ``written_at - predicted_at`` among them, 0.0 when there is none."""
        return self._max_skew

    @property
    def last_future_value(self) -> ServedFeature | None:
        """The latest served value from the future, as evidence."""
        return self._last

    @property
    def counts(self) -> dict[str, FutureValueCount]:
        """Served and future values per feature."""
        futures = self._futures
        return {f: FutureValueCount(f, served, futures[f]) for f, served in self._served.items()}

    @property
    def rejected(self) -> int:
        """Inputs that were not a well-formed served value."""
        return self._rejected


def _identities_ok(entity_ids: Sequence[Any], features: Sequence[Any]) -> npt.NDArray[np.bool_]:
    """Whether each row's entity id and feature name are well-formed, as ``update`` checks."""
    if all(isinstance(c, np.ndarray) and c.dtype.kind == "U" for c in (entity_ids, features)):
        return np.asarray(features) != ""
    if _all_distinct_ok(entity_ids, features):
        return np.ones(len(features), np.bool_)
    checked = (_identity_ok(e, f) for e, f in zip(entity_ids, features, strict=True))
    return np.fromiter(checked, dtype=np.bool_, count=len(features))


def _all_distinct_ok(entity_ids: Sequence[Any], features: Sequence[Any]) -> bool:
    """Whether every row is well-formed, checked once per distinct entity id and feature
    (a prediction's rows repeat its entity, and a model's its features): the check reads
    a value's type and the value alone, so each (type, value) pair is checked once (``1``
    and ``True`` are equal but not alike). False also when some value cannot be hashed."""
    try:
        entities = set(zip(map(type, entity_ids), entity_ids, strict=True))
        names = set(zip(map(type, features), features, strict=True))
    except Exception:  # a value whose hash or comparison fails: row by row, as before
        return False
    # An entity that passes makes the row's verdict its feature's.
    return all(_entity_ok(e) for _, e in entities) and all(_feature_ok(f) for _, f in names)


def _per_feature(
    features: Sequence[Any], valid: npt.NDArray[np.bool_], future: npt.NDArray[np.bool_]
) -> list[tuple[Any, int, int]]:
    """Valid and future rows per feature, the features in the order of their first valid row
    (the order in which ``update`` adds them, which decides who gets a ``max_features`` slot)."""
    if isinstance(features, np.ndarray) and features.dtype.kind == "U":
        names, first, codes = np.unique(features[valid], return_index=True, return_inverse=True)
        served = np.bincount(codes, minlength=names.size).tolist()
        futures = np.bincount(codes, minlength=names.size, weights=future[valid]).tolist()
        # names[i] keeps the np.str_ that update would get from the column.
        return [(names[i], served[i], int(futures[i])) for i in np.argsort(first).tolist()]
    rows = np.flatnonzero(valid).tolist()
    future_rows = np.flatnonzero(future).tolist()
    # Every row valid (nearly always): the features themselves, counted without a step.
    served_by_feature = (
        Counter(features) if len(rows) == len(features) else Counter(features[i] for i in rows)
    )
    future_by_feature = Counter(features[i] for i in future_rows)
    return [(f, n, future_by_feature[f]) for f, n in served_by_feature.items()]


@compiled
def _grid_counts(
    written_at: np.ndarray,
    predicted_at: np.ndarray,
    later: np.ndarray,
    entity_ok: np.ndarray,
    feature_ok: np.ndarray,
    per_feature: np.ndarray,
    future_rows: np.ndarray,
) -> tuple[int, int]:
    """``update_grid``'s rows in one pass: row ``i * width + j`` is valid when entity ``i``
    and feature ``j`` are well-formed and both timestamps are finite, and from the future
    when valid and ``later`` (its skew beyond the tolerance).

    Writes, for the features with a valid row in the order of their first one (the order
    in which ``update`` adds them), a column of ``per_feature`` each: the feature's index, its
    valid rows and its future rows; and the future rows, ascending, into
    ``future_rows``. Returns how many of each it wrote.
    """
    n, width = written_at.shape
    served = np.zeros(width, np.int64)
    futures = np.zeros(width, np.int64)
    first = np.full(width, n * width, np.int64)
    found = 0
    for i in range(n):
        if not (entity_ok[i] and np.isfinite(predicted_at[i])):
            continue
        for j in range(width):
            if not (feature_ok[j] and np.isfinite(written_at[i, j])):
                continue
            served[j] += 1
            if first[j] == n * width:
                first[j] = i * width + j
            if later[i, j]:
                futures[j] += 1
                future_rows[found] = i * width + j
                found += 1
    columns = np.flatnonzero(served)
    order = columns[np.argsort(first[columns])]
    per_feature[0, : order.size] = order
    per_feature[1, : order.size] = served[order]
    per_feature[2, : order.size] = futures[order]
    return order.size, found
