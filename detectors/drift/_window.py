"""Tumbling windows compared with a reference: the bookkeeping shared by the windowed tests.

A windowed test collects ``window_size`` valid values, evaluates once when the window is
full, then starts an empty window (tumbling, not sliding). It is therefore evaluated
``events_per_day / window_size`` times a day, and a test at level ``alpha`` raises about
``alpha`` false alarms per evaluation on a stationary stream. ``drift_detected`` is True
only on the update that completed a drifted window, like river's detectors.

The reference is either frozen (a training summary passed to the constructor) or rolling
(``reference=None``: the previous full window). Memory is bounded by the window size and,
for categories, by ``max_categories``. A frozen numeric reference given as a read-only
float64 array of finite values is held as it is, not copied: the model watch passes one.

``update_many(values)`` gives exactly what ``update`` gives one by one: it finds where the
batch completes windows, evaluates each completed window as ``update`` would, and reports
them by position in the batch (``window_ends``, ``window_statistics``, ``window_p_values``,
``window_drifts``; ``tests/detectors/batching.py`` states the convention).
"""

from __future__ import annotations

import math
import numbers
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from river import base

from detectors._batch import TupleEvents, own_attribute_dict
from detectors.drift._effect import (
    excess,
    quantile_shifts,
    share_effect,
    slow_variance,
    steady_variance,
)
from detectors.drift._statistics import FloatArray

OTHER = "__other__"

IntArray = npt.NDArray[np.intp]
# What update_many takes: a list or an array of values.
Batch = Sequence[Any] | npt.NDArray[Any]
BoolArray = npt.NDArray[np.bool_]


_FLOAT = frozenset({float})


def finite_float(x: Any) -> float | None:
    """The value as a float, or None when it is missing, non-numeric or not finite."""
    # The exact-type check first: isinstance against the numbers ABC costs a microsecond.
    if type(x) is float:
        return x if math.isfinite(x) else None
    if type(x) is np.float64:
        # What float(x) below gives, without the ABC check: a batch's elements come as these.
        value = float(x)
        return value if math.isfinite(value) else None
    if not isinstance(x, numbers.Real):
        return None
    try:
        value = float(x)
    except OverflowError:
        # An int or Fraction beyond the float range is no more usable than infinity.
        return None
    return value if math.isfinite(value) else None


def mean(values: np.ndarray) -> float:
    """``np.mean`` of a non-empty array of floats or bools: its own float64 sum and
    division, without its Python wrapper (a few microseconds a call, several a report or a fit)."""
    return float(np.add.reduce(values, dtype=np.float64) / len(values))


def finite_floats(values: Any) -> FloatArray:
    """The values as a float64 array, NaN where ``finite_float`` gives None.

    The batch counterpart of ``finite_float``: an integer or float array, or a list of
    plain floats, converts in one step; anything else (lists holding None, strings, huge
    ints) goes value by value, so that both paths treat every input alike.
    """
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        array = values.astype(np.float64)
    elif isinstance(values, list) and set(map(type, values)) <= _FLOAT:
        # A list of plain floats (a batch's scores and feature values) converts in one
        # step too: float() of each is itself.
        array = np.array(values, dtype=np.float64)
    else:
        converted = (finite_float(x) for x in values)
        return np.fromiter((math.nan if x is None else x for x in converted), np.float64)
    array[~np.isfinite(array)] = np.nan
    return array


def validate_window(window_size: int) -> None:
    if not isinstance(window_size, int) or window_size < 2:
        raise ValueError(f"window_size must be an int >= 2, got {window_size!r}")


