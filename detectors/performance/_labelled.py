"""What the metrics on labelled predictions share: rows, counters, the drop alarm."""

from __future__ import annotations

import math
from typing import Any

from river import base

from detectors.performance._window import Window
from detectors.performance.drop import PerformanceDrop


class LabelCounts:
    """The counters every performance detector on labels reports; ``_reset()`` zeroes them."""

    _n_labels: int
    _n_ignored: int

    @property
    def n_labels(self) -> int:
        """How many labelled predictions were absorbed in all."""
        return self._n_labels

    @property
    def n_ignored(self) -> int:
        """How many inputs were invalid and ignored."""
        return self._n_ignored


class LabelledMetric(LabelCounts, base.Base):
    """Keeps the last ``window`` rows of a metric's inputs and feeds their losses to a drop alarm.

    A subclass sets ``window`` and ``drop`` in its constructor, ``_columns``, and turns an
    input into its row and its loss in [0, 1] (or None for an invalid input) in ``_parse``.
    """

    window: int
    drop: PerformanceDrop | None
    _columns = 1

    def _reset(self) -> None:
        self._rows = Window(self.window, self._columns)
        self._drop = (self.drop or PerformanceDrop()).clone()
        self._n_labels = 0
        self._n_ignored = 0

    def _parse(self, x: Any) -> tuple[tuple[float, ...], float] | None:
        raise NotImplementedError

    def update(self, x: Any) -> None:
        """Absorb one labelled prediction; an invalid one is counted in ``n_ignored``."""
        parsed = self._parse(x)
        if parsed is None:
            self._n_ignored += 1
            self._drop.update(math.nan)  # clears a previous update's alarm
            return
        row, loss = parsed
        self._rows.push(*row)
        self._n_labels += 1
        self._drop.update(loss)

    @property
    def drift_detected(self) -> bool:
        """Performance dropped, according to the drop alarm, at the last update."""
        return self._drop.drift_detected
