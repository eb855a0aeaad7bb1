"""Precision@k of ranked outputs (recommendations, search results) over the last labelled ones."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
from river import base

from detectors.performance._inputs import fields
from detectors.performance._window import Window, validate_size
from detectors.performance.drop import PerformanceDrop


class PrecisionAtK(base.Base):
    """Windowed precision@k of one ranking model, with a drop alarm.

    Feed it each ranked output once its outcome is known, as
    ``update((ranked, relevant))``: ``ranked`` is the sequence of item ids the model
    returned, best first, and ``relevant`` the collection of ids that turned out relevant
    (clicked, bought...). Precision@k is the share of the first ``k`` positions holding a
    relevant item; a list shorter than ``k`` still divides by ``k``, since the empty slots
    were not useful either. Anything else is ignored and counted in ``n_ignored``.
    ``drift_detected`` comes from ``PerformanceDrop`` fed with ``1 - precision@k``.

    Parameters
    ----------
    k
        How many leading positions count.
    window
        How many of the latest ranked outputs ``precision_at_k`` averages.
    drop
        The drop alarm's configuration (``baseline`` is ``1 - precision@k``); None uses
        ``PerformanceDrop()``. It is cloned, never fed directly.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> metric = PrecisionAtK(k=5, window=200)
    >>> for _ in range(1000):
    ...     ranked = [int(i) for i in rng.permutation(50)[:10]]
    ...     relevant = {i for i in ranked if rng.random() < 0.2}
    ...     metric.update((ranked, relevant))
    >>> round(metric.precision_at_k, 3), metric.n_labels
    (0.196, 1000)
    """

    def __init__(
        self, k: int = 10, window: int = 1000, drop: PerformanceDrop | None = None
    ) -> None:
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        validate_size("window", window)
        self.k = k
        self.window = window
        self.drop = drop
        self._reset()

    def _reset(self) -> None:
        self._precisions = Window(self.window, 1)
        self._drop = (self.drop or PerformanceDrop()).clone()
        self._n_labels = 0
        self._n_ignored = 0

    def update(self, x: Any) -> None:
        """Absorb one ``(ranked, relevant)`` outcome; never raises."""
        precision = self._precision(x)
        if precision is None:
            self._n_ignored += 1
            self._drop.update(math.nan)  # clears a previous update's alarm
            return
        self._precisions.push(precision)
        self._n_labels += 1
        self._drop.update(1.0 - precision)

    def _precision(self, x: Any) -> float | None:
        pair = fields(x, 2)
        if pair is None:
            return None
        ranked, relevant = pair
        if not isinstance(ranked, Sequence) or isinstance(ranked, str | bytes):
            return None
        if not isinstance(relevant, Collection) or isinstance(relevant, str | bytes):
            return None
        try:
            relevant_items = set(relevant)
            hits = sum(1 for item in ranked[: self.k] if item in relevant_items)
        except TypeError:  # unhashable ids
            return None
        return hits / self.k

    @property
    def precision_at_k(self) -> float:
        """Mean precision@k over the window (NaN before any outcome)."""
        if not len(self._precisions):
            return math.nan
        return float(np.mean(self._precisions.column(0)))

    @property
    def n_labels(self) -> int:
        """How many ranked outputs with known outcomes were absorbed in all."""
        return self._n_labels

    @property
    def n_ignored(self) -> int:
        """How many inputs were not a valid ``(ranked, relevant)`` pair."""
        return self._n_ignored

    @property
    def drift_detected(self) -> bool:
        """Precision@k dropped, according to the drop alarm, at the last update."""
        return self._drop.drift_detected
