"""Mean absolute error of a regression model over its last labelled predictions."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from detectors.drift._window import mean
from detectors.performance._inputs import fields, finite_float
from detectors.performance._labelled import LabelledMetric
from detectors.performance._window import validate_size
from detectors.performance.drop import PerformanceDrop


class RegressionPerformance(LabelledMetric):
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

    primary = "mae"

    def _parse(self, x: Any) -> tuple[tuple[float, ...], float] | None:
        pair = fields(x, 2)
        y_true = finite_float(pair[0]) if pair else None
        y_pred = finite_float(pair[1]) if pair else None
        error = None if y_true is None or y_pred is None else y_pred - y_true
        if error is None or not math.isfinite(error):
            return None
        return (error,), min(abs(error) / self.error_cap, 1.0)

    @property
    def mae(self) -> float:
        """Mean absolute error in the window (NaN before any label)."""
        if not len(self._rows):
            return math.nan
        return mean(np.abs(self._rows.column(0)))

    @property
    def bias(self) -> float:
        """Mean of ``y_pred - y_true`` in the window: > 0 means over-prediction."""
        if not len(self._rows):
            return math.nan
        return mean(self._rows.column(0))