def validate_level(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie in (0, 1), got {value!r}")


def validate_positive(name: str, value: float) -> None:
    # Written as "not > 0" so that NaN is refused too.
    if not value > 0.0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


class WindowTest(TupleEvents, base.Base):
    """What every windowed test stores and reports; subclasses implement ``update``."""

    reference: Any
    window_size: int

    def _configure_window(self, reference: Any, window_size: int) -> None:
        own_attribute_dict(self)
        validate_window(window_size)
        self.reference = reference
        self.window_size = window_size

    def _reset_results(self) -> None:
        self._statistic = math.nan
        self._p_value = math.nan
        self._effect = math.nan
        self._drift_detected = False
        self._n_windows = 0
        self._n_skipped = 0
        self._batch_events = ()

    def _record(
        self, end: int, result: tuple[float, float, bool], effect: float = math.nan
    ) -> None:
        """Keep the verdict and effect of a window that ended at position ``end`` of the
        batch (tests without an effect size give NaN)."""
        self._statistic, self._p_value, self._drift_detected = result
        self._effect = effect
        self._add_event(_event(end, *result, effect))

    def _update_each(self, values: Iterable[Any]) -> None:
        super()._update_each(values)
        self._batch_events = tuple(_event(*event) for event in self._batch_events)

    def _finish_batch(self, size: int) -> None:
        # drift_detected describes the last input only, as after update() one by one; an
        # empty batch, like no update at all, leaves it as it was.
        if size == 0:
            return
        events = self._batch_events
        self._drift_detected = bool(events and events[-1][0] == size - 1 and events[-1][3])

    @property
    def drift_detected(self) -> bool:
        """Whether the window completed by the last update drifted from the reference."""
        return self._drift_detected

    @property
    def statistic(self) -> float:
        """The statistic of the last full window (NaN before the first)."""
        return self._statistic

    @property
    def effect(self) -> float:
        """The effect size of the last full window (``detectors.drift._effect``): the
        share of the population that moved, less the reference's in-control noise."""
        return self._effect

    @property
    def n_windows(self) -> int:
        """How many windows have been compared with the reference (tests run so far)."""
        return self._n_windows

    @property
    def window_ends(self) -> IntArray:
        """Positions in the last batch of the inputs that completed a compared window."""
        return np.array([e[0] for e in self._batch_events], dtype=np.intp)

    @property
    def window_statistics(self) -> FloatArray:
        """The statistic of each window in ``window_ends``."""
        return np.array([e[1] for e in self._batch_events], dtype=np.float64)

    @property
    def window_p_values(self) -> FloatArray:
        """The p-value of each window in ``window_ends`` (NaN for tests without one)."""
        return np.array([e[2] for e in self._batch_events], dtype=np.float64)

    @property
    def window_drifts(self) -> BoolArray:
        """Whether each window in ``window_ends`` drifted from the reference."""
        return np.array([e[3] for e in self._batch_events], dtype=np.bool_)

    @property
    def window_effects(self) -> FloatArray:
        """The effect size of each window in ``window_ends``, as in ``effect``."""
        return np.array([e[4] for e in self._batch_events], dtype=np.float64)


def _event(end: float, statistic: float, p_value: float, drift: float, effect: float) -> FloatArray:
    """A window's event as ``_batch_events`` keeps it: its position in the batch, statistic,
    p-value, drift (1 or 0) and effect, in one float64 array. A tuple of arrays is one that
    the garbage collector stops tracking at its first collection, and with it the test's
    attribute dict; a tuple of tuples takes two (the inner tuples come after the outer in
    its list), so a full collection in between walks every feature's attributes."""
    return np.array([end, statistic, p_value, drift, effect], dtype=np.float64)


class PValue:
    """Adds ``p_value`` to the windowed tests that have a null distribution."""

    _p_value: float

    @property
    def p_value(self) -> float:
        """p-value of the last full window (NaN before the first)."""
        return self._p_value


class NumericWindowTest(WindowTest):
    """Tumbling window of finite floats against a frozen or rolling reference sample.

    A window's effect is read against the in-control noise of the reference's blocks and
    of the earlier windows whose effect stayed below ``min_effect``
    (``detectors.drift._effect``): traffic that wanders slowly widens the noise as it
    goes, a step does not.

    Subclasses call ``_configure(reference, window_size, min_effect)``, store their other
    arguments, call ``_reset()``, and implement ``_evaluate`` on the two sorted samples.
    """

    reference: Sequence[float] | None
    min_effect: float

    def _configure(
        self, reference: Sequence[float] | None, window_size: int, min_effect: float
    ) -> None:
        self._configure_window(reference, window_size)
        if reference is not None and _finite(reference).size < 2:
            raise ValueError("reference must hold at least 2 finite values, or be None (rolling)")
        # Written as "not in [0, 1]" so that NaN is refused too.
        if not 0.0 <= min_effect <= 1.0:
            raise ValueError(f"min_effect must lie in [0, 1], got {min_effect!r}")
        self.min_effect = min_effect

    def _reset(self) -> None:
        # Zeros, not np.empty: the unused cells are part of the state a batch must reproduce.
        self._window = np.zeros(self.window_size, dtype=np.float64)
        self._filled = 0
        # A frozen reference's finite values in their given order, sorted for each window
        # (``_sorted_reference``) rather than kept sorted beside them: a read-only float64
        # array of finite values is used as it is, so the state holds the sample once.
        # Rolling: the last full window, sorted (None before the first).
        self._reference_values: FloatArray | None = None
        # The in-control slow variation of a frozen reference, read in its given order; a
        # rolling reference is a sorted window, which has none to show.
        self._slow = slow_variance(np.zeros(0))
        if self.reference is not None:
            self._reference_values = _finite(self.reference)
            self._slow = slow_variance(self._reference_values)
        # Sum of the squared positions of the windows that were not material, and their count.
        self._steady_squares = np.zeros(self._slow.size)
        self._n_steady = 0
        self._reset_results()

    def update(self, x: Any) -> None:
        """Add one value; missing and non-finite values are counted in ``n_skipped``."""
        self._drift_detected = False
        if self._batch_events:
            self._batch_events = ()
        value = finite_float(x)
        if value is None:
            self._n_skipped += 1
            return
        self._window[self._filled] = value
        self._filled += 1
        if self._filled < self.window_size:
            return
        self._filled = 0
        self._complete(self._window, 0)

    def update_many(self, values: Batch) -> None:
        """Add a batch of values: the same results and state as ``update`` one by one.

        The windows completed in the batch are evaluated in turn; ``window_ends`` and the
        other ``window_*`` properties give each one's position in the batch and verdict.
        """
        if self._small(len(values)):
            # Nearly every batch of a feature completes no window: its finite values go
            # into the window at once, without ``update``'s step each (a model's batch of
            # a few predictions feeds each of its features' tests a few values).
            kept = [value for value in map(finite_float, values) if value is not None]
            filled = self._filled
            if not len(values) or filled + len(kept) >= self.window_size:
                self._update_each(values)
                return
            self._window[filled : filled + len(kept)] = kept
            self._filled = filled + len(kept)
            self._n_skipped += len(values) - len(kept)
            self._drift_detected = False
            self._batch_events = ()
            return
        self._batch_events = ()
        array = finite_floats(values)
        positions = np.flatnonzero(~np.isnan(array))
        self._n_skipped += int(array.size - positions.size)
        size = self.window_size
        pending = np.concatenate([self._window[: self._filled], array[positions]])
        n_full = pending.size // size
        # The input completing each window: the (size - filled)-th valid one, then every size-th.
        ends = positions[size - self._filled - 1 :: size]
        windows = pending[: n_full * size].reshape(n_full, size)
        for end, window in zip(ends.tolist(), windows, strict=True):
            self._complete(window, end)
        rest = pending[n_full * size :]
        if n_full:
            # One by one, the buffer keeps the last full window behind the new partial one.
            self._window[:] = windows[-1]
        self._window[: rest.size] = rest
        self._filled = int(rest.size)
        self._finish_batch(array.size)

    def _complete(self, window: FloatArray, end: int) -> None:
        current = np.sort(window) if self._sorts_windows() else window
        if self._reference_values is None:
            self._reference_values = current
            return
        self._n_windows += 1
        reference = self._sorted_reference()
        distances, sds = quantile_shifts(reference, self._in_control(reference.size), current)
        effect = excess(distances, sds)
        if effect < self.min_effect:
            self._steady_squares += np.square(distances)
            self._n_steady += 1
        self._record(end, self._evaluate(reference, current), effect)
        if self.reference is None:
            self._reference_values = current

    def _sorted_reference(self) -> FloatArray:
        """The reference's finite values, sorted: a frozen one's sorted anew (a window's
        test costs several times that sort), a rolling one's as they are."""
        values = self._reference_values
        assert values is not None
        return values if self.reference is None else np.sort(values)

    def _in_control(self, reference_size: int) -> FloatArray:
        """The slow variance of a window's positions: the reference's blocks', or the
        earlier windows' that were not material when they show more."""
        if not self._n_steady:
            return self._slow
        steady = steady_variance(
            self._steady_squares / self._n_steady, self.window_size, reference_size
        )
        slow: FloatArray = np.maximum(self._slow, steady)
        return slow

    def _sorts_windows(self) -> bool:
        """Whether ``_evaluate`` needs the window sorted (it then also becomes a reference)."""
        return True

    def _evaluate(self, reference: FloatArray, current: FloatArray) -> tuple[float, float, bool]:
        raise NotImplementedError

    @property
    def n_skipped(self) -> int:
        """How many inputs were skipped as missing or non-finite."""
        return self._n_skipped


def _countable(x: Any) -> bool:
    """Whether a categorical test counts ``x``: not None, NaN or unhashable."""
    return not (x is None or (isinstance(x, float) and math.isnan(x)) or not _hashable(x))


def _hashable(x: Any) -> bool:
    # isinstance(x, Hashable) only asks the type: a tuple holding a list, or a signaling
    # NaN Decimal, passes it and still raises TypeError when hashed.
    try:
        hash(x)
    except TypeError:
        return False
    return True


def _finite(values: Sequence[float]) -> FloatArray:
    """The finite values as floats, in order: ``values`` itself when it is a read-only
    float64 array of finite values, which nothing can change after it was checked."""
    if (
        isinstance(values, np.ndarray)
        and values.dtype == np.float64
        and values.ndim == 1
        and not values.flags.writeable
        and bool(np.isfinite(values).all())
    ):
        return values
    return np.asarray([v for v in values if finite_float(v) is not None], dtype=np.float64)


def reference_bins(reference: FloatArray, n_bins: int) -> tuple[FloatArray, FloatArray]:
    """The inner edges of ``n_bins`` equal-frequency bins of the reference, and its counts."""
    inner = np.unique(np.quantile(reference, np.linspace(0.0, 1.0, n_bins + 1)[1:-1]))
    return inner, bin_counts(inner, reference)


def bin_counts(inner: FloatArray, values: FloatArray) -> FloatArray:
    """Counts of ``values`` in the cells the inner edges make (in any order of values)."""
    cells = np.searchsorted(inner, values, side="right")
    return np.bincount(cells, minlength=inner.size + 1).astype(np.float64)


class BinnedWindowTest(NumericWindowTest):
    """A divergence of binned counts over equal-frequency bins of the reference.

    The bins are the reference's ``n_bins`` quantiles, fixed for a frozen reference and
    recomputed from each new reference window when rolling. Subclasses set ``_divergence``.
    """

    n_bins: int
    threshold: float
    _divergence: Callable[[FloatArray, FloatArray], float]

    def _configure_bins(
        self,
        reference: Sequence[float] | None,
        window_size: int,
        n_bins: int,
        threshold: float,
        min_effect: float,
    ) -> None:
        self._configure(reference, window_size, min_effect)
        if not isinstance(n_bins, int) or n_bins < 2:
            raise ValueError(f"n_bins must be an int >= 2, got {n_bins!r}")
        validate_positive("threshold", threshold)
        self.n_bins = n_bins
        self.threshold = threshold

    def _reset(self) -> None:
        super()._reset()
        # A frozen reference has the same bins at every window: computed once, as the same
        # function of the same sample, so every statistic is what computing it anew gives.
        self._frozen_bins: tuple[FloatArray, FloatArray] | None = None
        if self.reference is not None:
            self._frozen_bins = reference_bins(self._sorted_reference(), self.n_bins)

    def _sorts_windows(self) -> bool:
        # Against frozen bins a window is only counted, and bincount ignores the order.
        return self._frozen_bins is None

    def _evaluate(self, reference: FloatArray, current: FloatArray) -> tuple[float, float, bool]:
        bins = self._frozen_bins
        if bins is None:
            bins = reference_bins(reference, self.n_bins)
        inner, reference_counts = bins
        current_counts = bin_counts(inner, current)
        statistic = self._divergence(reference_counts, current_counts)
        return statistic, math.nan, self._drifted(statistic, reference_counts, current_counts)

    def _drifted(self, statistic: float, reference: FloatArray, current: FloatArray) -> bool:
        """Whether the divergence ``statistic`` of these counts is an alarm."""
        return statistic > self.threshold


class CategoricalWindowTest(WindowTest):
    """Tumbling window of category counts against frozen or rolling reference counts.

    The ``max_categories`` most frequent reference categories get a cell each; the rest of
    the reference pools into one "other" cell, and values never seen in the reference pool
    into one "unseen" cell. Subclasses implement ``_evaluate`` on the two count vectors
    (tracked categories, other, unseen).
    """

    reference: Mapping[Hashable, int] | None
    max_categories: int

    def _configure(
        self, reference: Mapping[Hashable, int] | None, window_size: int, max_categories: int
    ) -> None:
        self._configure_window(reference, window_size)
        if not isinstance(max_categories, int) or max_categories < 1:
            raise ValueError(f"max_categories must be an int >= 1, got {max_categories!r}")
        if reference is not None:
            counts = list(reference.values())
            if not counts or min(counts) < 0 or sum(counts) <= 0:
                raise ValueError("reference must map categories to non-negative counts, sum > 0")
        self.max_categories = max_categories

    def _reset(self) -> None:
        self._reference_counts: dict[Hashable, float] | None = None
        self._reference_other = 0.0
        self._reference_tail: frozenset[Hashable] | None = None
        if self.reference is not None:
            self._set_reference(dict(self.reference))
        self._window: dict[Hashable, int] = {}
        self._n_new = 0
        self._filled = 0
        self._unseen_rate = math.nan
        self._reset_results()

    def _set_reference(self, counts: Mapping[Hashable, float]) -> None:
        ranked = sorted(counts.items(), key=lambda item: item[1], reverse=True)
        self._reference_counts = {key: float(n) for key, n in ranked[: self.max_categories]}
        tail = ranked[self.max_categories :]
        self._reference_other = float(sum(n for _, n in tail))
        # A frozen reference already holds its tail; a rolling one is at most one window.
        # None rather than an empty frozenset, which the garbage collector would track
        # (and with it the detector's attribute dict) in every feature of every model.
        keys = frozenset(() if self.reference is not None else (k for k, _ in tail))
        self._reference_tail = keys or None

    def update(self, x: Any) -> None:
        """Add one category; None, NaN and unhashable values are counted in ``n_skipped``."""
        self._drift_detected = False
        if self._batch_events:
            self._batch_events = ()
        if not _countable(x):
            self._n_skipped += 1
            return
        self._add(x, 1)
        self._filled += 1
        if self._filled < self.window_size:
            return
        self._complete(0)

    def update_many(self, values: Batch) -> None:
        """Add a batch of categories: the same results and state as ``update`` one by one.

        Each window's share of the batch is counted at once; ``window_ends`` and the other
        ``window_*`` properties give each completed window's position and verdict.
        """
        if self._small(len(values)):
            self._update_each(values)
            return
        self._batch_events = ()
        values = list(values)
        # A str is always counted: the common case skips the null and hash checks.
        positions = [i for i, x in enumerate(values) if type(x) is str or _countable(x)]
        kept = values if len(positions) == len(values) else [values[i] for i in positions]
        self._n_skipped += len(values) - len(positions)
        start = 0
        while start < len(positions):
            stop = min(len(positions), start + self.window_size - self._filled)
            # Counting a window's values together admits the categories in the order of
            # their first occurrence, as one by one: where a value goes is decided there.
            for key, n in Counter(kept[start:stop]).items():
                self._add(key, n)
            self._filled += stop - start
            if self._filled == self.window_size:
                self._complete(positions[stop - 1])
            start = stop
        self._finish_batch(len(values))

    def _add(self, x: Any, n: int) -> None:
        # Reference categories always get their own count; at most max_categories others do.
        tracked = self._reference_counts is not None and x in self._reference_counts
        if tracked or x in self._window or self._n_new < self.max_categories:
            if not tracked and x not in self._window:
                self._n_new += 1
            self._window[x] = self._window.get(x, 0) + n
        else:
            self._window[OTHER] = self._window.get(OTHER, 0) + n

    def _complete(self, end: int) -> None:
        window, self._window, self._filled, self._n_new = self._window, {}, 0, 0
        if self._reference_counts is None:
            self._set_reference(window)
            return
        self._n_windows += 1
        reference, current, unseen = self._align(window)
        self._unseen_rate = unseen / self.window_size
        self._record(end, self._evaluate(reference, current), share_effect(reference, current))
        if self.reference is None:
            self._set_reference(window)

    def _align(self, window: dict[Hashable, int]) -> tuple[FloatArray, FloatArray, float]:
        assert self._reference_counts is not None
        tracked = list(self._reference_counts)
        current = [float(window.get(key, 0)) for key in tracked]
        other = unseen = 0.0
        for key, n in window.items():
            if key in self._reference_counts:
                continue
            if key == OTHER or self._in_reference_tail(key):
                other += n
            else:
                unseen += n
        reference = np.array([*self._reference_counts.values(), self._reference_other, 0.0])
        return reference, np.array([*current, other, unseen]), unseen

    def _in_reference_tail(self, key: Hashable) -> bool:
        if self.reference is not None:
            return key in self.reference
        return self._reference_tail is not None and key in self._reference_tail

    def _evaluate(self, reference: FloatArray, current: FloatArray) -> tuple[float, float, bool]:
        raise NotImplementedError

    @property
    def unseen_rate(self) -> float:
        """Share of the last full window in categories absent from the reference."""
        return self._unseen_rate

    @property
    def n_skipped(self) -> int:
        """How many inputs were skipped as missing or unhashable."""
        return self._n_skipped
