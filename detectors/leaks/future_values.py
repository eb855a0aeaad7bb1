"""Values from the future: a prediction used a value written after the prediction was made."""

from __future__ import annotations

import dataclasses
from typing import Any

from river import base

from detectors.leaks._arguments import require_counts, require_durations
from detectors.leaks.events import ServedFeature, checked_served


@dataclasses.dataclass(frozen=True)
class FutureValueCount:
    """How many served values of one feature there were, and how many came from the future."""

    feature: str
    served: int
    future: int


class FutureValues(base.Base):
    """Counts served feature values whose ``written_at`` is later than ``predicted_at``.

    Serving cannot read a value before it is written, so each one means clock skew between
    the feature store and the serving node, or a serving path that reads from somewhere it
    should not (e.g. a training snapshot). Either way the model's inputs are not what
    production can reproduce, so one is enough: ``critical`` turns on at the first and
    stays on, for the health policy to act at once without a statistical test.

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
    """

    def __init__(self, skew_tolerance: float = 0.0, max_features: int = 1_000) -> None:
        require_durations(skew_tolerance=skew_tolerance)
        require_counts(max_features=max_features)
        self.skew_tolerance = skew_tolerance
        self.max_features = max_features
        self._reset()

    def _reset(self) -> None:
        # feature -> [served, future]
        self._counts: dict[str, list[int]] = {}
        self._future = 0
        self._max_skew = 0.0
        self._last: ServedFeature | None = None
        self._rejected = 0

    def update(self, x: Any) -> None:
        """Reads one :class:`ServedFeature`; anything else is counted in ``rejected``."""
        served = checked_served(x)
        if served is None:
            self._rejected += 1
            return
        counts = self._counts.get(served.feature)
        if counts is None and len(self._counts) < self.max_features:
            counts = self._counts[served.feature] = [0, 0]
        skew = served.written_at - served.predicted_at
        future = skew > self.skew_tolerance
        if counts is not None:
            counts[0] += 1
            counts[1] += future
        if future:
            self._future += 1
            self._max_skew = max(self._max_skew, float(skew))
            self._last = served

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
        return {
            f: FutureValueCount(f, served, future) for f, (served, future) in self._counts.items()
        }

    @property
    def rejected(self) -> int:
        """Inputs that were not a well-formed served value."""
        return self._rejected
