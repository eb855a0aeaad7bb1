"""Precision@k of ranked outputs (recommendations, search results) over the last labelled ones."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Any

from detectors.drift._window import mean
from detectors.performance._inputs import fields
from detectors.performance._labelled import LabelledMetric
from detectors.performance._window import validate_size
from detectors.performance.drop import PerformanceDrop


class PrecisionAtK(LabelledMetric):
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

    primary = "precision_at_k"

    def _parse(self, x: Any) -> tuple[tuple[float, ...], float] | None:
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
        return (hits / self.k,), 1.0 - hits / self.k

    @property
    def precision_at_k(self) -> float:
        """Mean precision@k over the window (NaN before any outcome)."""
        if not len(self._rows):
            return math.nan
        return mean(self._rows.column(0))
