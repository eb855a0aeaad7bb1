"""Accuracy, log loss and ROC AUC of a binary classifier over its last labelled predictions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors._compiled import compiled
from detectors.drift._window import mean
from detectors.performance._inputs import binary_label, fields, is_real, label_pairs, unit_float
from detectors.performance._labelled import LabelledMetric
from detectors.performance._window import auc_of, ranked_counts, validate_size
from detectors.performance.drop import PerformanceDrop

# Probabilities are clipped here before the logarithm, as river and scikit-learn do.
_EPSILON = 1e-15
_ONE = 1 - _EPSILON


class ClassificationPerformance(LabelledMetric):
    """Windowed accuracy, log loss and ROC AUC of one binary classifier, with a drop alarm.

    One instance watches one model/version/role stream; feed it each prediction once its
    label has arrived, as ``update((y_true, p))`` with ``y_true`` 0 or 1 (or a bool) and
    ``p`` the predicted probability of class 1 in [0, 1]. Anything else is ignored and
    counted in ``n_ignored``. The metrics cover the last ``window`` labelled predictions;
    ``drift_detected`` says that accuracy has dropped (see ``PerformanceDrop``, fed with
    the error indicator).

    Parameters
    ----------
    window
        How many of the latest labelled predictions the metrics cover.
    threshold
        ``p >= threshold`` predicts class 1, for accuracy.
    drop
        The drop alarm's configuration (its ``alpha``, ``tolerance``, ``baseline`` as an
        error rate); None uses ``PerformanceDrop()``. It is cloned, never fed directly.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> metrics = ClassificationPerformance(window=500)
    >>> for _ in range(2000):
    ...     y = int(rng.random() < 0.3)
    ...     p = float(np.clip(0.3 + (0.4 if y else -0.1) + rng.normal(0, 0.15), 0, 1))
    ...     metrics.update((y, p))
    >>> round(metrics.accuracy, 3), round(metrics.log_loss, 3), round(metrics.auc, 3)
    (0.944, 0.303, 0.988)
    >>> metrics.n_labels, metrics.drift_detected
    (2000, False)
    """

    def __init__(
        self, window: int = 1000, threshold: float = 0.5, drop: PerformanceDrop | None = None
    ) -> None:
        validate_size("window", window)
        if not (is_real(threshold) and 0.0 < threshold < 1.0):
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        self.window = window
        self.threshold = threshold
        self.drop = drop
        self._reset()

    _columns = 2  # y_true, p

    primary = "accuracy"

    def _parse(self, x: Any) -> tuple[tuple[float, ...], float] | None:
        if type(x) is tuple and len(x) == 2:
            y_true, p = x
            if type(y_true) is int and type(p) is float and 0 <= y_true <= 1 and 0.0 <= p <= 1.0:
                # Most pairs: what ``binary_label`` and ``unit_float`` give them, without
                # their calls.
                return (y_true, p), float((p >= self.threshold) != bool(y_true))
        pair = fields(x, 2)
        y_true = binary_label(pair[0]) if pair else None
        p = unit_float(pair[1]) if pair else None
        if y_true is None or p is None:
            return None
        return (y_true, p), float((p >= self.threshold) != bool(y_true))

    def _parse_many(self, values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, Any] | None:
        """``_parse`` over pairs of an int and a float only (the label join's), in columns:
        the pairs its shortcut takes (label 0 or 1, p in [0, 1]), the others ignored."""
        pairs = label_pairs(values)
        if pairs is None or not pairs[1].all():
            return None
        return _binary_rows(pairs[0], pairs[2], self.threshold)

    @property
    def accuracy(self) -> float:
        """Share of correct predictions in the window (NaN before any label)."""
        return self._ranked()[0]

    @property
    def log_loss(self) -> float:
        """Mean binary cross-entropy in the window, in nats (NaN before any label)."""
        if not len(self._rows):
            return math.nan
        # ``np.clip``'s values (NaN included) without its Python wrappers.
        y, p = self._rows.column(0), np.minimum(np.maximum(self._rows.column(1), _EPSILON), _ONE)
        return -mean(y * np.log(p) + (1 - y) * np.log1p(-p))

    @property
    def auc(self) -> float:
        """ROC AUC in the window, ties counted half (NaN until both classes are present)."""
        return self._ranked()[1]

    @property
    def metrics(self) -> tuple[tuple[str, float], ...]:
        """``accuracy``, ``log_loss`` and ``auc`` by name, the first and last from one pass
        over the window."""
        accuracy, auc = self._ranked()
        return (("accuracy", accuracy), ("log_loss", self.log_loss), ("auc", auc))

    def _ranked(self) -> tuple[float, float]:
        """``accuracy`` and ``auc`` from ``ranked_counts`` of the window."""
        n = len(self._rows)
        if not n:
            return math.nan, math.nan
        right, predicted, positives, twice = ranked_counts(
            self._rows.column(0), self._rows.column(1), self.threshold
        )
        # The right predictions, positive and negative, over n: ``mean`` of the
        # comparison's booleans (a sum of ones is exact in any order).
        correct = right + n - predicted - positives + right
        return correct / n, auc_of(n, positives, twice)


@compiled
def _binary_rows(
    y: npt.NDArray[np.int64], p: npt.NDArray[np.float64], threshold: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """``_parse_many``'s columns in one pass (a dozen numpy passes cost more than the
    loop at the label join's few dozen pairs): each pair's loss (NaN: ignored), the rows
    of the valid ones and which are valid."""
    n = p.shape[0]
    losses = np.full(n, math.nan)
    rows = np.empty((n, 2))
    valid = np.zeros(n, np.bool_)
    taken = 0
    for k in range(n):
        label, score = y[k], p[k]
        if (label == 0 or label == 1) and score >= 0.0 and score <= 1.0:
            losses[k] = 1.0 if (score >= threshold) != (label == 1) else 0.0
            rows[taken, 0] = label
            rows[taken, 1] = score
            valid[k] = True
            taken += 1
    return losses, rows[:taken], valid
