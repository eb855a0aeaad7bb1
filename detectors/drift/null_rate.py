"""Null rate of a tumbling window against a reference rate: Fisher's exact test."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from detectors._exact import fisher_exact_two_sided
from detectors.drift._window import Batch, BoolArray, PValue, WindowTest, validate_level


class NullRateDrift(PValue, WindowTest):
    """Fisher's exact test of the share of nulls, evaluated once per full tumbling window.

    Every input counts: None, NaN and any value in ``sentinels`` are nulls, everything
    else is a present value. When ``window_size`` inputs have arrived, the window's null
    count is compared with the reference's by Fisher's exact two-sided test, valid for
    rare nulls where a chi-square is not. ``drift_detected`` is ``p_value < alpha``; being
    exact and discrete the test is conservative: at most ``alpha`` false alarms per window.

    Parameters
    ----------
    reference
        ``(nulls, total)`` counted in training. ``None`` makes the reference rolling: each
        full window is compared with the previous one.
    window_size
        Inputs per window (and per test).
    alpha
        Significance level of each test; the health policy hands it out of its budget.
    sentinels
        Values that stand for a missing value, e.g. ``(-1, "")``; None for none.

    Examples
    --------
    >>> import numpy as np
    >>> from detectors import NullRateDrift
    >>> rng = np.random.default_rng(42)
    >>> detector = NullRateDrift(reference=(20, 10_000), window_size=500, alpha=0.001)
    >>> missing = np.concatenate([rng.random(1500) < 0.002, rng.random(1500) < 0.02])
    >>> for i, is_null in enumerate(missing):
    ...     detector.update(None if is_null else 1.0)
    ...     if detector.drift_detected:
    ...         print(i, detector.null_rate, f"{detector.p_value:.1e}")
    1999 0.014 2.1e-04
    2999 0.02 7.0e-07

    The same inputs in batches of 1,000 give the same windows, at positions in each batch:

    >>> batched = NullRateDrift(reference=(20, 10_000), window_size=500, alpha=0.001)
    >>> values = np.where(missing, np.nan, 1.0)
    >>> for start in range(0, 3000, 1000):
    ...     batched.update_many(values[start : start + 1000])
    ...     print(batched.window_ends.tolist(), batched.window_drifts.tolist())
    [499, 999] [False, False]
    [499, 999] [False, True]
    [499, 999] [False, True]
    """

    def __init__(
        self,
        reference: tuple[int, int] | None = None,
        window_size: int = 1000,
        alpha: float = 0.01,
        sentinels: tuple[Any, ...] | None = None,
    ) -> None:
        validate_level("alpha", alpha)
        if reference is not None and not _is_null_count(reference):
            # A rate (0.002) for the counts is the likely slip; the test needs both counts.
            raise ValueError(
                f"reference must be (nulls, total), integers with 0 <= nulls <= total >= 1,"
                f" or None, got {reference!r}"
            )
        self._configure_window(reference, window_size)
        self.alpha = alpha
        self.sentinels = sentinels
        self._reset()

    def _reset(self) -> None:
        self._reference_counts = self.reference
        self._nulls = 0
        self._filled = 0
        self._reset_results()

    def _is_null(self, x: Any) -> bool:
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return True
        if self.sentinels is None:
            return False
        try:
            return x in self.sentinels
        except (TypeError, ValueError):
            return False

    def update(self, x: Any) -> None:
        """Count one input as null or present."""
        self._drift_detected = False
        if self._batch_events:
            self._batch_events = ()
        self._nulls += self._is_null(x)
        self._filled += 1
        if self._filled < self.window_size:
            return
        self._complete(0)

    def update_many(self, values: Batch) -> None:
        """Count a batch of inputs: the same results and state as ``update`` one by one.

        Each window's nulls are a difference of the batch's cumulative null count;
        ``window_ends`` and the other ``window_*`` properties give each completed window's
        position and verdict.
        """
        if self._small(len(values)):
            self._update_each(values)
            return
        self._batch_events = ()
        nulls = self._nulls_of(values)
        counted = np.concatenate([[0], np.cumsum(nulls)]).tolist()
        start = 0
        while start < nulls.size:
            stop = min(nulls.size, start + self.window_size - self._filled)
            self._nulls += counted[stop] - counted[start]
            self._filled += stop - start
            if self._filled == self.window_size:
                self._complete(stop - 1)
            start = stop
        self._finish_batch(nulls.size)

    def _nulls_of(self, values: Batch) -> BoolArray:
        # Only float64 elements are floats to _is_null (float32 NaN is not): other arrays,
        # and any sentinel, go value by value so that both paths agree on every input.
        if isinstance(values, np.ndarray) and self.sentinels is None:
            if values.dtype == np.float64:
                return np.isnan(values).ravel()
            if values.dtype.kind in "iu":
                return np.zeros(values.size, dtype=np.bool_)
        return np.fromiter((self._is_null(x) for x in values), dtype=np.bool_)

    def _complete(self, end: int) -> None:
        window = (self._nulls, self.window_size)
        self._nulls = self._filled = 0
        if self._reference_counts is None:
            self._reference_counts = window
            return
        self._n_windows += 1
        reference_nulls, reference_total = self._reference_counts
        p_value = fisher_exact_two_sided(reference_nulls, reference_total, *window)
        self._record(end, (window[0] / window[1], p_value, p_value < self.alpha))
        if self.reference is None:
            self._reference_counts = window

    @property
    def null_rate(self) -> float:
        """Null rate of the last full window (NaN before the first); also ``statistic``."""
        return self._statistic


def _is_null_count(reference: Any) -> bool:
    # A list too: counts read from a TOML or JSON file arrive as one.
    if not isinstance(reference, tuple | list) or len(reference) != 2:
        return False
    nulls, total = reference
    if not all(isinstance(n, numbers.Integral) for n in reference):
        return False
    return bool(0 <= nulls <= total and total >= 1)
