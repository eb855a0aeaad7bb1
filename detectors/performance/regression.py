"""Mean absolute error of a regression model over its last labelled predictions."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from river import base

from detectors.performance._inputs import fields, finite_float
from detectors.performance._window import Window, validate_size
from detectors.performance.drop import PerformanceDrop


class RegressionPerformance(base.Base):
    """Windowed mean absolute error and bias of one regression model, with a drop alarm.

    Feed it ``update((y_true, y_pred))`` with finite numbers once the truth is known;
    anything else is ignored and counted in ``n_ignored``. The drop alarm needs a loss in
    [0, 1], so it is fed ``min(|y_true - y_pred| / error_cap, 1)``: choose ``error_cap``
    as an error that is plainly bad in the target's units. ``mae`` itself is not clipped.

    Parameters
    ----------
    error_cap
        The absolute error that counts as a complete miss for the drop alarm, > 0.
    window
        How many of the latest labelled predictions the metrics cover.
    drop
        The drop alarm's configuration (``baseline`` on the clipped, scaled error); None
        uses ``PerformanceDrop()``. It is cloned, never fed directly.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(2)
    >>> metrics = RegressionPerformance(error_cap=10.0, window=500)
    >>> for _ in range(1500):
    ...     y = float(rng.normal(50, 10))
    ...     metrics.update((y, y + float(rng.normal(0.5, 2.0))))
    >>> round(metrics.mae, 3), round(metrics.bias, 3), metrics.drift_detected
    (1.689, 0.625, False)
    """

    def __init__(
        self, error_cap: float = 1.0, window: int = 1000, drop: PerformanceDrop | None = None
    ) -> None:
        if not (isinstance(error_cap, int | float) and 0.0 < error_cap < math.inf):
            raise ValueError(f"error_cap must be a positive finite number, got {error_cap!r}")
        validate_size("window", window)
        self.error_cap = error_cap
        self.window = window
        self.drop = drop
        self._reset()

    def _reset(self) -> None:
        self._errors = Window(self.window, 1)  # y_pred - y_true
        self._drop = (self.drop or PerformanceDrop()).clone()
        self._n_labels = 0
        self._n_ignored = 0

    def update(self, x: Any) -> None:
        """Absorb one ``(y_true, y_pred)`` pair; never raises."""
        pair = fields(x, 2)
        y_true = finite_float(pair[0]) if pair else None
        y_pred = finite_float(pair[1]) if pair else None
        error = None if y_true is None or y_pred is None else y_pred - y_true
        if error is None or not math.isfinite(error):
            self._n_ignored += 1
            self._drop.update(math.nan)  # clears a previous update's alarm
            return
        self._errors.push(error)
        self._n_labels += 1
        self._drop.update(min(abs(error) / self.error_cap, 1.0))

    @property
    def mae(self) -> float:
        """Mean absolute error in the window (NaN before any label)."""
        if not len(self._errors):
            return math.nan
        return float(np.mean(np.abs(self._errors.column(0))))

    @property
    def bias(self) -> float:
        """Mean of ``y_pred - y_true`` in the window: > 0 means over-prediction."""
        if not len(self._errors):
            return math.nan
        return float(np.mean(self._errors.column(0)))

    @property
    def n_labels(self) -> int:
        """How many labelled predictions were absorbed in all."""
        return self._n_labels

    @property
    def n_ignored(self) -> int:
        """How many inputs were not a valid ``(y_true, y_pred)`` pair."""
        return self._n_ignored

    @property
    def drift_detected(self) -> bool:
        """The error rose, according to the drop alarm, at the last update."""
        return self._drop.drift_detected
